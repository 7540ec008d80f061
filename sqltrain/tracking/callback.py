"""The Ray Train callback that logs training metrics to the tracking run.

Ray Train V2 calls `after_report` in its controller process once per `ray.train.report`, with
every worker's metrics: only rank 0's (metrics[0]) are logged, as `MetricsLog` writes them to
metrics.jsonl. After a worker failure the steps since the restored checkpoint are reported
again; trackers keep both values of such a step (metrics.jsonl keeps the newer).
"""

from __future__ import annotations

from ray.train import UserCallback

from sqltrain.config import Config, config_from_dict
from sqltrain.tracking.backends import STEP_KEY, NoTracker, check_client, flatten, open_tracker


class TrackingCallback(UserCallback):
    """Logs each report's numeric values at its step under tracking.prefix (train, tune/<trial>).

    The tracker opens on the first report, inside the controller: Ray ships the callback there,
    so it carries only the config.
    """

    def __init__(self, cfg: Config):
        self.cfg_dict = cfg.to_dict()
        self.tracker: NoTracker | None = None

    def after_report(self, run_context, metrics, checkpoint) -> None:
        if self.tracker is None:
            self.tracker = open_tracker(config_from_dict(self.cfg_dict))
        report = dict(metrics[0])
        step = int(report.pop(STEP_KEY))
        self.tracker.log_metrics(flatten(report, self.cfg_dict["tracking"]["prefix"]), step)


def training_callbacks(cfg: Config) -> list[UserCallback]:
    """The callbacks that log cfg's training to its tracker (none for tracking.backend=none).
    A missing client fails here, before any worker starts, not at the first report."""
    if cfg.tracking.backend == "none":
        return []
    check_client(cfg)
    return [TrackingCallback(cfg)]
