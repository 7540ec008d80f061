"""train.packing: padding-free micro batches. The layout (position ids, labels, rows), the loss
against padded batches of the same examples, resume counting, and a real 2-worker run."""

from __future__ import annotations

import functools
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sqltrain.config import load_config
from sqltrain.train.data import (IGNORE_INDEX, PackedBatch, collator, input_tokens, micro_batch_stream, pack_batch,
                                 pad_batch)

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def _rows(lengths: list[int], seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input_ids, labels) rows as Ray Data hands them over: int32 arrays, the first half of
    each example a prompt (labels -100)."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in lengths:
        ids = rng.integers(1, 40_000, n).astype(np.int32)
        labels = ids.copy()
        labels[: n // 2] = IGNORE_INDEX
        rows.append((ids, labels))
    return rows


def test_one_row_layout_restarts_positions_and_masks_each_examples_first_label():
    rows = [(np.array([11, 12, 13]), np.array([-100, 12, 13])), (np.array([21, 22]), np.array([21, 22]))]
    batch = pack_batch(rows)
    assert batch["input_ids"].tolist() == [[11, 12, 13, 21, 22]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    # 21's label would be the target of token 13 after HF's shift: it must not cross examples.
    assert batch["labels"].tolist() == [[-100, 12, 13, -100, 22]]
    assert "attention_mask" not in batch and isinstance(batch, PackedBatch) and batch.tokens == 5


def test_capped_rows_fit_first_fit_decreasing_and_pad_as_a_segment_of_their_own():
    rows = _rows([5, 2, 4, 3])
    batch = pack_batch(rows, max_row_tokens=5)  # 5 | 4 | 3+2
    assert batch["input_ids"].shape == (3, 5)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 0], [0, 1, 0, 1, 2]]
    assert batch.tokens == 14 and int(input_tokens(batch)) == 14
    assert int(input_tokens(pad_batch(rows))) == 14  # the same count as the padded batch's mask
    # Every target token of every example survives, once.
    assert (batch["labels"] != IGNORE_INDEX).sum() == sum((lab[1:] != IGNORE_INDEX).sum() for _, lab in rows)


def test_collator_follows_packing_and_the_attention_implementation():
    rows = _rows([9, 3, 5, 4])
    assert collator(False, "sdpa") is pad_batch
    assert collator(True, "flash_attention_2")(rows)["input_ids"].shape == (1, 21)  # varlen kernels: one row
    assert collator(True, "sdpa")(rows)["input_ids"].shape == (3, 9)  # rows capped at the longest example
    assert collator(False, "sdpa", 8)(rows)["input_ids"].shape == (4, 16)  # train.pad_to_multiple_of
    assert collator(True, "sdpa", 8)(rows)["input_ids"].shape == (3, 9)  # packed batches are not padded


def test_padding_to_a_multiple_adds_only_masked_unlabelled_tokens():
    rows = _rows([9, 3, 16])
    plain, eight = pad_batch(rows), pad_batch(rows, multiple=8)
    assert plain["input_ids"].shape == (3, 16) and eight["input_ids"].shape == (3, 16)  # 16 already is one
    rows = _rows([9, 3, 5])
    plain, eight = pad_batch(rows), pad_batch(rows, multiple=8)
    assert eight["input_ids"].shape == (3, 16)
    for k in plain:
        assert torch.equal(eight[k][:, :9], plain[k])
    assert (eight["attention_mask"][:, 9:] == 0).all() and (eight["labels"][:, 9:] == IGNORE_INDEX).all()


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.getbasetemp() / "model-cache"  # shared with test_train / test_model
    cache.mkdir(exist_ok=True)
    return cache


@pytest.fixture(scope="module")
def tiny_model(model_cache):
    def load(attn: str):
        from sqltrain.model.loading import attach_lora, load_base_model

        cfg = load_config(None, ["model.name=random:tiny", "quantization.method=none", f"model.cache_dir={model_cache}",
                                 f"model.attn_implementation={attn}", "model.gradient_checkpointing=false",
                                 "lora.dropout=0.0"])
        torch.manual_seed(0)
        return attach_lora(load_base_model(cfg), cfg)  # as training runs it: LoRA, no KV cache

    return load


def _loss_and_grads(model, batch):
    model.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters() if p.requires_grad]


def test_padding_to_a_multiple_changes_neither_loss_nor_gradients(tiny_model):
    """train.pad_to_multiple_of: right padding is masked and unlabelled, so under a causal mask
    no real token sees it; only the kernels' float sums may differ (fp32, CPU)."""
    model = tiny_model("sdpa")
    rows = _rows([7, 19, 12, 5])

    loss_and_grads = functools.partial(_loss_and_grads, model)

    loss, grads = loss_and_grads(pad_batch(rows))
    loss8, grads8 = loss_and_grads(pad_batch(rows, multiple=8))
    assert loss8 == pytest.approx(loss, rel=1e-5)
    for a, b in zip(grads8, grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("cap", [None, 30])
def test_packed_loss_and_gradients_equal_the_padded_ones(tiny_model, attn, cap):
    # Tolerance: fp32 on CPU, 1e-5 relative on the loss and 1e-4 on the gradients. The same
    # examples, positions and attention: only the order of float sums may differ.
    model = tiny_model(attn)
    rows = _rows([7, 19, 12, 30, 5, 16, 3])

    loss_and_grads = functools.partial(_loss_and_grads, model)

    padded_loss, padded_grads = loss_and_grads(pad_batch(rows))
    packed = pack_batch(rows, max_row_tokens=cap)
    assert packed["input_ids"].numel() < pad_batch(rows)["input_ids"].numel()  # the padding is gone
    packed_loss, packed_grads = loss_and_grads(packed)
    # HF's loss is the mean over every target token of the micro batch: token-weighted already.
    assert packed_loss == pytest.approx(padded_loss, rel=1e-5)
    for a, b in zip(packed_grads, padded_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


class _Shard:
    """A worker's dataset shard as the stream reads it (iter_batches of numpy columns)."""

    def __init__(self, rows):
        self.rows = rows

    def iter_batches(self, batch_format: str):
        for i in range(0, len(self.rows), 10):
            chunk = self.rows[i:i + 10]
            yield {"input_ids": np.array([r[0] for r in chunk], dtype=object),
                   "labels": np.array([r[1] for r in chunk], dtype=object)}


def _examples(batch) -> list[tuple[int, ...]]:
    """The examples inside a padded or packed batch, as tuples of token ids (ids are >= 1 and
    padding is 0, so a packed row's trailing padding segment is recognisable)."""
    found = []
    for r, ids in enumerate(batch["input_ids"].tolist()):
        if "attention_mask" in batch:
            found.append(tuple(ids[:int(batch["attention_mask"][r].sum())]))
            continue
        pos = batch["position_ids"][r].tolist()
        starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
        found += [tuple(ids[a:b]) for a, b in zip(starts, starts[1:]) if ids[a] != 0]
    return sorted(found)


def test_resumed_packed_stream_skips_exactly_the_micro_batches_already_trained():
    rng = random.Random(3)
    shard = _Shard(_rows([rng.randint(4, 40) for _ in range(96)], seed=1))
    per_epoch, skip = 12, 17  # resume in the second epoch
    packed = collator(True, "sdpa")

    def take(n, skip=0, collate=pad_batch):
        stream = micro_batch_stream(shard, 4, per_epoch, seed=42, skip=skip, collate=collate)
        return [next(stream) for _ in range(n)]

    padded_run = take(skip + 5)
    packed_run = take(skip + 5, collate=packed)
    resumed = take(5, skip=skip, collate=packed)
    # Packing changes the layout, never which examples a micro batch holds...
    assert [_examples(b) for b in packed_run] == [_examples(b) for b in padded_run]
    # ...and a resumed packed run continues with the micro batch after the last one trained.
    assert [_examples(b) for b in resumed] == [_examples(b) for b in packed_run[skip:]]


@pytest.mark.slow
def test_two_worker_packed_run_matches_the_padded_run(tmp_path, model_cache):
    """ZeRO-2 on 2 gloo workers over the real prepared mini shards: padded vs packed, the same
    losses and dev losses (packing leaves the loss unchanged). That a resumed packed run skips
    exactly the trained micro batches is the stream-level test above; killing and resuming a
    worker is test_train's (the same resume code for both collators)."""
    from test_train import mini_run, uninterrupted_mini_run

    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        results = {"padded": uninterrupted_mini_run(tmp_path, model_cache),
                   "packed": mini_run(tmp_path / "packed", model_cache, "train.packing=true")[0]}
    finally:
        if started:
            ray.shutdown()
    padded, packed = results["padded"], results["packed"]
    assert [r["step"] for r in packed] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in packed] == pytest.approx([r["loss"] for r in padded], rel=1e-4)
    assert [r["dev_loss"] for r in packed if "dev_loss" in r] == pytest.approx(
        [r["dev_loss"] for r in padded if "dev_loss" in r], rel=1e-4)
    assert packed[-1]["tokens"] == padded[-1]["tokens"]  # non-pad tokens, counted alike


def test_packing_benchmark_measures_padding_as_training_batches(tmp_path, model_cache, mini_dir):
    import json

    import packing  # benchmarks/packing.py

    from sqltrain.model.loading import load_tokenizer
    from sqltrain.spider.benchmark import SpiderBenchmark
    from sqltrain.train.data import length_grouped
    from train_shards import write_shards

    bench = SpiderBenchmark(mini_dir)
    tok = load_tokenizer(load_config(None, ["model.name=random:tiny", f"model.cache_dir={model_cache}"]).model)
    data = write_shards(tmp_path / "run", bench, tok, {"train": bench.examples("train")[:80]})
    out = tmp_path / "padding.json"
    assert packing.main([str(data), "--micro", "4,8", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["rows"] == 80 and [m["micro_batch_size"] for m in report["micro_batches"]] == [4, 8]
    rows = packing.load_rows(data, "train")
    groups = list(length_grouped(rows, 4, random.Random(42)))
    padded = sum(4 * max(len(r[0]) for r in g) for g in groups)
    real = sum(len(r[0]) for g in groups for r in g)
    grouped = report["micro_batches"][0]["grouped (as trained)"]
    assert grouped["padding_share"] == pytest.approx(1 - real / padded)
    assert grouped["padding_share"] < report["micro_batches"][0]["arrival order"]["padding_share"]
