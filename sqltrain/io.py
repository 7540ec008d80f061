"""Atomic file and directory writes (readers never see half-written outputs), and file hashes.

Nothing here deletes what sqltrain did not make: a directory is replaced only when it carries
OUTPUT_MARKER (written into every directory `atomic_dir` makes), is empty, or is recognised as
an output of an earlier sqltrain version; anything else is an OutputError naming the path.
Temp files and dirs carry the writer's pid and host, so a later run removes the leftovers of a
killed one (and only those).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

OUTPUT_MARKER = ".sqltrain-output"
"""File in every directory sqltrain writes whole: its presence allows replacing the directory."""
UNTAGGED_TMP_AGE_S = 24 * 3600
"""Temp leftovers named by older versions (no pid/host tag) are removed once this old."""


class OutputError(ValueError):
    """An output path cannot be written without destroying something sqltrain did not create."""


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}@{_host_tag()}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_tmp(path: str | os.PathLike) -> list[Path]:
    """Remove temp leftovers of writes to `path` whose writer died (killed mid-write).

    Tagged leftovers (``.<name>.<pid>@<host>.<rand>.tmp``) go when that pid is gone on this
    host; untagged ones from older versions once UNTAGGED_TMP_AGE_S old; ``.<name>.old`` (a
    directory swap cut short) always. Returns what was removed.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    tagged = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)@([0-9a-f]{{8}})\.[^.]+\.tmp$")
    untagged = re.compile(rf"^\.{re.escape(path.name)}\.[^.@]+\.tmp$")
    removed = []
    for p in path.parent.glob(f".{_glob_escape(path.name)}.*"):
        m = tagged.match(p.name)
        if m:
            stale = m.group(2) == _host_tag() and not _pid_alive(int(m.group(1)))
        elif untagged.match(p.name):
            stale = time.time() - p.lstat().st_mtime > UNTAGGED_TMP_AGE_S
        else:
            stale = p.name == f".{path.name}.old"
        if stale:
            _remove(p)
            removed.append(p)
    return removed


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to a temp file beside `path`, then rename it into place."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; give a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def is_sqltrain_output(path: Path) -> bool:
    """True for a directory sqltrain wrote whole: it carries OUTPUT_MARKER, or it is an adapter or
    report of a version from before the marker (each holds a file only sqltrain writes there)."""
    if (path / OUTPUT_MARKER).is_file():
        return True
    if (path / "adapter_config.json").is_file() and (path / "sqltrain_config.yaml").is_file():
        return True
    report = path / "report.md"
    if not report.is_file():
        return False
    with open(report, "rb") as f:
        return f.read(17) == b"# sqltrain report"


def check_replaceable(path: str | os.PathLike, legacy: Callable[[Path], bool] | None = None, what: str = "output") -> None:
    """Raise OutputError unless `path` is absent, an empty directory, or a directory sqltrain wrote
    (is_sqltrain_output, or `legacy(path)` for a caller's own older outputs)."""
    path = Path(path)
    if str(path) in ("", "."):  # Path("") is "."; replacing the working directory is never meant
        raise OutputError(f"{what} path is empty or '.': give a directory of its own")
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir():
        raise OutputError(f"{what} {path} exists and is not a directory; give a directory path")
    if path.is_symlink():
        raise OutputError(f"{what} {path} is a symbolic link; give the directory itself")
    if not any(path.iterdir()) or is_sqltrain_output(path) or (legacy is not None and legacy(path)):
        return
    raise OutputError(
        f"{what} {path} holds files sqltrain did not write (no {OUTPUT_MARKER} marker); "
        "move them away or choose another path"
    )


@contextmanager
def atomic_dir(path: str | os.PathLike, legacy: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a temp dir beside `path`; on success it replaces `path` whole, else it is removed.

    `path` must be absent, empty or a sqltrain output (see check_replaceable; `legacy` widens
    that to a caller's outputs from older versions). The new directory carries OUTPUT_MARKER.
    """
    path = Path(path)
    check_replaceable(path, legacy)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_tmp_prefix(path), suffix=".tmp"))
    try:
        yield tmp
        (tmp / OUTPUT_MARKER).write_text("written by sqltrain; this directory is replaced whole on re-runs\n")
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            _remove(old)
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_once(dest: str | os.PathLike, build: Callable[[Path], None], is_complete: Callable[[Path], bool]) -> Path:
    """`dest`, unless is_complete(dest) already: build(tmp) fills a temp dir that then replaces dest
    whole. A file lock beside dest makes concurrent builders (Ray workers) wait instead of racing.
    dest lives in a sqltrain cache under a name made of a content key, so an incomplete one left
    by an older version is ours to replace."""
    from filelock import FileLock

    dest = Path(dest)
    if is_complete(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{dest}.lock"):
        if not is_complete(dest):
            with atomic_dir(dest, legacy=lambda _: True) as tmp:
                build(tmp)
    return dest


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, remembered in this process while its size and mtime stay the same
    (prepare hashes every database for its fingerprint and again for its value-index cache key)."""
    st = os.stat(path)
    return _sha256_of(str(Path(path).absolute()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=4096)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()
