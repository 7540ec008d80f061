"""Tune: search-space checks (fast, no Ray), concurrency caps, best-trial choice and records. The
real search on the mini benchmark is in test_tune_ex.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqltrain.config import ConfigError, load_config
from sqltrain.tune.search import max_concurrency, parse_search_space, with_values

REPO = Path(__file__).resolve().parents[1]


def parse(space: dict):
    return parse_search_space(space, load_config(None))


# --- search space ---------------------------------------------------------------------------


def test_search_space_parses_all_distributions():
    params = parse({
        "train.lr": {"loguniform": [1e-5, 1e-3]}, "lora.r": {"choice": [8, 16]},
        "lora.dropout": {"uniform": [0, 0.2]}, "train.grad_accum": {"randint": [1, 5]},
    })
    assert [(p.key, p.distribution, p.args) for p in params] == [
        ("train.lr", "loguniform", (1e-5, 1e-3)), ("lora.r", "choice", (8, 16)),
        ("lora.dropout", "uniform", (0.0, 0.2)), ("train.grad_accum", "randint", (1, 5)),
    ]


@pytest.mark.parametrize("space, message", [
    ({"train.lr": {"gaussian": [0, 1]}}, r"tune.search_space\['train.lr'\]: unknown distribution 'gaussian'"),
    ({"train.learning_rate": {"choice": [1e-4]}}, r"'train.learning_rate' is not a config field; train has: .*lr"),
    ({"optim.lr": {"choice": [1e-4]}}, r"'optim.lr' is not a config field; sections: run_dir, data"),
    ({"train.lr.x": {"choice": [1]}}, r"'train.lr.x' is not a config field"),
    ({"run_dir": {"choice": ["a"]}}, r"run_dir cannot vary between trials"),
    ({"linking.token_budget": {"choice": [256, 512]}}, r"linking cannot vary between trials .*prepared shards"),
    ({"train.lr": {"choice": [1e-4], "uniform": [0, 1]}}, r"expected one \{distribution: args\}"),
    ({"train.lr": {"choice": []}}, r"\['train.lr'\].choice: expected a non-empty list"),
    ({"train.lr": {"uniform": [1e-3, 1e-4]}}, r"low must be below high"),
    ({"train.lr": {"loguniform": [0, 1e-3]}}, r"bounds must be > 0"),
    ({"train.lr": {"uniform": [1e-4]}}, r"expected \[low, high\] numbers"),
    ({"train.grad_accum": {"randint": [1.5, 4]}}, r"bounds must be integers"),
    ({"lora.r": {"uniform": [4, 32]}}, r"\['lora.r'\].uniform: lora.r rejects 4.0"),
    ({"deepspeed.stage": {"choice": [2, 4]}}, r"deepspeed.stage rejects 4: .*ZeRO stage must be"),
    ({}, r"tune.search_space is empty"),
])
def test_bad_search_space_names_the_key(space, message):
    with pytest.raises(ConfigError, match=message):
        parse(space)


def test_sampled_values_keep_their_types():
    base = load_config(None).to_dict()
    cfg = with_values(base, {"train.lr": 5e-05, "lora.r": 32, "lora.target_modules": ["q_proj"]})
    assert cfg.train.lr == 5e-05 and cfg.lora.r == 32 and cfg.lora.target_modules == ["q_proj"]
    assert base["lora"]["r"] == 16  # the base is not modified


def test_concurrency_is_capped_by_gpus_per_trial_and_by_cpus():
    gpu = load_config(None, ["train.use_gpu=true", "train.num_workers=2", "tune.num_samples=8",
                             "tune.max_concurrent_trials=8"])
    assert max_concurrency(gpu, {"CPU": 64.0, "GPU": 8.0})[0] == 4
    assert max_concurrency(gpu, {"CPU": 64.0, "GPU": 3.0})[0] == 1
    n, why = max_concurrency(gpu, {"CPU": 8.0})  # autoscaling cluster before any GPU node is up
    assert n == 1 and "0 GPU" in why
    cpu = load_config(None, ["train.num_workers=2", "train.cpus_per_worker=0.5", "tune.num_samples=8",
                             "tune.max_concurrent_trials=8"])
    assert max_concurrency(cpu, {"CPU": 2.0})[0] == 1  # one CPU stays free for Ray Data
    assert max_concurrency(cpu, {"CPU": 16.0})[0] == 8  # 15 / 1.25 = 12 fit; 8 wanted
    few = load_config(None, ["tune.num_samples=2", "tune.max_concurrent_trials=8"])
    assert max_concurrency(few, {"CPU": 64.0})[0] == 2


def test_tune_quickstart_config_is_valid():
    cfg = load_config(REPO / "configs" / "tune-quickstart.yaml")
    assert cfg.data.spider_dir == "mini" and not cfg.train.use_gpu
    assert parse_search_space(cfg.tune.search_space, cfg)


def test_tune_cli_reports_bad_search_space_with_exit_code_2(tmp_path, capsys):
    from sqltrain.cli import main

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"run_dir: {tmp_path / 'run'}\ntune:\n  search_space:\n    train.lr: {{normal: [0, 1]}}\n")
    assert main(["tune", "--config", str(cfg_file)]) == 2
    assert "unknown distribution 'normal'" in capsys.readouterr().err


def test_best_is_the_best_completed_trial_and_errors_read_in_one_line():
    from ray.exceptions import RayTaskError
    from ray.train import WorkerGroupError

    from sqltrain.tune.tuner import error_line, summarize_trials

    def trial(tid, metric, status):
        return {"trial_id": tid, "metric": metric, "status": status}

    trials = [trial("a", 0.9, "completed"), trial("b", 0.5, "error"), trial("c", 0.7, "completed"),
              trial("d", None, "no result"), trial("e", 0.6, "stopped early")]
    low = summarize_trials(trials, load_config(None, ["tune.mode=min"]), "/x")
    assert low["best"]["trial_id"] == "c" and [t["trial_id"] for t in low["trials"]] == ["c", "a", "b", "e", "d"]
    assert summarize_trials(trials, load_config(None, ["tune.metric=ex"]), "/x")["best"]["trial_id"] == "a"
    assert summarize_trials(trials[1:2], load_config(None), "/x")["best"] is None
    # What a failed trial's Result.error holds: Ray's task error around the Train run's error.
    failed = WorkerGroupError("[Rank 0]: \x1b[36mTraceback ...\x1b[39m", {1: RuntimeError("later"),
                                                                        0: ValueError("lora.r is 0\n  detail")})
    err = RayTaskError("ImplicitFunc.train", "\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=1)\n  File x", failed,
                       proctitle="ray::ImplicitFunc.train", pid=1, ip="127.0.0.1").as_instanceof_cause()
    line = error_line(err)
    assert line.startswith("ray.train.WorkerGroupError: Training failed due to worker errors:")
    assert line.endswith("rank 0: ValueError: lora.r is 0")
    assert error_line(ConfigError("tune.metric='acc' is not a training metric\nmore")) == \
        "sqltrain.config.ConfigError: tune.metric='acc' is not a training metric"


def test_trial_records_take_the_trial_id_from_the_reported_metrics():
    from ray.tune import Result

    from sqltrain.tune.tuner import trial_record

    cfg = load_config(None, ["run_dir=/runs/r"])
    done = Result(metrics={"trial_id": "3f2a1_00001", "dev_loss": 0.5, "step": 4, "adapter_dir": "/a"},
                  checkpoint=None, error=None, path="/storage/anything-at-all")
    rec = trial_record(done, cfg)
    assert (rec["trial_id"], rec["status"], rec["metric"]) == ("3f2a1_00001", "completed", 0.5)
    assert rec["run_dir"] == "/runs/r/tune/3f2a1_00001"
    never = Result(metrics={"trial_id": "3f2a1_00002"}, checkpoint=None, error=ValueError("x"), path="/p")
    rec = trial_record(never, cfg)
    assert (rec["trial_id"], rec["status"], rec["metric"], rec["error"]) == ("3f2a1_00002", "error", None, "ValueError: x")

# The real 2-trial search (Tuner -> driver function -> TorchTrainer, one CPU worker per trial) is
# test_tune_ex.py's: one search on execution accuracy checks what a dev-loss search would too
# (trials, adapters, each trial's dev losses reaching Tune while it trains), at half the cost.


def test_the_gpu_tune_config_runs_two_trials_per_gpu_and_never_scores_on_dev():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "tune-qwen2.5-coder-0.5b-ex.yaml")
    assert (cfg.tune.metric, cfg.tune.mode, cfg.tune.eval_split, cfg.data.eval_split) == ("ex", "max", "validation", "validation")
    assert cfg.data.validation.fraction > 0
    assert max_concurrency(cfg, {"CPU": 16.0, "GPU": 1.0})[0] == 2  # the H100/H200 hosts: 16 cores, one GPU
    assert max_concurrency(cfg, {"CPU": 16.0, "GPU": 2.0})[0] == 2
