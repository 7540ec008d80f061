"""The sandbox's hard bounds: queries run in a child process that is killed at a deadline and
cannot grow past a memory cap.

The in-process layers of sqltrain.evaluate.sandbox stop almost everything, but two kinds of work
escape any in-process check (found by the hostile-input sweep of issue 13): one SQLite VM
instruction cannot be interrupted (``printf('%.*c', 2147483647, 'x')`` spends ~9 s in a single
step), and compiling a statement is not interrupted at all (an 800-byte chain of 20 self-joined
CTEs compiles for 5 s and takes 1.4 GB before SQLite gives up). So every query runs in a child
process that the parent kills when no answer came within HARD_TIMEOUT_FACTOR x the query's
timeout, and whose address space is capped (RLIMIT_AS), so an allocation that would pass the cap
fails inside the child and comes back as a typed ``too_large`` error.

One child serves a whole run (in each Ray worker, one per worker process): it keeps the last
few databases open, and a kill or an out-of-memory answer only costs starting a fresh child
(~0.1 s) for the next query. Protocol: length-prefixed pickles over the child's stdin/stdout;
the child runs only this module, so what it sends back is ours.

Run as ``python -m sqltrain.evaluate.isolated`` it is the child.
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import struct
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

from sqltrain.evaluate.sandbox import ExecResult

HARD_TIMEOUT_FACTOR = 1.25
"""The parent kills the child when a query has not answered after this many times its timeout
(the child's own progress handler stops ordinary runaways at 1.0x)."""
CHILD_MEMORY_BYTES = 2**30
"""Address-space cap of the child (RLIMIT_AS): the sandbox's memory cap, compile time included."""
MAX_OPEN_DATABASES = 8
"""Connections the child keeps open (variants of the databases being scored)."""
_HEADER = struct.Struct("!Q")


class QueryProcess:
    """Runs sandboxed queries one at a time in a child process; restarts it after a kill."""

    def __init__(self, memory_bytes: int = CHILD_MEMORY_BYTES):
        self.memory_bytes = memory_bytes
        self._proc: subprocess.Popen | None = None
        self._dying: list[subprocess.Popen] = []  # killed children not yet reaped

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def execute(self, db_path: str | Path, sql, timeout_s: float, max_rows: int) -> ExecResult:
        """The sandbox's ExecResult for `sql` on `db_path`, within HARD_TIMEOUT_FACTOR x timeout_s."""
        proc = self._ensure()
        start = time.monotonic()
        try:
            _write(proc.stdin, pickle.dumps((str(db_path), sql, timeout_s, max_rows)))
            reply = _read(proc.stdout, start + HARD_TIMEOUT_FACTOR * timeout_s)
        except TimeoutError:
            self._kill(wait=False)  # a child holding a gigabyte takes a while to exit: reap it later
            return ExecResult(None, "timeout", f"killed after {time.monotonic() - start:.1f}s: one uninterruptible "
                              f"SQLite step or compilation ran past the {timeout_s:g}s limit", time.monotonic() - start)
        except (EOFError, OSError):  # the child died: killed by the OS, or out of memory outside SQLite
            code = self._kill()
            return ExecResult(None, "too_large", f"the query process died (exit status {code}); "
                              "most likely out of memory", time.monotonic() - start)
        result, retire = pickle.loads(reply)
        if retire:  # it hit its memory cap: a fresh child has an unfragmented heap
            self._kill()
        return result

    def _ensure(self) -> subprocess.Popen:
        self._dying = [p for p in self._dying if p.poll() is None]
        if self._proc is None or self._proc.poll() is not None:
            env = dict(os.environ)
            # The child imports this same sqltrain, wherever it was imported from.
            root = str(Path(__file__).resolve().parents[2])
            env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "sqltrain.evaluate.isolated", str(self.memory_bytes)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env, close_fds=True,
            )
        return self._proc

    def _kill(self, wait: bool = True) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        for stream in (proc.stdin, proc.stdout):
            stream.close()
        if not wait:
            self._dying.append(proc)
            return None
        return proc.wait()

    def close(self) -> None:
        for dying in self._dying:
            dying.wait()
        self._dying = []
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.stdin.close()  # EOF: the child exits on its own
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()


_shared: QueryProcess | None = None


def shared_process() -> QueryProcess:
    """This process's QueryProcess (one child per evaluating process, reused across databases)."""
    global _shared
    if _shared is None:
        _shared = QueryProcess()
        atexit.register(_shared.close)
    return _shared


class IsolatedSandbox:
    """Sandbox's interface (db_path, execute, close) over a QueryProcess."""

    def __init__(self, db_path: str | Path, *, timeout_s: float, max_rows: int, process: QueryProcess | None = None):
        self.db_path = Path(db_path)
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        self.process = process or shared_process()

    def execute(self, sql) -> ExecResult:
        return self.process.execute(self.db_path, sql, self.timeout_s, self.max_rows)

    def close(self) -> None:
        pass  # the process and its connections outlive one database

    def __enter__(self) -> IsolatedSandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- framing --------------------------------------------------------------------------------------
def _write(stream, payload: bytes) -> None:
    data = memoryview(_HEADER.pack(len(payload)) + payload)
    while data:
        data = data[os.write(stream.fileno(), data):]


def _read(stream, deadline: float = float("inf")) -> bytes:
    header = _read_exactly(stream, _HEADER.size, deadline)
    return _read_exactly(stream, _HEADER.unpack(header)[0], deadline)


def _read_exactly(stream, n: int, deadline: float) -> bytes:
    fd, chunks, got = stream.fileno(), [], 0
    while got < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], min(remaining, 3600))[0]:
            if time.monotonic() >= deadline:
                raise TimeoutError
            continue
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


# -- the child ------------------------------------------------------------------------------------
def _serve(memory_bytes: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the reply stream
    boxes: OrderedDict = OrderedDict()  # db path -> Sandbox
    while True:
        try:
            db_path, sql, timeout_s, max_rows = pickle.loads(_read(requests))
        except EOFError:
            return
        try:
            result = _run(boxes, db_path, sql, timeout_s, max_rows)
            # After an out-of-memory answer the parent starts a fresh child (unfragmented heap).
            payload = pickle.dumps((result, result.error == "too_large" and "memory" in result.message))
        except MemoryError:  # Python itself ran into the process cap (building or pickling rows)
            payload = pickle.dumps((ExecResult(None, "too_large", "out of memory (process limit)"), True))
        _write(replies, payload)


def _run(boxes, db_path: str, sql, timeout_s: float, max_rows: int) -> ExecResult:
    import sqlite3

    from sqltrain.evaluate.sandbox import Sandbox

    box = boxes.pop(db_path, None)
    if box is None:
        try:
            box = Sandbox(db_path, timeout_s=timeout_s, max_rows=max_rows)
        except (OSError, ValueError, sqlite3.Error) as e:  # databases are checked before scoring
            return ExecResult(None, "runtime", f"cannot open {db_path}: {e}")
    boxes[db_path] = box
    while len(boxes) > MAX_OPEN_DATABASES:
        boxes.popitem(last=False)[1].close()
    box.timeout_s, box.max_rows = timeout_s, max_rows
    return box.execute(sql)


if __name__ == "__main__":
    _serve(int(sys.argv[1]) if len(sys.argv) > 1 else CHILD_MEMORY_BYTES)
