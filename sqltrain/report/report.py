"""The run report: `{run_dir}/report/report.md` plus PNG charts.

Reads whatever stages have produced so far — training metrics (`train/metrics.jsonl`),
evaluations (`eval/<name>/summary.json` + records.jsonl) — and says which parts are missing
instead of failing, so a report can be written after any stage. The directory is replaced
whole (sqltrain.io.atomic_dir), so readers never see a half-written report.
Charts use matplotlib's object API (Figure + Agg canvas): no pyplot global state, no display.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqltrain.evaluate.records import EvalSummary
from sqltrain.io import atomic_dir, read_jsonl
from sqltrain.report.paired import CompareError, compare, compare_markdown
from sqltrain.spider.hardness import LEVELS
from sqltrain.typed_json import RecordError

if TYPE_CHECKING:
    from sqltrain.config import Config

REFERENCE_EVAL = "base"  # compared against every other evaluation when present
LOSSES = {"train": "loss", "dev": "dev_loss"}
"""Series plotted -> the metrics.jsonl field the training loop reports it as."""


def load_train_metrics(path: Path) -> dict[str, list[tuple[float, float]]]:
    """(step, value) series of the training and dev loss from a metrics.jsonl."""
    series: dict[str, list[tuple[float, float]]] = {"train": [], "dev": []}
    for i, row in enumerate(read_jsonl(path)):
        if "step" not in row:
            raise ValueError(f"{path}: line {i + 1}: missing field 'step'")
        for name, field in LOSSES.items():
            if row.get(field) is not None:  # log rows carry the loss, evaluation rows the dev loss
                series[name].append((float(row["step"]), float(row[field])))
    return series


def find_evals(run_dir: Path, missing: list[str] | None = None) -> dict[str, EvalSummary]:
    """summary.json of every evaluation under run_dir/eval, the reference ("base") first;
    unreadable ones are left out and noted in `missing`."""
    found = {}
    for path in sorted((run_dir / "eval").glob("*/summary.json")):
        try:
            summary = EvalSummary.read(path)
        except RecordError as e:
            if missing is not None:
                problem = str(e).removeprefix(f"{path}: ")
                missing.append(f"`{path.relative_to(run_dir)}` is unreadable ({problem}): left out")
            continue
        found[path.parent.name] = summary
    names = sorted(found, key=lambda n: (n != REFERENCE_EVAL, n))
    return {n: found[n] for n in names}


def _figure(width: float = 7.0, height: float = 4.0):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.subplots()


def plot_losses(series: dict[str, list[tuple[float, float]]], path: Path) -> None:
    fig, ax = _figure()
    for name, style in (("train", "-"), ("dev", "o-")):
        if series[name]:
            steps, values = zip(*series[name])
            ax.plot(steps, values, style, label=f"{name} loss", markersize=4)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("Training and dev loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path)


def _grouped_bars(ax, groups: list[str], values: dict[str, list[float]], horizontal: bool = False,
                  fmt: str = "%g") -> None:
    width = 0.8 / max(1, len(values))
    for k, (label, vals) in enumerate(values.items()):
        pos = [g + (k - (len(values) - 1) / 2) * width for g in range(len(groups))]
        bars = (ax.barh if horizontal else ax.bar)(pos, vals, width, label=label)
        ax.bar_label(bars, fmt=fmt, fontsize=8, padding=2)
    (ax.set_yticks if horizontal else ax.set_xticks)(range(len(groups)), groups)
    if horizontal:
        ax.invert_yaxis()  # first group and first series on top, reading order
    ax.legend()


def plot_ex_by_hardness(evals: dict[str, EvalSummary], path: Path) -> list[str]:
    """Grouped bars of EX per hardness level (and overall), one bar per evaluation."""
    levels = [h for h in LEVELS if any(h in s.by_hardness for s in evals.values())]
    groups = ["all"] + levels
    values = {
        name: [100 * s.ex] + [100 * s.by_hardness[h].ex if h in s.by_hardness else 0.0 for h in levels]
        for name, s in evals.items()
    }
    fig, ax = _figure()
    _grouped_bars(ax, groups, values, fmt="%.0f")
    ax.set_ylabel("execution accuracy (%)")
    ax.set_ylim(0, 110)
    ax.set_title("Execution accuracy by hardness")
    fig.savefig(path)
    return groups


def error_kinds(evals: dict[str, EvalSummary]) -> list[str]:
    """Error types found in any evaluation, most frequent first."""
    totals: dict[str, int] = {}
    for s in evals.values():
        for k, n in s.errors.items():
            totals[k] = totals.get(k, 0) + n
    return sorted((k for k, n in totals.items() if n), key=lambda k: (-totals[k], k))


def plot_errors(evals: dict[str, EvalSummary], path: Path) -> list[str]:
    """Horizontal grouped bars of error-type counts, one bar per evaluation."""
    from matplotlib.ticker import MaxNLocator

    kinds = error_kinds(evals)
    if not kinds:
        return []
    values = {name: [s.errors.get(k, 0) for k in kinds] for name, s in evals.items()}
    fig, ax = _figure(7.0, 1.2 + 0.45 * len(kinds) * max(1, len(evals)) ** 0.5)
    _grouped_bars(ax, kinds, values, horizontal=True)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("examples")
    ax.set_title("Error types")
    fig.savefig(path)
    return kinds


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _eval_table(evals: dict[str, EvalSummary], levels: list[str]) -> list[str]:
    head = "| evaluation | n | EX | exact match | " + " | ".join(f"EX {h}" for h in levels[1:]) + " | seconds |"
    lines = [head, "|---" + "|---:" * (len(levels) + 3) + "|"]
    for name, s in evals.items():
        by = s.by_hardness
        cells = [_pct(by[h].ex) + f" ({by[h].n})" if h in by else "—" for h in levels[1:]]
        seconds = f"{s.seconds:.1f}" if s.seconds is not None else "—"
        lines.append(f"| {name} | {s.n} | {_pct(s.ex)} | {_pct(s.exact_match)} | "
                     + " | ".join(cells) + f" | {seconds} |")
    return lines


def _loss_section(run_dir: Path, out: Path, missing: list[str]) -> list[str]:
    path = run_dir / "train" / "metrics.jsonl"
    if not path.exists():
        missing.append(f"`{path.relative_to(run_dir)}` (no training yet): no loss curves")
        return []
    try:
        series = load_train_metrics(path)
    except ValueError as e:
        missing.append(f"`{path.relative_to(run_dir)}` is unreadable ({e}): no loss curves")
        return []
    if not series["train"] and not series["dev"]:
        missing.append(f"`{path.relative_to(run_dir)}` has no loss values: no loss curves")
        return []
    plot_losses(series, out / "loss.png")
    lines = ["## Training", "", "![loss curves](loss.png)", ""]
    for name in ("train", "dev"):
        if series[name]:
            (s0, v0), (s1, v1) = series[name][0], series[name][-1]
            best = min(v for _, v in series[name])
            lines.append(f"- {name} loss: {v0:.4f} at step {s0:g} → {v1:.4f} at step {s1:g} (best {best:.4f})")
        else:
            missing.append(f"{name} loss values in `{path.relative_to(run_dir)}`")
    return lines + [""]


def _eval_section(run_dir: Path, evals: dict[str, EvalSummary], out: Path, missing: list[str]) -> list[str]:
    if not evals:
        missing.append("`eval/<name>/summary.json` (no evaluation yet): no accuracy tables or charts")
        return []
    levels = plot_ex_by_hardness(evals, out / "ex_by_hardness.png")
    lines = ["## Execution accuracy", "", "Percent; per-level counts in parentheses.", "",
             *_eval_table(evals, levels), "", "![EX by hardness](ex_by_hardness.png)", ""]
    if REFERENCE_EVAL not in evals:
        missing.append(f"`eval/{REFERENCE_EVAL}` (the base model's evaluation): no before/after comparison")
    kinds = plot_errors(evals, out / "errors.png")
    if kinds:
        lines += ["## Error types", "", "| error | " + " | ".join(evals) + " |", "|---" + "|---:" * len(evals) + "|"]
        lines += [f"| {k} | " + " | ".join(str(s.errors.get(k, 0)) for s in evals.values()) + " |"
                  for k in kinds]
        lines += ["", "![error types](errors.png)", ""]
    return lines


def _compare_sections(run_dir: Path, evals: dict[str, EvalSummary], missing: list[str]) -> list[str]:
    if REFERENCE_EVAL not in evals:
        return []
    lines: list[str] = []
    for other in [n for n in evals if n != REFERENCE_EVAL]:
        try:
            result = compare(run_dir / "eval" / REFERENCE_EVAL, run_dir / "eval" / other)
        except CompareError as e:
            missing.append(f"comparison {REFERENCE_EVAL} vs {other}: {e}")
            continue
        lines += [compare_markdown(result, level=2), ""]
    return lines


@dataclass(frozen=True)
class ReportResult:
    report: Path
    """{run_dir}/report/report.md (its PNGs beside it)."""


def run_report(cfg: Config) -> ReportResult:
    """The report stage: write_report on the config's run_dir."""
    return ReportResult(write_report(cfg.run_dir))


def write_report(run_dir: str | Path) -> Path:
    """Write {run_dir}/report/report.md and its PNGs from the stages' outputs; returns the .md path."""
    run_dir = Path(run_dir).absolute()
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run dir {run_dir} does not exist")
    missing: list[str] = []
    evals = find_evals(run_dir, missing)
    with atomic_dir(run_dir / "report") as out:
        body = _loss_section(run_dir, out, missing)
        body += _eval_section(run_dir, evals, out, missing)
        body += _compare_sections(run_dir, evals, missing)
        head = [f"# sqltrain report: `{run_dir.name}`", "", f"Run directory: `{run_dir}`", ""]
        head += _model_lines(run_dir, missing)
        tail = ["## Missing parts", "", *(f"- {m}" for m in missing), ""] if missing else []
        (out / "report.md").write_text("\n".join(head + body + tail), encoding="utf-8")
    return run_dir / "report" / "report.md"


def _model_lines(run_dir: Path, missing: list[str]) -> list[str]:
    """Model and key settings from the resolved config saved beside the adapter, if any."""
    from sqltrain.config import ConfigError, load_config
    from sqltrain.train.checkpoints import CONFIG_FILE

    configs = sorted((run_dir / "train").glob(f"**/{CONFIG_FILE}"), key=lambda p: len(p.parts))
    if not configs:
        missing.append(f"`train/**/{CONFIG_FILE}` (no trained adapter yet): model settings unknown")
        return []
    try:
        cfg = load_config(configs[0])
    except ConfigError as e:
        missing.append(f"`{configs[0].relative_to(run_dir)}` is not a valid config: {e}")
        return []
    return [f"Model `{cfg.model.name}` (quantization {cfg.quantization.method}), LoRA r={cfg.lora.r} "
            f"alpha={cfg.lora.alpha}, lr={cfg.train.lr}, {cfg.train.num_workers} worker(s), "
            f"ZeRO-{cfg.deepspeed.stage}; config `{configs[0].relative_to(run_dir)}`.", ""]
