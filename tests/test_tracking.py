"""Experiment tracking: what a run logs (training reports, evaluation, comparison, Tune), written
through each backend's own client and read back with that tool's reader: TensorBoard's
EventAccumulator, MLflow's client on the local sqlite store. The slow tests log from a real
Ray Train run, where the callback runs in the Ray Train controller process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sqltrain.config import load_config
from sqltrain.tracking import flatten
from sqltrain.tracking.log import log_compare, log_evaluation, log_tune


def cfg_for(tmp_path: Path, backend: str, *overrides: str):
    return load_config(None, [f"run_dir={tmp_path / 'run'}", f"tracking.backend={backend}", *overrides])


def test_flatten_keeps_numeric_leaves_as_paths():
    values = {"loss": 1, "lr": 2e-4, "checkpoint": "/x", "resumed_from": None, "ids": [1, 2],
              "by_hardness": {"easy": {"n": 3, "ex": 0.5}}}
    assert flatten(values, "eval") == {"eval/loss": 1.0, "eval/lr": 2e-4, "eval/by_hardness/easy/n": 3.0,
                                       "eval/by_hardness/easy/ex": 0.5}


def test_tracking_dir_defaults_under_run_dir_and_tune_trials_share_it(tmp_path):
    from sqltrain.tune.tuner import trial_config

    cfg = cfg_for(tmp_path, "tensorboard")
    assert cfg.tracking.dir == str(tmp_path / "run" / "tracking") and cfg.tracking.prefix == "train"
    trial = trial_config(cfg.to_dict(), {"train.lr": 1e-3}, "abc12_00001")
    assert trial.run_dir == str(tmp_path / "run" / "tune" / "abc12_00001")
    assert trial.tracking.dir == cfg.tracking.dir and trial.tracking.prefix == "tune/abc12_00001"


def test_unknown_backend_is_a_config_error(tmp_path):
    from sqltrain.config import ConfigError

    with pytest.raises(ConfigError, match="tracking.backend"):
        cfg_for(tmp_path, "neptune")


def test_missing_client_fails_before_training_starts(tmp_path, monkeypatch):
    from sqltrain.config import ConfigError
    from sqltrain.tracking import backends
    from sqltrain.tracking.callback import training_callbacks

    assert training_callbacks(cfg_for(tmp_path, "none")) == []
    monkeypatch.setitem(backends.CLIENTS, "mlflow", ("no_such_mlflow_module", "sqltrain[mlflow]"))
    with pytest.raises(ConfigError, match=r"tracking.backend=mlflow needs no_such_mlflow_module: pip install"):
        training_callbacks(cfg_for(tmp_path, "mlflow"))


# --- one run's logging, as the stages do it (each in its own tracker, as in separate processes) ---


def eval_dir(path: Path, correct: list[bool]) -> Path:
    """An evaluation dir as `sqltrain evaluate` writes it (records.jsonl + summary.json)."""
    from sqltrain.evaluate.metrics import summarize_eval

    levels = ["easy", "medium", "hard", "extra"]
    records = [{"index": i, "correct": c, "exact_match": c, "hardness": levels[i % 4], "gold": f"SELECT {i}",
                "error": None if c else "wrong_result", "gold_error": None} for i, c in enumerate(correct)]
    path.mkdir(parents=True)
    (path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = summarize_eval(records, 1.0, split="dev")
    (path / "summary.json").write_text(json.dumps(summary.to_json()))
    return path


def log_a_run(cfg, tmp_path: Path) -> dict:
    """Training reports (two ranks; rank 1's must not be logged), both evaluations, the compare."""
    from sqltrain.report.paired import write_compare
    from sqltrain.tracking.callback import TrackingCallback

    callback = TrackingCallback(cfg)
    for step in (1, 2, 3):
        rank0 = {"step": step, "epoch": 0, "loss": 3.0 - step / 2, "lr": 1e-4 * step, "grad_norm": 0.5,
                 "tokens_per_s": 1000.0, "checkpoint": None} | ({"dev_loss": 2.2} if step == 3 else {})
        callback.after_report(None, [rank0, {**rank0, "loss": 99.0}], None)
    runs = tmp_path / "run"
    base = eval_dir(runs / "eval" / "base", [False] * 6 + [True] * 2)
    tuned = eval_dir(runs / "eval" / "finetuned", [True] * 6 + [False] * 2)
    for tag, d in (("base", base), ("finetuned", tuned)):
        log_evaluation(cfg, tag, json.loads((d / "summary.json").read_text()), d / "summary.json")
    result = write_compare(base, tuned, runs / "compare")
    log_compare(cfg, result, runs / "compare")
    callback.tracker.close()  # what the controller's exit does
    return result


def test_tensorboard_event_files_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = cfg_for(tmp_path, "tensorboard")
    result = log_a_run(cfg, tmp_path)
    logdir = Path(cfg.tracking.dir) / "tensorboard"
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 4  # controller, 2 evaluations, compare
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    scalars = lambda tag: [(e.step, round(e.value, 6)) for e in acc.Scalars(tag)]  # noqa: E731
    assert scalars("train/loss") == [(1, 2.5), (2, 2.0), (3, 1.5)]  # rank 0 only
    assert scalars("train/dev_loss") == [(3, 2.2)] and scalars("train/lr")[-1] == (3, 0.0003)
    assert scalars("eval/base/ex") == [(0, 0.25)] and scalars("eval/finetuned/ex") == [(0, 0.75)]
    assert scalars("eval/finetuned/by_hardness/easy/ex") == [(0, 1.0)]
    assert scalars("compare/overall/ex_delta") == [(0, 0.5)] and scalars("compare/fixed") == [(0, result["fixed"])]
    texts = acc.Tags()["tensors"]
    assert any(t.startswith("config") for t in texts) and any(t.startswith("compare") for t in texts)


def test_mlflow_local_store_reads_back(tmp_path):
    from mlflow.tracking import MlflowClient

    cfg = cfg_for(tmp_path, "mlflow", "tracking.project=sqltrain-test", "tracking.run_name=quick")
    log_a_run(cfg, tmp_path)
    ids = json.loads((Path(cfg.tracking.dir) / "run.json").read_text())
    [(key, run_id)] = ids.items()
    assert key == f"mlflow sqlite:///{cfg.tracking.dir}/mlflow.db"
    client = MlflowClient(tracking_uri=key.split(" ", 1)[1])
    [run] = client.search_runs([client.get_experiment_by_name("sqltrain-test").experiment_id])
    assert run.info.run_id == run_id and run.info.run_name == "quick"  # one run for every process
    history = lambda key: [(m.step, round(m.value, 6)) for m in client.get_metric_history(run_id, key)]  # noqa: E731
    assert history("train/loss") == [(1, 2.5), (2, 2.0), (3, 1.5)]
    assert history("eval/finetuned/ex") == [(0, 0.75)] and history("compare/overall/ex_delta") == [(0, 0.5)]
    assert run.data.params["train.lr"] == json.dumps(cfg.train.lr) and run.data.params["run_dir"] == cfg.run_dir
    artifacts = {a.path for folder in ("", "eval/finetuned", "compare") for a in client.list_artifacts(run_id, folder)}
    assert {"sqltrain_config.yaml", "compare.md", "eval/finetuned/summary.json", "compare/compare.json"} <= artifacts


def test_tune_summary_is_logged(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = cfg_for(tmp_path, "tensorboard")
    summary = {"metric": "dev_loss", "mode": "min", "experiment_path": "x", "trials": [
        {"trial_id": "a_00000", "config": {"train.lr": 1e-3}, "metric": 1.25, "step": 6, "status": "completed"},
        {"trial_id": "a_00001", "config": {"train.lr": 1e-4}, "metric": 2.5, "step": 3, "status": "stopped early"}]}
    summary["best"] = summary["trials"][0]
    results = tmp_path / "results.json"
    results.write_text(json.dumps(summary))
    log_tune(cfg, summary, results)
    acc = EventAccumulator(str(Path(cfg.tracking.dir) / "tensorboard"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("tune/best/dev_loss")] == [(6, 1.25)]


def test_backend_none_writes_nothing(tmp_path):
    cfg = cfg_for(tmp_path, "none")
    log_a_run(cfg, tmp_path)
    assert not Path(cfg.tracking.dir).exists()


def test_wandb_offline_run(tmp_path):
    """W&B is an optional extra; when installed, one offline run gets every process's logs."""
    pytest.importorskip("wandb")
    cfg = cfg_for(tmp_path, "wandb")
    log_a_run(cfg, tmp_path)
    run_id = json.loads((Path(cfg.tracking.dir) / "run.json").read_text())["wandb"]
    [run] = (Path(cfg.tracking.dir) / "wandb").glob(f"offline-run-*-{run_id}")  # one process here: one live run
    [log] = run.glob("*.wandb")
    assert log.stat().st_size > 0


# --- a real Ray Train run: the callback logs from the controller process --------------------------


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "model-cache"  # shared with test_model and test_train
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def ray_local():
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.mark.slow
# One backend through a real Ray Train run (the rank-0 reporting is the same for all; each
# backend's writing and reading back is tested above without Ray): mlflow, the one with a run id.
@pytest.mark.parametrize("backend", ["mlflow"])
def test_ray_train_run_logs_rank0_reports(backend, tmp_path, model_cache, mini_dir, ray_local):
    import sys

    from sqltrain.io import read_jsonl
    from sqltrain.model.loading import load_tokenizer
    from sqltrain.spider.benchmark import SpiderBenchmark
    from sqltrain.train.driver import run_train

    sys.path.insert(0, str(Path(__file__).parent))
    from train_shards import write_shards

    cfg = cfg_for(tmp_path, backend, f"model.cache_dir={model_cache}", "model.name=random:tiny",
                  "quantization.method=none", "model.gradient_checkpointing=false", "train.num_workers=2",
                  "train.cpus_per_worker=0.5", "train.micro_batch_size=4", "train.max_steps=4", "train.log_every=1",
                  "train.eval_every=2", "train.save_every=4", "train.eval_examples=8", "deepspeed.bucket_size=1000000")
    bench = SpiderBenchmark(mini_dir)
    write_shards(Path(cfg.run_dir), bench, load_tokenizer(cfg.model),
                 {"train": bench.examples("train")[:32], "dev": bench.examples("dev")[:8]})
    rows = read_jsonl(run_train(cfg).metrics_path)
    if backend == "tensorboard":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(Path(cfg.tracking.dir) / "tensorboard"))
        acc.Reload()
        got = lambda tag: [(e.step, e.value) for e in acc.Scalars(tag)]  # noqa: E731
    else:
        from mlflow.tracking import MlflowClient

        [(key, run_id)] = json.loads((Path(cfg.tracking.dir) / "run.json").read_text()).items()
        client = MlflowClient(tracking_uri=key.split(" ", 1)[1])
        got = lambda tag: [(m.step, m.value) for m in client.get_metric_history(run_id, tag)]  # noqa: E731
    steps, losses = zip(*got("train/loss"))
    assert [r["step"] for r in rows] == list(steps) == [1, 2, 3, 4]
    assert list(losses) == pytest.approx([r["loss"] for r in rows], rel=1e-6)  # TensorBoard keeps float32
    assert [s for s, _ in got("train/dev_loss")] == [2, 4] and len(got("train/tokens_per_s")) == 4
