"""Shared fixtures: the Spider data (skipped cleanly when absent) and the mini benchmark."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def spider_root() -> Path | None:
    """$SQLTRAIN_SPIDER_DIR, else ../shared/spider beside the checkout; None when absent."""
    env = os.environ.get("SQLTRAIN_SPIDER_DIR")
    candidates = [Path(env)] if env else [REPO.parent / "shared" / "spider", REPO / "shared" / "spider"]
    return next((p for p in candidates if (p / "tables.json").exists()), None)


@pytest.fixture(scope="session")
def spider_dir() -> Path:
    root = spider_root()
    if root is None:
        pytest.skip("Spider data not found: set $SQLTRAIN_SPIDER_DIR or place it at ../shared/spider")
    return root


@pytest.fixture(scope="session")
def mini_dir(tmp_path_factory) -> Path:
    """The embedded mini benchmark, generated once per test session."""
    from sqltrain.minibench.build import write_mini_benchmark

    return write_mini_benchmark(tmp_path_factory.mktemp("mini") / "mini")
