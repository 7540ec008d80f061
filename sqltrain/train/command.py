"""`sqltrain train --config FILE [key.sub=value ...]`: QLoRA fine-tuning on Ray Train + DeepSpeed.

Reads {run_dir}/data (from `sqltrain prepare`), writes {run_dir}/train: metrics.jsonl,
checkpoints/, adapter/ (PEFT dir loadable by peft.PeftModel.from_pretrained) and summary.json.
Re-running with the same run_dir and training config resumes from the latest checkpoint.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="QLoRA fine-tuning with Ray Train + DeepSpeed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="experiment YAML (see configs/)")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. train.lr=1e-4 deepspeed.stage=3")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from sqltrain.config import load_config
    from sqltrain.train.driver import run_train

    result = run_train(load_config(args.config, args.overrides))
    m, e = result.metrics, result.exported
    print(f"trained {result.steps} steps: loss {m['loss']:.4f}, dev loss {m['dev_loss']:.4f}, "
          f"{result.skipped_steps} step(s) skipped for non-finite gradients")
    print(f"metrics:     {result.metrics_path}")
    print(f"checkpoints: {result.checkpoint_dir}")
    print(f"adapter:     {result.adapter_dir} (checkpoint of step {e['step']}, dev loss {e['dev_loss']:.4f}, "
          f"train.export={e['policy']})")
    return 0
