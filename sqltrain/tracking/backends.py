"""The tracking backends: one class per client, `open_tracker` the factory (tracking.backend).

TensorBoard event files through torch's
SummaryWriter, MLflow through its client (a sqlite store under `tracking.dir` unless
`tracking.uri` names a server), W&B through `wandb` (offline by default). `none` logs nothing.
Several processes log to one run (the Ray Train controller, Tune trials, the pipeline driver);
they find it through `{tracking.dir}/run.json`, written once under a file lock by the first
one, which also logs the resolved config.
"""

from __future__ import annotations

import json
import logging
import uuid
from contextlib import contextmanager
from numbers import Real
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from sqltrain.config import Config, ConfigError
from sqltrain.io import atomic_write_json

RUN_FILE = "run.json"
"""In tracking.dir: the backends' run ids, shared by every process that logs to this run."""

STEP_KEY = "step"
"""W&B's per-namespace step axis (train/step, eval/step, ...)."""


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts as {"a/b/c": float}; strings, lists and None are left out."""
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name))
        elif isinstance(value, Real):
            out[name] = float(value)
    return out


def flat_config(cfg: Config) -> dict[str, str]:
    """The resolved config as dotted keys -> strings (MLflow params, W&B config)."""

    def walk(node: Any, prefix: str) -> Iterator[tuple[str, str]]:
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, f"{prefix}.{k}" if prefix else k)
        else:
            yield prefix, json.dumps(node) if not isinstance(node, str) else node

    return dict(walk(cfg.to_dict(), ""))


def run_name(cfg: Config) -> str:
    return cfg.tracking.run_name or Path(cfg.run_dir).name


@contextmanager
def run_ids(cfg: Config) -> Iterator[dict[str, str]]:
    """The run ids of {tracking.dir}/run.json, locked; changes made inside are saved."""
    from filelock import FileLock

    path = Path(cfg.tracking.dir) / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):
        ids = json.loads(path.read_text()) if path.exists() else {}
        before = dict(ids)
        yield ids
        if ids != before:
            atomic_write_json(path, ids)


class NoTracker:
    """tracking.backend=none: the run_dir's own files (metrics.jsonl, summaries) are the record."""

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def log_text(self, name: str, text: str) -> None:
        pass

    def log_file(self, path: str | Path, folder: str) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardTracker(NoTracker):
    """Event files in {tracking.dir}/tensorboard: `tensorboard --logdir <that dir>`. Each process
    writes its own file (named by time, host, pid and a counter); TensorBoard reads them as one run.

    torch's SummaryWriter, not tensorboardX's: its flush() waits until every queued event is on
    disk, while tensorboardX's flush() leaves queued events to a background thread (seen in a
    test: the last report was not on disk after flush()), which dies with the Ray Train
    controller process."""

    def __init__(self, cfg: Config):
        from torch.utils.tensorboard import SummaryWriter

        super().__init__(cfg)
        logdir = Path(cfg.tracking.dir) / "tensorboard"
        with run_ids(cfg) as ids:
            first = "tensorboard" not in ids
            ids.setdefault("tensorboard", str(logdir))
        self.writer = SummaryWriter(log_dir=str(logdir))
        if first:
            self.log_text("config", "```yaml\n" + yaml.safe_dump(cfg.to_dict(), sort_keys=False) + "```")

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()  # the controller process can end without a close

    def log_text(self, name: str, text: str) -> None:
        self.writer.add_text(name, text)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MlflowTracker(NoTracker):
    """One MLflow run in experiment tracking.project; local store: {tracking.dir}/mlflow.db
    (`mlflow ui --backend-store-uri sqlite:///<that file>`), artifacts beside it."""

    def __init__(self, cfg: Config):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError("tracking.backend=mlflow needs MLflow: pip install 'sqltrain[mlflow]'") from None
        for name in ("mlflow", "alembic"):  # table creation logs at INFO on first use
            logging.getLogger(name).setLevel(logging.WARNING)
        super().__init__(cfg)
        t, local = cfg.tracking, Path(cfg.tracking.dir)
        uri = t.uri or f"sqlite:///{local / 'mlflow.db'}"
        key = f"mlflow {uri}"
        with run_ids(cfg) as ids:  # the lock also serializes creating the sqlite schema
            self.client = MlflowClient(tracking_uri=uri)
            if key not in ids:
                ids[key] = self._create_run(None if t.uri else str(local / "mlflow-artifacts"))
        self.run_id = ids[key]

    def _create_run(self, artifact_location: str | None) -> str:
        from mlflow.entities import Param

        t = self.cfg.tracking
        exp = self.client.get_experiment_by_name(t.project)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(t.project, artifact_location)
        run_id = self.client.create_run(exp_id, run_name=run_name(self.cfg)).info.run_id
        # MLflow params are write-once: logged when the run is created, never again.
        params = [Param(k, v[:6000]) for k, v in flat_config(self.cfg).items()]
        for i in range(0, len(params), 100):  # log_batch takes at most 100 params
            self.client.log_batch(run_id, params=params[i:i + 100])
        self.client.log_text(run_id, yaml.safe_dump(self.cfg.to_dict(), sort_keys=False), "sqltrain_config.yaml")
        return run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, step) for k, v in metrics.items()]
        for i in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[i:i + 1000])

    def log_text(self, name: str, text: str) -> None:
        self.client.log_text(self.run_id, text, f"{name}.md")

    def log_file(self, path: str | Path, folder: str) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)


class WandbTracker(NoTracker):
    """One W&B run (tracking.project); offline files under {tracking.dir}/wandb: `wandb sync`."""

    def __init__(self, cfg: Config):
        try:
            import wandb
        except ImportError:
            raise ConfigError("tracking.backend=wandb needs wandb: pip install 'sqltrain[wandb]'") from None
        super().__init__(cfg)
        t = cfg.tracking
        with run_ids(cfg) as ids:
            first = "wandb" not in ids
            run_id = ids.setdefault("wandb", uuid.uuid4().hex[:8])  # W&B ids: short, [a-z0-9]
        # W&B refuses a second live run with the same id in one process: trackers opened while
        # one is live (e.g. stages run in-process next to the callback) share it.
        self.owner = run_id not in _WANDB_RUNS
        if self.owner:
            _WANDB_RUNS[run_id] = wandb.init(
                project=t.project, name=run_name(cfg), id=run_id, resume="allow", dir=t.dir,
                mode="offline" if t.offline else "online", config=flat_config(cfg) if first else None,
                reinit="create_new",
            )
        self.run = _WANDB_RUNS[run_id]
        self.axes: set[str] = set()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        # Each namespace (train, tune/<trial>, eval) gets its own step axis: W&B's own step must
        # only grow within a process, and evaluation steps do not continue training's.
        groups: dict[str, dict[str, float]] = {}
        for name, value in metrics.items():
            groups.setdefault(name.rsplit("/", 1)[0] if "/" in name else "", {})[name] = value
        for space, values in groups.items():
            axis = f"{space}/{STEP_KEY}" if space else STEP_KEY
            if axis not in self.axes:
                self.run.define_metric(f"{space}/*" if space else "*", step_metric=axis)
                self.axes.add(axis)
            self.run.log({**values, axis: step})

    def log_text(self, name: str, text: str) -> None:
        self.run.summary[name] = text

    def log_file(self, path: str | Path, folder: str) -> None:
        self.run.save(str(path), base_path=str(Path(path).parent), policy="now")

    def close(self) -> None:
        if self.owner:
            _WANDB_RUNS.pop(self.run.id).finish()


_WANDB_RUNS: dict[str, Any] = {}
"""Live W&B runs of this process by id."""


BACKENDS = {"none": NoTracker, "tensorboard": TensorBoardTracker, "mlflow": MlflowTracker, "wandb": WandbTracker}
CLIENTS = {"mlflow": ("mlflow", "sqltrain[mlflow]"), "wandb": ("wandb", "sqltrain[wandb]")}
"""Backends whose client is an optional extra: module, what to install."""


def check_client(cfg: Config) -> None:
    """ConfigError when tracking.backend's client is not installed (without importing it)."""
    import importlib.util

    module, extra = CLIENTS.get(cfg.tracking.backend, (None, None))
    if module is not None and importlib.util.find_spec(module) is None:
        raise ConfigError(f"tracking.backend={cfg.tracking.backend} needs {module}: pip install '{extra}'")


def open_tracker(cfg: Config) -> NoTracker:
    """The tracker of cfg.tracking.backend, attached to this run_dir's tracking run."""
    return BACKENDS[cfg.tracking.backend](cfg)


@contextmanager
def tracker(cfg: Config) -> Iterator[NoTracker]:
    t = open_tracker(cfg)
    try:
        yield t
    finally:
        t.close()
