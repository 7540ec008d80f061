"""`ray start --block` processes of one test cluster on 127.0.0.1, isolated from every other Ray
on the machine (the in-process local Rays of other tests, a leftover head, other people's).

Isolation, because a shared machine made these tests fail in CI while they passed alone:
- its own short RAY_TMPDIR (session files, sockets, and no write to /tmp/ray/ray_current_cluster;
  Ray's socket paths must stay under 107 characters, hence /tmp and a short prefix);
- a free port for every listener Ray would otherwise take at a fixed default (ray client
  server 10001, dashboard agent 52365) or pick itself;
- each process in its own session, killed with its process group: `ray stop` would stop every
  Ray on the machine.
A node that dies or never joins raises with the tail of its own log and of Ray's session logs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
LOG_FILES = ("ray_process_exit.log", "dashboard.log", "dashboard_agent.log", "raylet.out", "gcs_server.out")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_group(proc: subprocess.Popen) -> None:
    """Stop a `ray start --block` started in its own session, and everything it started, at once.
    SIGKILL, not SIGTERM: a graceful stop takes `ray start` 30 s per node (measured), and a test
    cluster has nothing to save; every Ray process of the node is in the group and goes with it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    proc.wait()


class Nodes:
    """A head and any number of worker nodes, with token auth, for them and for every client
    given `self.env` (the token: ~/.ray/auth_token, which Ray creates on first use)."""

    def __init__(self, base: Path):
        self.base = base
        self.tmp = Path(tempfile.mkdtemp(prefix="sqlt-ray-", dir="/tmp"))
        self.env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", RAY_TMPDIR=str(self.tmp),
                        RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(REPO))
        self.env.pop("RAY_ADDRESS", None)
        self.port, self.dashboard = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard}"
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, cpus: int, head: bool = False, private: Path | None = None) -> None:
        """Start node `name` (custom resource node_<name>) and wait until the cluster lists it.
        `private`: this node, and all it forks, sees an empty tmpfs at that path (root only)."""
        ports = ["--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
                 "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port())]
        where = (["--head", "--port", str(self.port), "--dashboard-host", "127.0.0.1", "--dashboard-port",
                  str(self.dashboard), "--include-dashboard", "true", "--ray-client-server-port", str(free_port())]
                 if head else ["--address", self.address])
        cmd = [str(BIN / "ray"), "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus),
               "--resources", json.dumps({f"node_{name}": 1}), "--disable-usage-stats", *ports, *where]
        if private is not None:
            cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                   f'mount -t tmpfs sqltrain-test "{private}" && exec "$0" "$@"', *cmd]
        log = open(self.base / f"node-{name}.log", "w")
        self.procs.append(subprocess.Popen(cmd, env=self.env, cwd=self.base, start_new_session=True,
                                           stdout=log, stderr=subprocess.STDOUT))
        self._wait_for(name)

    def _wait_for(self, name: str, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.procs[-1].poll() is not None:
                raise RuntimeError(f"node {name} exited: {self.logs(name)}")
            status = subprocess.run([str(BIN / "ray"), "status", "--address", self.address], env=self.env,
                                    capture_output=True, text=True)
            # This node's own resource, by name: counting "node_" would also count the node ids
            # `ray status` lists, and let a test go on before the node it started has joined.
            if status.returncode == 0 and re.search(rf"\bnode_{re.escape(name)}\b", status.stdout):
                return
            time.sleep(2)
        raise TimeoutError(f"node {name} did not join within {timeout}s: {self.logs(name)}")

    def logs(self, name: str, chars: int = 1500) -> str:
        """The tail of node `name`'s `ray start` output and of Ray's session logs (for failures)."""
        parts = [f"--- node-{name}.log\n{(self.base / f'node-{name}.log').read_text()[-chars:]}"]
        for session in self.tmp.glob("**/session_latest/logs"):
            for file in LOG_FILES:
                if (session / file).is_file():
                    parts.append(f"--- {file}\n{(session / file).read_text(errors='replace')[-chars:]}")
        busy = subprocess.run(["ps", "-eo", "pid,pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True)
        parts.append("--- busiest processes\n" + "\n".join(ln[:200] for ln in busy.stdout.splitlines()[:12]))
        return "\n".join(parts)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            kill_group(proc)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def sqltrain(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """The sqltrain CLI as a user runs it on the head, against this cluster."""
        return subprocess.run([sys.executable, "-m", "sqltrain.cli", *args], env=self.env, cwd=self.base,
                              capture_output=True, text=True, timeout=timeout)
