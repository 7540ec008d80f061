"""benchmarks/attention_ab.py: both arms train on the same rows; only the padding differs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

torch = pytest.importorskip("torch")

import attention_ab  # noqa: E402


def test_arms_see_the_same_rows_padded_differently():
    args = attention_ab.parse_args(["--batch", "4", "--seq", "37", "--min-seq", "9", "--cycle", "3"])
    plain, eight = attention_ab.batches(args, None, 1), attention_ab.batches(args, None, 8)
    assert len(plain) == len(eight) == 3
    for a, b in zip(plain, eight):
        assert b["input_ids"].shape[1] % 8 == 0 and b["input_ids"].shape[1] >= a["input_ids"].shape[1]
        assert a["input_ids"].shape[1] == int(a["attention_mask"].sum(1).max())  # pad 1: the longest row
        w = a["input_ids"].shape[1]
        assert torch.equal(a["input_ids"], b["input_ids"][:, :w]) and torch.equal(a["labels"], b["labels"][:, :w])
        assert int(b["attention_mask"][:, w:].sum()) == 0 and bool((b["labels"][:, w:] == -100).all())
    lengths = torch.cat([a["attention_mask"].sum(1) for a in plain])
    assert int(lengths.min()) >= 9 and int(lengths.max()) <= 37
