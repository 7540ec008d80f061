"""{run_dir}/tune/results.md: the search at a glance, for people (results.json is for programs).

Two tables: every trial (status, metric, dev loss, step, sampled values; best first, as in
results.json), and each trial's dev loss at every evaluation step, read from the trial's own
{trial run_dir}/train/metrics.jsonl, so curves that ASHA cut short show where they stopped. The
same curves, and every other training metric, are in the tracking backend under tune/<trial_id>/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _value(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _number(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def dev_losses(run_dir: str) -> dict[int, float]:
    """step -> dev loss of one trial (empty when it logged none)."""
    path = Path(run_dir) / "train" / "metrics.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {int(r["step"]): float(r["dev_loss"]) for r in rows if r.get("dev_loss") is not None}


def results_markdown(summary: dict[str, Any], split: str) -> str:
    """results.md from results.json's content; `split` is what the dev losses were measured on."""
    trials = summary["trials"]
    lines = [f"# sqltrain tune: {summary['metric']} ({summary['mode']})", ""]
    best = summary["best"]
    lines += [f"Best: **{best['trial_id']}**, {summary['metric']} = {_number(best['metric'])}, "
              f"adapter `{best['adapter_dir']}`." if best else "No trial completed.", ""]
    lines += ["| trial | status | ex | dev loss | step | values |", "|---|---|---:|---:|---:|---|"]
    for t in trials:
        values = " ".join(f"`{k}={_value(v)}`" for k, v in t["config"].items())
        lines.append(f"| {t['trial_id']} | {t['status']} | {_number(t.get('ex'))} | {_number(t.get('dev_loss'))} | "
                     f"{t.get('step') or '-'} | {values} |")
    curves = {t["trial_id"]: dev_losses(t["run_dir"]) for t in trials if t.get("run_dir")}
    steps = sorted({s for c in curves.values() for s in c})
    if steps:
        ids = list(curves)
        lines += ["", f"Dev loss ({split}) by step:", "", "| step | " + " | ".join(ids) + " |",
                  "|---:|" + "---:|" * len(ids)]
        lines += [f"| {s} | " + " | ".join(_number(curves[i].get(s)) for i in ids) + " |" for s in steps]
    return "\n".join(lines) + "\n"
