"""Training data: the prepared Parquet shards, read with Ray Data, batched per worker.

Batches are length-grouped (rows of a window are sorted by length and cut into micro batches,
whose order is then shuffled) and dynamically padded to the longest row of each micro batch, so
short Spider examples do not pay for long ones. Every worker yields exactly the same number of
micro batches per epoch (Ray Train splits the rows equally), which DeepSpeed's collectives need.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import pyarrow.fs as pafs
import pyarrow.parquet as pq

NUMERIC_COLUMNS = ["input_ids", "labels", "length"]
"""The shard columns training reads; the string columns (id, db_id, hardness) stay behind
because iter_batches/iter_torch_batches cannot carry them alongside tensors."""
IGNORE_INDEX = -100
GROUP_WINDOW = 32
"""Micro batches per length-grouping window: larger groups lengths better, but shuffles less."""


class ShardError(ValueError):
    """The prepared shards are missing or unusable; the message names the directory."""


@dataclass(frozen=True)
class SplitInfo:
    files: list[str]
    rows: int


def split_dir(run_dir: str, split: str) -> str:
    return f"{run_dir.rstrip('/')}/data/{split}"


def inspect_split(run_dir: str, split: str) -> SplitInfo:
    """List a split's shards and count rows from Parquet footers (local path or cloud URI)."""
    where = split_dir(run_dir, split)
    fs, path = pafs.FileSystem.from_uri(where if "://" in where else f"file://{where}")
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    files = sorted(i.path for i in infos if i.is_file and i.path.endswith(".parquet"))
    if not files:
        raise ShardError(f"no {split} shards (*.parquet) in {where}: run `sqltrain prepare` with this config first")
    rows = 0
    for f in files:
        with fs.open_input_file(f) as fh:
            meta = pq.ParquetFile(fh)
            missing = [c for c in NUMERIC_COLUMNS if c not in meta.schema_arrow.names]
            if missing:
                raise ShardError(f"{f}: missing column(s) {', '.join(missing)}; expected {NUMERIC_COLUMNS}")
            rows += meta.metadata.num_rows
    prefix = where.split("://")[0] + "://" if "://" in where else ""
    return SplitInfo(files=[prefix + f if prefix else f for f in files], rows=rows)


def read_split(info: SplitInfo, limit: int | None = None):
    """A Ray Dataset of the numeric columns of a split."""
    import ray.data

    ds = ray.data.read_parquet(info.files).select_columns(NUMERIC_COLUMNS)
    ds = ds.limit(limit) if limit is not None else ds
    ds.context.enable_progress_bars = False  # per-dataset copy: worker logs stay readable
    return ds


def pad_batch(rows: list[tuple[Any, Any]], device=None) -> dict[str, Any]:
    """Right-pad (input_ids, labels) rows to the longest; labels get -100, attention_mask 0."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.zeros((len(rows), width), dtype=torch.long)  # pad id is masked out anyway
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, lab) in enumerate(rows):
        n = len(ids)
        input_ids[i, :n] = torch.tensor(ids, dtype=torch.long)
        labels[i, :n] = torch.tensor(lab, dtype=torch.long)
        mask[i, :n] = 1
    batch = {"input_ids": input_ids, "labels": labels, "attention_mask": mask}
    return {k: v.to(device) for k, v in batch.items()} if device is not None else batch


def _rows(batches: Iterable[dict[str, Any]]) -> Iterator[tuple[Any, Any]]:
    for b in batches:
        yield from zip(b["input_ids"], b["labels"])


def _cut(buf: list, micro_batch_size: int, rng: random.Random) -> tuple[list[list], list]:
    """Sort a window by length, cut it into micro batches (shuffled), return them and the rest."""
    buf.sort(key=lambda r: len(r[0]))
    cut = len(buf) - len(buf) % micro_batch_size
    groups = [buf[i:i + micro_batch_size] for i in range(0, cut, micro_batch_size)]
    rng.shuffle(groups)
    return groups, buf[cut:]


def length_grouped(rows: Iterable[tuple[Any, Any]], micro_batch_size: int, rng: random.Random) -> Iterator[list]:
    """Micro batches of similar-length rows; a trailing partial micro batch is dropped."""
    pending: list = []
    for row in rows:
        pending.append(row)
        if len(pending) >= micro_batch_size * GROUP_WINDOW:
            groups, pending = _cut(pending, micro_batch_size, rng)
            yield from groups
    groups, _ = _cut(pending, micro_batch_size, rng)
    yield from groups


def epoch_micro_batches(data_iter, micro_batch_size: int, count: int, seed: int, device=None) -> Iterator[dict]:
    """Exactly `count` padded micro batches from one pass over a worker's shard.

    The shard is read to its end even after `count` batches, so that the next epoch of Ray
    Data's streaming split starts cleanly on every worker.
    """
    rng = random.Random(seed)
    grouped = length_grouped(_rows(data_iter.iter_batches(batch_format="numpy")), micro_batch_size, rng)
    produced = 0
    for group in grouped:
        if produced < count:
            produced += 1
            yield pad_batch(group, device)
    if produced < count:
        raise ShardError(f"worker shard gave {produced} micro batches, expected {count}: shards changed during the run?")


def micro_batch_stream(data_iter, micro_batch_size: int, per_epoch: int, seed: int, skip: int = 0, device=None):
    """Endless micro batches over epochs, skipping the first `skip` (those a resumed run has seen)."""
    epoch, skip_in_epoch = divmod(skip, per_epoch)
    while True:
        for i, batch in enumerate(epoch_micro_batches(data_iter, micro_batch_size, per_epoch, seed + epoch, device)):
            if i >= skip_in_epoch:
                yield batch
        skip_in_epoch = 0
        epoch += 1


def load_rows(data_iter) -> list[tuple[Any, Any]]:
    """All rows of a (small, unsplit) dataset, e.g. the dev rows used for the dev loss."""
    return list(_rows(data_iter.iter_batches(batch_format="numpy")))
