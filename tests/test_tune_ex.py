"""Tune on execution accuracy (tune.metric=ex), checked before Ray starts; trial statuses;
best.yaml; and a real 2-trial search on the mini benchmark that scores each trial's adapter by
generating and executing its SQL, then resumes the finished experiment with --resume."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sqltrain.config import ConfigError, load_config

sys.path.insert(0, str(Path(__file__).parent))
from train_shards import write_shards  # noqa: E402


# --- checked before Ray starts ---------------------------------------------------------------


def test_mode_follows_the_metric_and_a_contrary_mode_is_an_error():
    assert load_config(None).tune.mode == "min"
    assert load_config(None, ["tune.metric=ex"]).tune.mode == "max"
    assert load_config(None, ["tune.metric=ex", "tune.mode=max"]).tune.mode == "max"
    with pytest.raises(ConfigError, match=r"tune.mode=min contradicts tune.metric=ex .*set tune.mode=max"):
        load_config(None, ["tune.metric=ex", "tune.mode=min"])
    with pytest.raises(ConfigError, match=r"tune.mode=max contradicts tune.metric=dev_loss"):
        load_config(None, ["tune.mode=max"])
    with pytest.raises(ConfigError, match=r"tune.eval_split: unknown split 'validaton'"):
        load_config(None, ["tune.eval_split=validaton"])


@pytest.mark.parametrize("overrides, message", [
    (["tune.metric=acc"], r"tune.metric: Input should be 'dev_loss' or 'ex' \(got 'acc'\)"),
    (["tune.metric=ex", "tune.mode=min"], r"tune.mode=min contradicts tune.metric=ex"),
    (["tune.eval_limit=0"], r"tune.eval_limit: Input should be greater than or equal to 1"),
])
def test_tune_cli_rejects_a_bad_metric_before_ray_starts(tmp_path, capsys, overrides, message):
    import re

    import ray

    from sqltrain.cli import main

    was_up = ray.is_initialized()
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"run_dir: {tmp_path / 'run'}\n")
    assert main(["tune", "--config", str(cfg_file), *overrides]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert ray.is_initialized() == was_up  # the error came before any Ray start
    assert not (tmp_path / "run").exists()


def test_resume_without_an_experiment_is_an_error_before_ray_starts(tmp_path, mini_dir, capsys):
    import ray

    from sqltrain.cli import main
    from sqltrain.model.loading import load_tokenizer
    from sqltrain.spider.benchmark import SpiderBenchmark

    run = tmp_path / "run"
    bench = SpiderBenchmark(mini_dir)
    write_shards(run, bench, load_tokenizer(load_config(None).model),
                 {"train": bench.examples("train")[:4], "dev": bench.examples("dev")[:4]})
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"run_dir: {run}\n")
    was_up = ray.is_initialized()
    assert main(["tune", "--config", str(cfg_file), "--resume"]) == 2
    assert f"--resume: no tune experiment at {run}/tune/run-tune" in capsys.readouterr().err
    assert ray.is_initialized() == was_up


# --- trial records ---------------------------------------------------------------------------


def test_a_trial_tune_did_not_end_is_interrupted_not_stopped_early(tmp_path):
    from ray.tune import Result

    from sqltrain.tune.tuner import ENDED, trial_record

    cfg = load_config(None, [f"run_dir={tmp_path}", "tune.metric=ex"])

    def record(trial_id, ended):
        if ended:
            (tmp_path / "tune" / trial_id).mkdir(parents=True)
            (tmp_path / "tune" / trial_id / ENDED).write_text("")
        result = Result(metrics={"trial_id": trial_id, "dev_loss": 0.7, "step": 2}, checkpoint=None, error=None, path="/p")
        return trial_record(result, cfg)

    stopped, interrupted = record("t_00001", ended=True), record("t_00002", ended=False)
    assert stopped["status"] == "stopped early" and interrupted["status"] == "interrupted"
    # metric=ex: the dev loss is kept beside it; ex (and so the metric) only for scored trials.
    assert (stopped["metric"], stopped["dev_loss"], stopped["ex"]) == (None, 0.7, None)


def test_ties_in_ex_go_to_the_lower_dev_loss():
    from sqltrain.tune.tuner import summarize_trials

    trials = [{"trial_id": tid, "metric": ex, "dev_loss": loss, "status": "completed"}
              for tid, ex, loss in [("a", 0.5, 2.0), ("b", 0.5, 1.0), ("c", 0.25, 0.5)]]
    summary = summarize_trials(trials, load_config(None, ["tune.metric=ex"]), "/x")
    assert [t["trial_id"] for t in summary["trials"]] == ["b", "a", "c"]


def test_best_yaml_is_the_base_config_with_the_best_values(tmp_path):
    from sqltrain.tune.scoring import write_best_yaml

    base = load_config(None, [f"run_dir={tmp_path / 'run'}", "tune.metric=ex", "train.max_steps=7"])
    best = {"trial_id": "t_00001", "metric": 0.25, "adapter_dir": "/a", "config": {"train.lr": 1e-3, "lora.r": 4}}
    path = tmp_path / "run" / "tune" / "best.yaml"
    write_best_yaml(base, best, path)
    cfg = load_config(path)
    assert (cfg.train.lr, cfg.lora.r, cfg.train.max_steps) == (1e-3, 4, 7)
    assert cfg.run_dir == base.run_dir and cfg.tracking.prefix == "train"
    assert path.read_text().startswith("# Best trial of `sqltrain tune` (ex=0.2500, max): t_00001")


# --- a real search on execution accuracy: 2 trials, 1 CPU worker each -------------------------


@pytest.fixture(scope="module")
def ex_search(tmp_path_factory, mini_dir):
    import ray

    from sqltrain.model.loading import load_tokenizer
    from sqltrain.spider.benchmark import SpiderBenchmark
    from sqltrain.tune.tuner import run_tune

    run = tmp_path_factory.mktemp("tune-ex") / "run"
    cache = tmp_path_factory.getbasetemp() / "model-cache"  # shared with test_model / test_train
    cache.mkdir(exist_ok=True)
    cfg = load_config(None, [
        f"run_dir={run}", f"model.cache_dir={cache}", "model.name=random:tiny", "quantization.method=none",
        "model.gradient_checkpointing=false", "linking.format=compact", "linking.token_budget=256",
        "prompt.max_seq_len=384", "train.num_workers=1", "train.cpus_per_worker=0.5",
        "train.micro_batch_size=4", "train.max_steps=4", "train.log_every=1", "train.eval_every=2",
        "train.save_every=4", "train.eval_examples=8", "deepspeed.stage=2", "deepspeed.bucket_size=1000000",
        "generate.max_new_tokens=8", "generate.batch_size=4",
        "tune.metric=ex", "tune.eval_limit=4", "tune.num_samples=2", "tune.scheduler=fifo",
        "tune.max_concurrent_trials=2",
        'tune.search_space={"train.lr": {"choice": [1.0e-2, 1.0e-4]}, "lora.r": {"randint": [4, 9]}}',
    ])
    bench = SpiderBenchmark(mini_dir)
    write_shards(run, bench, load_tokenizer(cfg.model),
                 {"train": bench.examples("train")[:16], "dev": bench.examples("dev")[:8]})
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield cfg, run_tune(cfg)
    finally:
        if started:
            ray.shutdown()


@pytest.mark.slow
def test_ex_search_scores_every_trial_by_execution(ex_search):
    cfg, summary = ex_search
    assert json.loads((Path(cfg.run_dir) / "tune" / "results.json").read_text()) == summary
    assert (summary["metric"], summary["mode"]) == ("ex", "max")
    trials = summary["trials"]
    assert len(trials) == 2 and all(t["status"] == "completed" for t in trials)
    for t in trials:
        assert t["metric"] == t["ex"] and 0.0 <= t["ex"] <= 1.0 and t["dev_loss"] > 0
        evaluation = json.loads((Path(t["run_dir"]) / "eval" / "tune-dev-4" / "summary.json").read_text())
        assert evaluation["n"] == 4 and evaluation["split"] == "dev" and evaluation["ex"] == t["ex"]
        predictions = (Path(t["run_dir"]) / "predictions" / "tune-dev-4.jsonl").read_text().splitlines()
        assert len(predictions) == 4
        meta = json.loads((Path(t["run_dir"]) / "predictions" / "tune-dev-4.meta.json").read_text())
        assert meta["adapter"] == t["adapter_dir"]  # generated with the trial's own adapter
        assert meta["adapters_in_pass"] == 2  # both trials' adapters in one generation pass
    # Ties in ex (likely with a random model) go to the lower dev loss.
    assert summary["best"] == min(trials, key=lambda t: (-t["ex"], t["dev_loss"]))
    # results.md: a row per trial, and each trial's dev loss at steps 2 and 4 from its own metrics
    md = (Path(cfg.run_dir) / "tune" / "results.md").read_text()
    assert f"Best: **{summary['best']['trial_id']}**" in md
    for t in trials:
        assert f"| {t['trial_id']} | completed | {t['ex']:.4f} | {t['dev_loss']:.4f} | 4 |" in md
    losses = md.split("by step:")[1]
    assert "| 2 | " in losses and "| 4 | " in losses and f"{trials[0]['dev_loss']:.4f}" in losses


@pytest.mark.slow
def test_a_bad_adapter_costs_only_its_own_score(ex_search, tmp_path):
    """When the shared generation pass fails (here: one trial's adapter dir lost its files), each
    adapter generates alone: the good trial is scored, the bad one gets its error."""
    import shutil

    from sqltrain.tune.scoring import score_trials

    cfg, summary = ex_search
    good, bad = (dict(t) for t in summary["trials"])
    good["run_dir"], bad["run_dir"] = str(tmp_path / "good"), str(tmp_path / "bad")  # nothing scored there yet
    shutil.copytree(good["adapter_dir"], tmp_path / "good-adapter")
    good["adapter_dir"], bad["adapter_dir"] = str(tmp_path / "good-adapter"), str(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    lines: list[str] = []
    scores = score_trials(cfg, [good, bad], log=lines.append)
    assert scores[good["trial_id"]] == summary["trials"][0]["ex"]
    assert isinstance(scores[bad["trial_id"]], Exception) and "missing adapter_config.json" in str(scores[bad["trial_id"]])
    assert any("adapters in one pass failed" in line for line in lines)


@pytest.mark.slow
def test_each_trial_trains_with_its_values_and_keeps_its_adapter_and_dev_losses(ex_search):
    cfg, summary = ex_search
    trials = summary["trials"]
    assert len({t["trial_id"] for t in trials}) == 2
    for t in trials:
        assert t["step"] == 4 and t["config"]["train.lr"] in (1e-2, 1e-4) and 4 <= t["config"]["lora.r"] < 9
        adapter = Path(t["adapter_dir"])
        assert adapter == Path(cfg.run_dir) / "tune" / t["trial_id"] / "train" / "adapter"
        assert (adapter / "adapter_model.safetensors").exists()
        saved = load_config(adapter / "sqltrain_config.yaml")
        assert saved.lora.r == t["config"]["lora.r"] and saved.train.lr == t["config"]["train.lr"]
        rows = [json.loads(line) for line in (Path(t["run_dir"]) / "train" / "metrics.jsonl").open()]
        assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[-1]["dev_loss"] == pytest.approx(t["dev_loss"])


@pytest.mark.slow
def test_dev_losses_reach_tune_while_training(ex_search):
    """Tune sees every dev-loss report as it happens (what ASHA decides on), then the final one
    with the trial's EX; the log-only reports (no dev_loss) are not forwarded."""
    _, summary = ex_search
    results = Path(summary["experiment_path"]).glob("*/result.json")
    rows_by_trial = [[json.loads(line) for line in p.open()] for p in results]
    assert len(rows_by_trial) == 2
    for rows in rows_by_trial:
        assert [r["step"] for r in rows][:2] == [2, 4]
        assert all("dev_loss" in r for r in rows) and "adapter_dir" in rows[-1]


@pytest.mark.slow
def test_best_yaml_loads_with_the_best_trials_values(ex_search):
    cfg, summary = ex_search
    best = load_config(Path(cfg.run_dir) / "tune" / "best.yaml")
    assert best.train.lr == summary["best"]["config"]["train.lr"]
    assert best.run_dir == cfg.run_dir and best.tune.metric == "ex"


@pytest.mark.slow
def test_resume_restores_the_experiment_without_training_again(ex_search):
    """--resume on a finished search: Tuner.restore finds every trial ended, nothing trains or
    generates again (the scores are reused), and results.json comes out the same; a second
    search on the same run_dir without --resume is refused."""
    from sqltrain.tune.tuner import run_tune

    cfg, summary = ex_search
    trained = {t["trial_id"]: (Path(t["adapter_dir"]) / "adapter_model.safetensors").stat().st_mtime_ns
               for t in summary["trials"]}
    with pytest.raises(ConfigError, match="a tune experiment already exists at .*: add --resume"):
        run_tune(cfg)
    again = run_tune(cfg, resume=True)
    assert sorted((t["trial_id"], t["status"], t["ex"], t["dev_loss"]) for t in again["trials"]) == \
        sorted((t["trial_id"], t["status"], t["ex"], t["dev_loss"]) for t in summary["trials"])
    assert again["best"] == summary["best"]
    for t in again["trials"]:
        assert (Path(t["adapter_dir"]) / "adapter_model.safetensors").stat().st_mtime_ns == trained[t["trial_id"]]


def test_tuning_on_the_validation_split_needs_one():
    with pytest.raises(ConfigError, match=r"tune.eval_split=validation needs a validation split"):
        load_config(None, ["tune.metric=ex", "tune.eval_split=validation"])
    cfg = load_config(None, ["tune.metric=ex", "tune.eval_split=validation", "data.validation.fraction=0.1"])
    assert cfg.tune.eval_split == "validation"


def test_results_md_without_a_completed_trial(tmp_path):
    from sqltrain.tune.report import results_markdown

    md = results_markdown({"metric": "ex", "mode": "max", "best": None, "trials": [
        {"trial_id": "t1", "status": "error", "ex": None, "dev_loss": None, "step": None,
         "config": {"train.lr": 1e-4}, "run_dir": str(tmp_path / "nothing")}]}, "validation")
    assert "No trial completed." in md and "| t1 | error | - | - | - | `train.lr=0.0001` |" in md
    assert "by step" not in md  # no trial logged a dev loss
