"""benchmarks/guard_overhead.py on CPU: its on/off switch is the real guard (an inf gradient is
skipped with it on and applied with it off), and the summary's arithmetic."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import guard_overhead

torch = pytest.importorskip("torch")
pytest.importorskip("deepspeed")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from sqltrain.train.worker import build_engine

    args = guard_overhead.parse_args(["--cpu", "--model", "random:tiny", "--batch", "2", "--seq", "16",
                                      "--pairs", "1", "--block", "1", "--warmup", "0",
                                      "quantization.method=none", "train.compile=false",
                                      f"model.cache_dir={tmp_path_factory.mktemp('models')}"])
    guard_overhead.init_single_process()
    cfg = guard_overhead.make_config(args, str(tmp_path_factory.mktemp("run")))
    yield build_engine(cfg, torch.device("cpu"), cfg.train.max_steps, 1), guard_overhead.random_batch(args, "cpu", 0)
    torch.distributed.destroy_process_group()  # the rest of the session runs without a process group


def inf_step(engine, batch) -> bool:
    engine.backward(engine(**batch).loss * float("inf"))
    engine.step()
    return engine.was_step_applied()


@pytest.mark.slow
def test_the_switch_is_the_guard(engine):
    engine, batch = engine
    guard_overhead.set_guard(engine, True)
    assert not inf_step(engine, batch)  # skipped: no update
    assert all(p.isfinite().all() for p in engine.module.parameters() if p.requires_grad)
    guard_overhead.set_guard(engine, False)
    assert inf_step(engine, batch)  # DeepSpeed's bf16/fp32 ZeRO-2 default without the guard: applied


def test_summary():
    r = guard_overhead.summarize([1.01, 1.03], [1.0, 1.0])
    assert r["overhead"] == pytest.approx(0.02)
    assert r["paired_overhead_mean"] == pytest.approx(0.02)
    assert r["paired_overhead_sem"] == pytest.approx(0.01)


def test_busy_length_is_the_union_of_kernel_spans():
    assert guard_overhead.busy_length([]) == 0
    assert guard_overhead.busy_length([(0, 2), (1, 3), (5, 6)]) == 4  # overlap counted once, gap not at all
    assert guard_overhead.busy_length([(4, 5), (0, 10), (2, 3)]) == 10  # nested spans, any order


def test_abba_alternates_which_arm_goes_first():
    assert list(guard_overhead.abba(3, "A", "B")) == ["A", "B", "B", "A", "A", "B"]
