"""Compare two evaluations of the same split example by example ("before vs after").

Each side is an evaluation dir (`sqltrain evaluate` output: summary.json + records.jsonl).
Scores are recomputed from the records on the examples both sides share, so the two columns
always count the same questions. Examples are paired, so the significance of the EX change is
McNemar's exact test on the discordant pairs (fixed vs broken), not two separate accuracies.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from math import comb
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqltrain.evaluate.metrics import scores
from sqltrain.evaluate.records import EvalRecord, read_records
from sqltrain.io import atomic_dir, atomic_write_json, atomic_write_text, check_replaceable
from sqltrain.spider.hardness import LEVELS
from sqltrain.typed_json import RecordError

if TYPE_CHECKING:
    from sqltrain.config import Config


class CompareError(ValueError):
    """The evaluation dirs cannot be compared; the message names the file and field."""


def load_records(eval_dir: str | Path) -> dict[int, EvalRecord]:
    """records.jsonl of an evaluation dir keyed by example index, validated."""
    path = Path(eval_dir) / "records.jsonl"
    if not path.exists():
        raise CompareError(f"{path}: missing (is {eval_dir} an evaluation dir?)")
    try:
        records = read_records(path)
    except RecordError as e:
        raise CompareError(str(e)) from None
    out: dict[int, EvalRecord] = {}
    for i, rec in enumerate(records):
        if rec.index is None:  # what pairs the two sides
            raise CompareError(f"{path}: record {i}: missing field 'index'")
        if rec.index in out:
            raise CompareError(f"{path}: record {i}: duplicate index {rec.index}")
        out[rec.index] = rec
    return out


def mcnemar_p(fixed: int, broken: int) -> float:
    """Two-sided exact McNemar p-value: discordant pairs under H0 are Binomial(n, 1/2)."""
    n = fixed + broken
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(fixed, broken) + 1))
    return min(1.0, 2 * tail / 2**n)


def _side_by_side(a: list[EvalRecord], b: list[EvalRecord]) -> dict[str, Any]:
    sa, sb = scores(a), scores(b)
    return {
        "n": sa.n,
        "ex_a": sa.ex, "ex_b": sb.ex, "ex_delta": sb.ex - sa.ex,
        "exact_match_a": sa.exact_match, "exact_match_b": sb.exact_match,
        "exact_match_delta": sb.exact_match - sa.exact_match,
    }


def _check_same_split(ra: dict[int, EvalRecord], rb: dict[int, EvalRecord], shared: list[int],
                      dir_a: Path, dir_b: Path) -> None:
    if not shared:
        raise CompareError(f"{dir_a} and {dir_b} share no example index: not the same split")
    for i in shared:
        ga, gb = ra[i].gold, rb[i].gold
        if ga is not None and gb is not None and ga != gb:
            raise CompareError(
                f"{dir_a} and {dir_b}: example {i} has different gold SQL ({ga!r} vs {gb!r}): not the same split"
            )


def _by_level(recs: list[EvalRecord]) -> dict[str, list[int]]:
    """Positions of the records per hardness level, levels in Spider's order."""
    groups: dict[str, list[int]] = {}
    for k, r in enumerate(recs):
        groups.setdefault(r.hardness, []).append(k)
    order = [h for h in LEVELS if h in groups] + sorted(set(groups) - set(LEVELS))
    return {h: groups[h] for h in order}


def _example(ra: EvalRecord, rb: EvalRecord) -> dict[str, Any]:
    return {
        "index": ra.index, "id": ra.id, "db_id": ra.db_id,
        "hardness": ra.hardness, "question": ra.question or rb.question,
        "gold": ra.gold, "pred_a": ra.pred, "pred_b": rb.pred, "error_a": ra.error, "error_b": rb.error,
    }


NO_ERROR = "no error"


def _error_kind(r: EvalRecord) -> str:
    return r.error or NO_ERROR


def _error_shifts(a: list[EvalRecord], b: list[EvalRecord]) -> dict[str, Any]:
    ca, cb = Counter(map(_error_kind, a)), Counter(map(_error_kind, b))
    kinds = sorted(set(ca) | set(cb), key=lambda k: (-(ca[k] + cb[k]), k))
    moves = Counter(f"{_error_kind(x)} -> {_error_kind(y)}" for x, y in zip(a, b) if _error_kind(x) != _error_kind(y))
    return {
        "counts": {k: {"a": ca[k], "b": cb[k], "delta": cb[k] - ca[k]} for k in kinds},
        "transitions": dict(moves.most_common()),
    }


def compare(
    eval_dir_a: str | Path, eval_dir_b: str | Path, labels: tuple[str, str] | None = None,
    sample: int = 5, seed: int = 0,
) -> dict[str, Any]:
    """Paired comparison of two evaluations of one split (A = before, B = after)."""
    dir_a, dir_b = Path(eval_dir_a), Path(eval_dir_b)
    ra, rb = load_records(dir_a), load_records(dir_b)
    shared = sorted(set(ra) & set(rb))
    _check_same_split(ra, rb, shared, dir_a, dir_b)
    a, b = [ra[i] for i in shared], [rb[i] for i in shared]
    by_hardness = {h: _side_by_side([a[k] for k in ks], [b[k] for k in ks]) for h, ks in _by_level(a).items()}
    fixed = [_example(x, y) for x, y in zip(a, b) if not x.correct and y.correct]
    broken = [_example(x, y) for x, y in zip(a, b) if x.correct and not y.correct]
    rng = random.Random(seed)
    pick = lambda xs: sorted(rng.sample(xs, min(sample, len(xs))), key=lambda e: e["index"])  # noqa: E731
    return {
        "a": {"label": labels[0] if labels else dir_a.name, "dir": str(dir_a.absolute()), "n_records": len(ra)},
        "b": {"label": labels[1] if labels else dir_b.name, "dir": str(dir_b.absolute()), "n_records": len(rb)},
        "n": len(shared),
        "only_a": len(set(ra) - set(rb)),
        "only_b": len(set(rb) - set(ra)),
        "overall": _side_by_side(a, b),
        "by_hardness": by_hardness,
        "fixed": len(fixed),
        "broken": len(broken),
        "both_correct": sum(x.correct and y.correct for x, y in zip(a, b)),
        "both_wrong": sum(not x.correct and not y.correct for x, y in zip(a, b)),
        "mcnemar_p": mcnemar_p(len(fixed), len(broken)),
        "errors": _error_shifts(a, b),
        "samples": {"fixed": pick(fixed), "broken": pick(broken)},
    }


def regression_line(result: dict[str, Any]) -> str | None:
    """A loud one-line warning when B (the fine-tuned side) scores below A, else None."""
    o = result["overall"]
    if o["ex_delta"] >= 0:
        return None
    la, lb = result["a"]["label"], result["b"]["label"]
    return (f"WARNING: {lb} is WORSE than {la}: EX {_pct(o['ex_a'])}% -> {_pct(o['ex_b'])}% "
            f"({_delta(o['ex_delta'])} points on {result['n']} examples; {result['broken']} broken, "
            f"{result['fixed']} fixed, McNemar p = {result['mcnemar_p']:.3g})")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _delta(x: float) -> str:
    return f"{100 * x:+.1f}"


def _code(sql: str | None) -> str:
    return "`" + " ".join(str(sql).split()).replace("`", "'").replace("|", "\\|") + "`" if sql else "—"


def compare_markdown(result: dict[str, Any], level: int = 2) -> str:
    """The comparison as a markdown section (tables of scores, changes, error shifts, samples)
    whose heading has the given level."""
    la, lb = result["a"]["label"], result["b"]["label"]
    h, sub = "#" * level, "#" * (level + 1)
    unshared = f" ({result['only_a']} only in {la}, {result['only_b']} only in {lb}, left out)"
    warning = regression_line(result)
    lines = [
        f"{h} {la} vs {lb}", "", *([f"**{warning}**", ""] if warning else []),
        f"{result['n']} shared examples{unshared if result['only_a'] or result['only_b'] else ''}. "
        "Percentages; Δ in points.", "",
        f"| hardness | n | EX {la} | EX {lb} | Δ EX | EM {la} | EM {lb} | Δ EM |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [("**all**", result["overall"])] + list(result["by_hardness"].items())
    for name, s in rows:
        lines.append(
            f"| {name} | {s['n']} | {_pct(s['ex_a'])} | {_pct(s['ex_b'])} | {_delta(s['ex_delta'])} | "
            f"{_pct(s['exact_match_a'])} | {_pct(s['exact_match_b'])} | {_delta(s['exact_match_delta'])} |"
        )
    lines += [
        "", f"Fixed (wrong in {la}, right in {lb}): **{result['fixed']}**; broken (right in {la}, wrong in {lb}): "
        f"**{result['broken']}**; both right: {result['both_correct']}; both wrong: {result['both_wrong']}. "
        f"McNemar exact p = {result['mcnemar_p']:.3g}.", "",
        f"{sub} Error types", "", f"| error | {la} | {lb} | Δ |", "|---|---:|---:|---:|",
    ]
    for kind, c in result["errors"]["counts"].items():
        lines.append(f"| {kind} | {c['a']} | {c['b']} | {c['delta']:+d} |")
    if result["errors"]["transitions"]:
        lines += ["", "Most common changes: " + ", ".join(
            f"{k} ({v})" for k, v in list(result["errors"]["transitions"].items())[:8])]
    for kind in ("fixed", "broken"):
        lines += ["", f"{sub} Sample of {kind} examples", ""]
        for e in result["samples"][kind] or []:
            question = f": {e['question']}" if e["question"] else ""
            lines += [
                f"- **{e['id'] or e['index']}** ({e['db_id']}, {e['hardness']}){question}",
                f"  - gold: {_code(e['gold'])}",
                f"  - {la}: {_code(e['pred_a'])}" + (f" — {e['error_a']}" if e["error_a"] else ""),
                f"  - {lb}: {_code(e['pred_b'])}" + (f" — {e['error_b']}" if e["error_b"] else ""),
            ]
        if not result["samples"][kind]:
            lines.append("none")
    return "\n".join(lines) + "\n"


def write_compare(
    eval_dir_a: str | Path, eval_dir_b: str | Path, out_dir: str | Path, labels: tuple[str, str] | None = None,
    sample: int = 5,
) -> dict[str, Any]:
    """Compare two evaluation dirs and write out_dir/compare.json + compare.md (atomically)."""
    check_replaceable(out_dir, _earlier_compare, what="compare output")  # before the work
    result = compare(eval_dir_a, eval_dir_b, labels=labels, sample=sample)
    with atomic_dir(out_dir, _earlier_compare) as tmp:
        atomic_write_json(tmp / "compare.json", result)
        atomic_write_text(tmp / "compare.md", "# Comparison\n\n" + compare_markdown(result))
    return result


def _earlier_compare(path: Path) -> bool:
    """A compare dir written before output markers existed: compare.json + compare.md only."""
    return {p.name for p in path.iterdir()} <= {"compare.json", "compare.md"}


@dataclass(frozen=True)
class CompareResult:
    out_dir: Path
    """compare.json (the comparison) and compare.md."""
    comparison: dict[str, Any]
    """What compare.json holds: see compare()."""


def run_compare(cfg: Config) -> CompareResult:
    """The compare stage: the run's base vs fine-tuned evaluations, where the stage registry
    puts them, into {run_dir}/compare."""
    from sqltrain.stages import spec

    run = Path(cfg.run_dir)
    base, tuned = (run / spec(f"evaluate-{tag}").outputs[0] for tag in ("base", "finetuned"))
    out = (run / spec("compare").outputs[0]).parent
    return CompareResult(out, write_compare(base.parent, tuned.parent, out))
