"""Training data: the prepared Parquet shards, read with Ray Data, batched per worker.

Batches are length-grouped (rows of a window are sorted by length and cut into micro batches,
whose order is then shuffled) and dynamically padded to the longest row of each micro batch, so
short Spider examples do not pay for long ones. Every worker yields exactly the same number of
micro batches per epoch (Ray Train splits the rows equally), which DeepSpeed's collectives need.

Row order: the shards keep the benchmark's order, and Spider's train files are sorted by
database (train_others last), so a window holds one or two databases. `train.shuffle_buffer`
rows of Ray Data's local shuffle buffer, seeded per epoch, mix them before the windows are cut.

With train.packing the same micro batches are collated padding-free instead (`pack_batch`):
the examples are concatenated, position ids restart at 0 for each, and no attention mask is
passed, which makes transformers keep attention inside each example (see `pack_batch`).
"""

from __future__ import annotations

import functools
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
    info = SplitInfo(files=[prefix + f if prefix else f for f in files], rows=rows)
    check_manifest(run_dir, split, info)
    return info


def check_manifest(run_dir: str, split: str, info: SplitInfo) -> None:
    """The shards found must be the ones the manifest lists, with its row counts: a shard that a
    prepare left on another node's disk (or a file copied in by hand) must not shrink or change
    the training set silently. Shards without a manifest (benchmarks' synthetic ones) pass."""
    import json
    import os

    path = f"{run_dir.rstrip('/')}/data/manifest.json"
    if "://" in run_dir or not os.path.exists(path):
        return
    try:
        entry = json.loads(open(path).read())["splits"][split]
        listed = {s["file"].rsplit("/", 1)[-1]: s["rows"] for s in entry["shards"]}
        examples = entry["examples"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ShardError(f"{path}: no usable entry for the {split} split ({type(e).__name__}: {e}); "
                         "run `sqltrain prepare` with this config again") from None
    found = {f.rsplit("/", 1)[-1] for f in info.files}
    missing, extra = sorted(set(listed) - found), sorted(found - set(listed))
    if missing or extra or info.rows != examples or sum(listed.values()) != examples:
        detail = "; ".join(filter(None, [f"missing {', '.join(missing)}" if missing else "",
                                         f"not in the manifest: {', '.join(extra)}" if extra else ""]))
        raise ShardError(f"{split_dir(run_dir, split)}: {info.rows} rows in {len(found)} shard(s), but manifest.json "
                         f"lists {examples} examples in {len(listed)}{f' ({detail})' if detail else ''}; "
                         "the shards are incomplete or changed (a prepare whose shards stayed on another node?): "
                         "run `sqltrain prepare` again with run_dir on storage every node sees")


def read_split(info: SplitInfo, limit: int | None = None):
    """A Ray Dataset of the numeric columns of a split."""
    import ray.data

    ds = ray.data.read_parquet(info.files).select_columns(NUMERIC_COLUMNS)
    ds = ds.limit(limit) if limit is not None else ds
    ds.context.enable_progress_bars = False  # per-dataset copy: worker logs stay readable
    return ds


def pad_batch(rows: list[tuple[Any, Any]], device=None, multiple: int = 1) -> dict[str, Any]:
    """Right-pad (input_ids, labels) rows to the longest, rounded up to `multiple`
    (train.pad_to_multiple_of); labels get -100, attention_mask 0."""
    import torch

    width = -(-max(len(ids) for ids, _ in rows) // multiple) * multiple
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


def pack_batch(rows: list[tuple[Any, Any]], device=None, max_row_tokens: int | None = None) -> dict[str, Any]:
    """Padding-free collation of (input_ids, labels) rows: the examples are concatenated into
    rows of at most `max_row_tokens` tokens (None: one row), first-fit by decreasing length.

    - position_ids restart at 0 for every example (and for the padding that ends a row);
    - labels: each example's first label is -100. HF shifts labels by one, so the last token of
      an example would otherwise learn to predict the next example's first token; in a padded
      batch that first label is never a target either, so the loss is the same;
    - no attention_mask: transformers (5.x) then derives the examples from the position ids
      (when the model runs without a KV cache, as training does: attach_lora sets use_cache=False).
      flash_attention_2/3/4 run varlen kernels over them (they detect packing only in a batch
      of one row: use one row); sdpa/eager/flex get a block-diagonal causal mask, which costs
      attention over the whole row, so rows there are capped at the micro batch's longest
      example: never more attention work than the padded batch.
    """
    import numpy as np
    import torch

    cap = max_row_tokens or sum(len(ids) for ids, _ in rows)
    packed: list[list[int]] = []  # indices of the rows that share a packed row
    room: list[int] = []
    for i in sorted(range(len(rows)), key=lambda i: -len(rows[i][0])):
        n = len(rows[i][0])
        slot = next((j for j, free in enumerate(room) if free >= n), None)
        if slot is None:
            packed.append([i])
            room.append(cap - n)
        else:
            packed[slot].append(i)
            room[slot] -= n
    width = max(cap - free for free in room)
    input_ids = torch.zeros((len(packed), width), dtype=torch.long)
    labels = torch.full((len(packed), width), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(packed), width), dtype=torch.long)
    for r, members in enumerate(packed):
        at = 0
        for i in sorted(members):  # the micro batch's order inside a row
            ids, lab = rows[i]
            n = len(ids)
            input_ids[r, at:at + n] = torch.from_numpy(np.asarray(ids, dtype=np.int64))
            labels[r, at + 1:at + n] = torch.from_numpy(np.asarray(lab[1:], dtype=np.int64))
            positions[r, at:at + n] = torch.arange(n)
            at += n
        positions[r, at:] = torch.arange(width - at)  # the row's padding: a segment of its own
    batch = {"input_ids": input_ids, "labels": labels, "position_ids": positions}
    return PackedBatch({k: v.to(device) if device is not None else v for k, v in batch.items()},
                       tokens=sum(len(ids) for ids, _ in rows))


class PackedBatch(dict):
    """A packed batch (the model's keyword arguments) that also carries its count of real
    tokens: without an attention mask, padding at the end of a row looks like an example."""

    def __init__(self, tensors: dict[str, Any], tokens: int):
        super().__init__(tensors)
        self.tokens = tokens


FLASH_ATTENTION = ("flash_attention_2", "flash_attention_3", "flash_attention_4")


def collator(packing: bool, attn_implementation: str, pad_to_multiple_of: int = 1):
    """rows -> batch function for train.packing, model.attn_implementation and train.pad_to_multiple_of."""
    if not packing:
        return pad_batch if pad_to_multiple_of == 1 else functools.partial(pad_batch, multiple=pad_to_multiple_of)
    if attn_implementation in FLASH_ATTENTION:
        return pack_batch  # one row

    def capped(rows, device=None):
        return pack_batch(rows, device, max_row_tokens=max(len(ids) for ids, _ in rows))

    return capped


def input_tokens(batch: dict[str, Any]):
    """Non-pad input tokens of a padded or packed batch (no host sync for padded ones)."""
    return batch.tokens if isinstance(batch, PackedBatch) else batch["attention_mask"].sum()


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


def epoch_micro_batches(data_iter, micro_batch_size: int, count: int, seed: int, device=None,
                        collate=pad_batch, shuffle_buffer: int = 0) -> Iterator[dict]:
    """Exactly `count` micro batches (padded, or packed by `collate`) from one pass over a
    worker's shard, its rows first shuffled in a buffer of `shuffle_buffer` rows (0: shard order).

    The shard is read to its end even after `count` batches, so that the next epoch of Ray
    Data's streaming split starts cleanly on every worker.
    """
    rng = random.Random(seed)
    shuffle = {"local_shuffle_buffer_size": shuffle_buffer, "local_shuffle_seed": seed} if shuffle_buffer else {}
    grouped = length_grouped(_rows(data_iter.iter_batches(batch_format="numpy", **shuffle)), micro_batch_size, rng)
    produced = 0
    for group in grouped:
        if produced < count:
            produced += 1
            yield collate(group, device)
    if produced < count:
        raise ShardError(f"worker shard gave {produced} micro batches, expected {count}: shards changed during the run?")


def micro_batch_stream(data_iter, micro_batch_size: int, per_epoch: int, seed: int, skip: int = 0, device=None,
                       collate=pad_batch, shuffle_buffer: int = 0):
    """Endless micro batches over epochs, skipping the first `skip` (those a resumed run has seen).
    Each epoch's order is a function of `seed + epoch` alone (shuffle buffer included), so a
    resumed run skips exactly what it trained. The grouping does not depend on `collate`, so
    packed and padded runs see the same examples in the same micro batches."""
    epoch, skip_in_epoch = divmod(skip, per_epoch)
    while True:
        for i, batch in enumerate(epoch_micro_batches(data_iter, micro_batch_size, per_epoch, seed + epoch, device,
                                                      collate, shuffle_buffer)):
            if i >= skip_in_epoch:
                yield batch
        skip_in_epoch = 0
        epoch += 1


def load_rows(data_iter) -> list[tuple[Any, Any]]:
    """All rows of a (small, unsplit) dataset, e.g. the dev rows used for the dev loss."""
    return list(_rows(data_iter.iter_batches(batch_format="numpy")))
