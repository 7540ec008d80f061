"""Experiment tracking: training metrics, Tune trials and evaluation results in one tracking run.

`tracking.backend` (none | tensorboard | mlflow | wandb) picks the client; one run_dir is one
tracking run, whichever process logs to it:

- the Ray Train controller: `callback.training_callbacks` logs rank 0's reports (every numeric
  key, so new training metrics need no change here) under `train/` (`tune/<trial_id>/` in a
  Tune trial);
- `sqltrain tune`: the best trial and a table of all trials (`log.log_tune`);
- the pipeline driver: each evaluation summary and the base-vs-fine-tuned comparison after it
  is written (`log.log_evaluation`, `log.log_compare`).

Metric names are paths: `train/loss`, `tune/<trial>/dev_loss`, `eval/finetuned/ex`,
`eval/finetuned/by_hardness/hard/ex`, `compare/overall/ex_delta`.
"""

from sqltrain.tracking.backends import BACKENDS, flatten, open_tracker, tracker

__all__ = ["BACKENDS", "flatten", "open_tracker", "tracker"]
