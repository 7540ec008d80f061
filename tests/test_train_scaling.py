"""benchmarks/train_scaling.py: its arithmetic, its run order, and its CPU smoke mode end to end
(so the GPU benchmark cannot rot between GPU sessions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import train_scaling  # noqa: E402


def test_headline_runs_come_first():
    args = train_scaling.parse_args(["--models", "qwen0.5b-spider,llama3-8b", "--workers", "2,1", "--zero", "3,2",
                                     "--compile", "off,on"])
    labels = [r.label for r in train_scaling.plan_runs(args)]
    assert labels[:4] == ["qwen0.5b-spider x1 ZeRO-2 compiled", "qwen0.5b-spider x2 ZeRO-2 compiled",
                          "llama3-8b x1 ZeRO-2 compiled", "llama3-8b x2 ZeRO-2 compiled"]
    assert len(labels) == 16 and labels[-1] == "llama3-8b x2 ZeRO-3 eager"


def test_throughput_comes_from_per_step_windows_after_the_warmup():
    # Cumulative tokens; each row's tokens_per_s covers its own step.
    rows = [{"step": 1, "tokens": 100, "tokens_per_s": 10.0, "loss": 3.0},
            {"step": 2, "tokens": 300, "tokens_per_s": 100.0, "loss": 2.5},
            {"step": 3, "tokens": 700, "tokens_per_s": 200.0, "loss": 2.0}]
    figures = train_scaling.window_figures(rows, warmup=1)
    assert figures["tokens_per_s"] == pytest.approx(600 / 4.0)  # (200 + 400) tokens in (2 + 2) s
    assert figures["step_time_s"] == pytest.approx(2.0) and figures["steps_timed"] == 2
    assert figures["median_step_tokens_per_s"] == pytest.approx(150.0)  # median of 100 and 200
    assert "error" in train_scaling.window_figures(rows, warmup=3)


def test_efficiency_and_the_compiled_vs_eager_comparison():
    runs = [
        {"model": "m", "workers": 1, "zero": 2, "compiled": True, "tokens_per_s": 1000.0, "losses": [4.0, 2.0]},
        {"model": "m", "workers": 2, "zero": 2, "compiled": True, "tokens_per_s": 1800.0, "losses": [4.0, 2.1]},
        {"model": "m", "workers": 2, "zero": 2, "compiled": False, "tokens_per_s": 1500.0, "losses": [4.0, 2.0]},
        {"model": "m", "workers": 2, "zero": 3, "compiled": True, "error": "boom"},
    ]
    train_scaling.add_efficiency(runs)
    assert runs[1]["efficiency"] == pytest.approx(0.9) and runs[1]["speedup"] == pytest.approx(1.8)
    assert "efficiency" not in runs[2]  # no 1-worker eager run to compare with
    (pair,) = train_scaling.compile_vs_eager(runs)
    assert pair["workers"] == 2 and pair["max_rel_loss_diff"] == pytest.approx(0.05)


@pytest.mark.slow
def test_cpu_smoke_mode_runs_one_and_two_workers_and_writes_its_json(tmp_path):
    out = tmp_path / "scaling.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_scaling.py"), "--smoke", "--out", str(out),
                           "--work", str(tmp_path / "work"), f"--cache-dir={tmp_path / 'models'}"],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    runs = {r["workers"]: r for r in report["runs"]}
    assert set(runs) == {1, 2} and report["device"].startswith("CPU")
    for r in runs.values():
        assert r["tokens_per_s"] > 0 and r["step_time_s"] > 0 and r["steps_timed"] == 4
        assert len(r["losses"]) == 6 and r["zero"] == 2 and r["compiled"] is False
    assert runs[2]["efficiency"] == pytest.approx(runs[2]["tokens_per_s"] / (2 * runs[1]["tokens_per_s"]))
    assert "x2 ZeRO-2 eager" in proc.stdout  # the table
