"""The sandbox's hard bounds: queries run in a child process that is killed at a deadline and
cannot grow past a memory cap.

The in-process layers of sqltrain.evaluate.sandbox stop almost everything, but two kinds of work
escape any in-process check (found by the hostile-input sweep of issue 13): one SQLite VM
instruction cannot be interrupted (``printf('%.*c', 2147483647, 'x')`` spends ~9 s in a single
step), and compiling a statement is not interrupted at all (an 800-byte chain of 20 self-joined
CTEs compiles for 5 s and takes 1.4 GB before SQLite gives up). So scoring runs in a child
process whose address space is capped (RLIMIT_AS: an allocation past the cap fails inside the
child and comes back as a typed ``too_large`` error), and which the parent kills when one
execution (or one comparison) runs past HARD_TIMEOUT_FACTOR x the query's timeout.

The child scores a whole chunk of items on its own (executions, gold-result reuse, comparison)
and streams the records back in batches; it never waits for the parent, so isolation costs no
round trip per query. Before each execution it writes a heartbeat (which item, which phase,
which variant, its deadline) into a small shared memory block that the parent reads while it
waits. After a kill the parent starts a fresh child (~0.1 s) for the items left, with the
killed execution's result fixed in advance ("seeded"), so every item still gets a full record.
Result rows never cross the pipe: they live and die in the child. Requests and records are
length-prefixed pickles over the child's stdin/stdout; the child runs only this module.

Run as ``python -m sqltrain.evaluate.isolated MEMORY_BYTES HEARTBEAT_FD`` it is the child.
"""

from __future__ import annotations

import atexit
import mmap
import os
import pickle
import select
import struct
import subprocess
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqltrain.evaluate.sandbox import ExecResult

HARD_TIMEOUT_FACTOR = 1.25
"""The parent kills the child when one execution has not finished after this many times its
timeout (the child's own progress handler stops ordinary runaways at 1.0x)."""
CHILD_MEMORY_BYTES = 2**30
"""Address-space cap of the child (RLIMIT_AS): the evaluation's memory cap, compile time included."""
MAX_OPEN_DATABASES = 8
"""Connections the child keeps open (the variants of the databases being scored)."""
RECORD_BATCH = 64
"""Records per message from the child (also sent every 50 ms); after a kill the items of an
unsent batch are simply scored again."""
IDLE, GOLD, PRED, COMPARE = range(4)
_PHASES = {GOLD: "the gold query", PRED: "the prediction", COMPARE: "comparing the results"}
_HEADER = struct.Struct("!Q")
_BEAT = struct.Struct("=Qqqqd")  # seq (odd while being written), item position, phase, variant, deadline


@dataclass(frozen=True)
class Job:
    """One item to score: `pred` against `gold` on every variant; without gold, just run `pred`."""

    key: int
    gold: str | None
    pred: Any
    order_matters: bool = False


class QueryProcess:
    """Scores jobs in a child process; kills and replaces it when an execution overruns."""

    def __init__(self, memory_bytes: int = CHILD_MEMORY_BYTES):
        self.memory_bytes = memory_bytes
        self._proc: subprocess.Popen | None = None
        self._dying: list[subprocess.Popen] = []  # killed children not reaped yet
        self._beat_fd = os.memfd_create("sqltrain-heartbeat")
        os.ftruncate(self._beat_fd, _BEAT.size)
        self._beat = mmap.mmap(self._beat_fd, _BEAT.size)

    def score(self, db_paths: list[str], jobs: list[Job], timeout_s: float, max_rows: int) -> list[dict[str, Any]]:
        """One record per job, in order (see _run_job); never raises for what the SQL does."""
        done: dict[int, dict[str, Any]] = {}
        seeds: dict[tuple, ExecResult] = {}
        while len(done) < len(jobs):
            todo = [j for j in jobs if j.key not in done]
            before = len(done) + len(seeds)
            stopped = self._run(db_paths, todo, timeout_s, max_rows, seeds, done)
            if stopped is not None:
                pos, phase, variant, result = stopped
                job = todo[pos]
                if phase == COMPARE:
                    done[job.key] = _failed_record(job, len(db_paths), result)
                else:
                    seeds[_seed_key(job, phase, variant)] = result
            if len(done) + len(seeds) == before and self._proc is None:
                raise RuntimeError("the query process exits without scoring anything; see its stderr")
        return [done[j.key] for j in jobs]

    def execute(self, db_path: str | Path, sql, timeout_s: float, max_rows: int) -> ExecResult:
        """The sandbox's ExecResult for one statement, under the same hard bounds."""
        return self.score([str(db_path)], [Job(0, None, sql)], timeout_s, max_rows)[0]["result"]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _run(self, db_paths, todo, timeout_s, max_rows, seeds, done) -> tuple | None:
        """Send one chunk; collect records until done (None) or until the child is killed or
        dies mid-execution: (position, phase, variant, the result that execution gets)."""
        proc = self._ensure()
        _BEAT.pack_into(self._beat, 0, 0, -1, IDLE, 0, 0.0)
        poll_s = min(0.05, timeout_s / 20)
        try:
            _write(proc.stdin, pickle.dumps((db_paths, todo, timeout_s, max_rows, seeds)))
            reader = _Reader(proc.stdout)
            while True:
                msg = reader.next(poll_s)
                if msg is _NOTHING:
                    beat = self._read_beat()
                    if beat is not None and beat[1] != IDLE and time.monotonic() > beat[3]:
                        self._kill(wait=False)  # a child holding a gigabyte takes a while to exit
                        seconds = HARD_TIMEOUT_FACTOR * timeout_s
                        return (*beat[:3], ExecResult(None, "timeout", f"killed after {seconds:.3g}s in "
                                f"{_PHASES[beat[1]]}: one uninterruptible SQLite step or compilation "
                                f"ran past the {timeout_s:g}s limit", seconds))
                elif msg is None:
                    return None
                else:
                    done.update((todo[pos].key, rec) for pos, rec in msg)
        except (EOFError, OSError):  # died: out of memory outside SQLite, or killed by the OS
            beat = self._read_beat()
            code = self._kill()
            if beat is None or beat[1] == IDLE:
                return None  # between items (e.g. it left after an out-of-memory answer): go on
            return (*beat[:3], ExecResult(None, "too_large", f"the query process died in {_PHASES[beat[1]]} "
                                          f"(exit status {code}); most likely out of memory"))

    def _read_beat(self) -> tuple[int, int, int, float] | None:
        """(position, phase, variant, deadline), or None while the child is writing it."""
        seq, pos, phase, variant, deadline = _BEAT.unpack_from(self._beat, 0)
        if seq % 2 or _BEAT.unpack_from(self._beat, 0)[0] != seq:
            return None
        return pos, phase, variant, deadline

    def _ensure(self) -> subprocess.Popen:
        self._dying = [p for p in self._dying if p.poll() is None]
        if self._proc is None or self._proc.poll() is not None:
            env = dict(os.environ)
            # The child imports this same sqltrain, wherever it was imported from.
            root = str(Path(__file__).resolve().parents[2])
            env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "sqltrain.evaluate.isolated", str(self.memory_bytes), str(self._beat_fd)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env, pass_fds=(self._beat_fd,),
            )
        return self._proc

    def _kill(self, wait: bool = True) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        proc.stdin.close()
        proc.stdout.close()
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
    """This process's QueryProcess (one child per evaluating process, reused across chunks)."""
    global _shared
    if _shared is None:
        _shared = QueryProcess()
        atexit.register(_shared.close)
    return _shared


def _seed_key(job: Job, phase: int, variant: int) -> tuple:
    # A gold query's result is shared by every item with that gold: one kill, one seed.
    return ("gold", job.gold, variant) if phase == GOLD else ("pred", job.key, variant)


def _failed_record(job: Job, variants: int, result: ExecResult) -> dict[str, Any]:
    return {"key": job.key, "correct": False, "error": result.error, "message": result.message,
            "gold_error": None, "gold_rows": None, "pred_rows": None, "variants": variants, "executions": 0}


# -- framing --------------------------------------------------------------------------------------
def _write(stream, payload: bytes) -> None:
    data = memoryview(_HEADER.pack(len(payload)) + payload)
    while data:
        data = data[os.write(stream.fileno(), data):]


_NOTHING = object()


class _Reader:
    """Length-prefixed pickles from a pipe; next(t) waits at most t seconds for one."""

    def __init__(self, stream):
        self.fd = stream.fileno()
        self.buf = bytearray()

    def next(self, timeout_s: float | None):
        while True:
            if len(self.buf) >= _HEADER.size:
                n = _HEADER.unpack_from(self.buf)[0]
                if len(self.buf) >= _HEADER.size + n:
                    msg = pickle.loads(self.buf[_HEADER.size:_HEADER.size + n])
                    del self.buf[:_HEADER.size + n]
                    return msg
            if not select.select([self.fd], [], [], timeout_s)[0]:
                return _NOTHING
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk


# -- the child ------------------------------------------------------------------------------------
class _Heartbeat:
    def __init__(self, fd: int):
        self.mem = mmap.mmap(fd, _BEAT.size)
        self.seq = _BEAT.unpack_from(self.mem, 0)[0] + 2

    def set(self, pos: int, phase: int, variant: int, deadline: float) -> None:
        # seqlock: an odd seq tells the reader a write is in progress
        self.seq += 2
        _BEAT.pack_into(self.mem, 0, self.seq - 1, pos, phase, variant, deadline)
        _BEAT.pack_into(self.mem, 0, self.seq, pos, phase, variant, deadline)


def _serve(memory_bytes: int, beat_fd: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    beat = _Heartbeat(beat_fd)
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the reply stream
    reader, boxes = _Reader(requests), OrderedDict()  # db path -> Sandbox
    while True:
        try:
            db_paths, jobs, timeout_s, max_rows, seeds = reader.next(None)
        except EOFError:
            return
        chunk_boxes = _boxes(boxes, db_paths, timeout_s, max_rows)  # databases were checked by the caller
        gold_sql, gold_cache, batch, flushed = None, {}, [], time.monotonic()
        for pos, job in enumerate(jobs):
            if job.gold != gold_sql:
                gold_sql, gold_cache = job.gold, {}
            try:
                rec = _run_job(pos, job, chunk_boxes, gold_cache, seeds, beat)
            except MemoryError:  # Python itself hit the cap (holding rows): start afresh
                rec = _failed_record(job, len(db_paths), ExecResult(None, "too_large", "out of memory (process cap)"))
            batch.append((pos, rec))
            if _out_of_memory(rec):  # a fresh child has an unfragmented heap: leave after this answer
                beat.set(-1, IDLE, 0, 0.0)
                _write(replies, pickle.dumps(batch))
                return
            # Records go back in batches: one message per item would cost the parent a wake-up each.
            if len(batch) >= RECORD_BATCH or time.monotonic() - flushed > 0.05:
                _write(replies, pickle.dumps(batch))
                batch, flushed = [], time.monotonic()
        beat.set(-1, IDLE, 0, 0.0)
        _write(replies, pickle.dumps(batch))
        _write(replies, pickle.dumps(None))


def _out_of_memory(rec: dict[str, Any]) -> bool:
    result = rec.get("result")
    message = result.message if isinstance(result, ExecResult) else rec.get("message", "")
    return "out of memory" in message


def _boxes(open_boxes: OrderedDict, db_paths: list[str], timeout_s: float, max_rows: int) -> list:
    """Sandboxes on db_paths, reused across chunks (at most MAX_OPEN_DATABASES kept open)."""
    from sqltrain.evaluate.sandbox import Sandbox

    out = []
    for path in db_paths:
        box = open_boxes.pop(path, None) or Sandbox(path, timeout_s=timeout_s, max_rows=max_rows)
        box.timeout_s, box.max_rows = timeout_s, max_rows
        open_boxes[path] = box
        out.append(box)
    while len(open_boxes) > max(MAX_OPEN_DATABASES, len(db_paths)):
        open_boxes.popitem(last=False)[1].close()
    return out


def _run_job(pos: int, job: Job, boxes: list, gold_cache: dict, seeds: dict, beat: _Heartbeat) -> dict[str, Any]:
    """Execute and compare one job on every variant: the record the runner writes, without
    exact match and hardness (the parent adds those). Stops at the first failing variant."""
    from sqltrain.evaluate.result_match import results_match

    def run(phase: int, v: int, sql) -> ExecResult:
        seeded = seeds.get(_seed_key(job, phase, v))
        if seeded is not None:
            return seeded
        beat.set(pos, phase, v, time.monotonic() + HARD_TIMEOUT_FACTOR * boxes[v].timeout_s)
        return boxes[v].execute(sql)

    if job.gold is None:
        return {"key": job.key, "result": run(PRED, 0, job.pred)}
    rec: dict[str, Any] = {"key": job.key, "correct": False, "error": None, "message": "", "gold_error": None}
    executions = 0
    for v in range(len(boxes)):
        if v not in gold_cache:
            gold_cache[v] = run(GOLD, v, job.gold)
            executions += 1
        gold, pred = gold_cache[v], run(PRED, v, job.pred)
        executions += 1
        if v == 0:
            rec["gold_rows"] = len(gold.rows) if gold.ok else None
            rec["pred_rows"] = len(pred.rows) if pred.ok else None
        if not gold.ok:
            rec.update(error="gold_failed", gold_error=gold.error, message=f"gold: {gold.message}")
            break
        if not pred.ok:
            rec.update(error=pred.error, message=pred.message)
            break
        beat.set(pos, COMPARE, v, time.monotonic() + HARD_TIMEOUT_FACTOR * boxes[v].timeout_s)
        if not results_match(gold.rows, pred.rows, job.order_matters):
            rec.update(error="wrong_result", message=f"differs on {Path(boxes[v].db_path).name}" if v else "")
            break
    else:
        rec["correct"] = True
    rec["variants"] = len(boxes)
    rec["executions"] = executions  # sandbox runs this item cost (gold runs are shared, counted once)
    return rec


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
