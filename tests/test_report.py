"""compare() on synthetic evaluations with hand-computed answers; the run report and its PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sqltrain.io import atomic_write_json, atomic_write_jsonl
from sqltrain.report.paired import CompareError, compare, mcnemar_p, write_compare
from sqltrain.report.report import write_report

# index: hardness, (A correct, A exact, A error), (B correct, B exact, B error)
TABLE = {
    0: ("easy", (True, True, None), (True, True, None)),
    1: ("easy", (False, False, "wrong_result"), (True, True, None)),  # fixed
    2: ("medium", (False, False, "execution_error"), (True, False, None)),  # fixed
    3: ("medium", (True, True, None), (False, False, "wrong_result")),  # broken
    4: ("hard", (False, False, "execution_error"), (False, False, "wrong_result")),
    5: ("hard", (False, False, "timeout"), (True, False, None)),  # fixed
    6: ("extra", (False, False, "wrong_result"), (False, False, "wrong_result")),
    7: ("extra", (True, False, None), (True, True, None)),
}


def _record(i: int, hardness: str, side: tuple) -> dict:
    correct, exact, error = side
    return {"index": i, "id": f"dev-{i}", "db_id": "concert_singer", "hardness": hardness,
            "gold": f"SELECT {i}", "pred": f"SELECT {i} -- {'ok' if correct else 'bad'}",
            "correct": correct, "exact_match": exact, "error": error}


def _summary(records: list[dict]) -> dict:
    by: dict = {}
    for r in records:
        by.setdefault(r["hardness"], []).append(r)
    score = lambda rs: {"n": len(rs), "ex": sum(r["correct"] for r in rs) / len(rs),  # noqa: E731
                        "exact_match": sum(r["exact_match"] for r in rs) / len(rs)}
    errors: dict = {}
    for r in records:
        if r["error"]:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    return {**score(records), "by_hardness": {h: score(rs) for h, rs in by.items()}, "errors": errors, "seconds": 1.5}


def write_eval(path: Path, side: int, extra: dict | None = None) -> Path:
    records = [_record(i, h, sides[side]) for i, (h, *sides) in TABLE.items()]
    if extra:
        records.append(extra)
    atomic_write_jsonl(path / "records.jsonl", records)
    atomic_write_json(path / "summary.json", _summary(records))
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    write_eval(run / "eval" / "base", 0)
    write_eval(run / "eval" / "finetuned", 1, extra=_record(8, "easy", (True, True, None)))
    return run


def test_compare_known_answers(run_dir: Path) -> None:
    r = compare(run_dir / "eval" / "base", run_dir / "eval" / "finetuned", sample=2)
    assert (r["a"]["label"], r["b"]["label"]) == ("base", "finetuned")
    assert (r["n"], r["only_a"], r["only_b"]) == (8, 0, 1)
    o = r["overall"]
    assert (o["ex_a"], o["ex_b"], o["ex_delta"]) == (3 / 8, 5 / 8, 2 / 8)
    assert (o["exact_match_a"], o["exact_match_b"]) == (2 / 8, 3 / 8)
    assert list(r["by_hardness"]) == ["easy", "medium", "hard", "extra"]
    assert {h: (s["n"], s["ex_a"], s["ex_b"]) for h, s in r["by_hardness"].items()} == {
        "easy": (2, 0.5, 1.0), "medium": (2, 0.5, 0.5), "hard": (2, 0.0, 0.5), "extra": (2, 0.5, 0.5)}
    assert r["by_hardness"]["extra"]["exact_match_delta"] == 0.5
    assert (r["fixed"], r["broken"], r["both_correct"], r["both_wrong"]) == (3, 1, 2, 2)
    assert r["mcnemar_p"] == pytest.approx(10 / 16)
    assert r["errors"]["counts"] == {
        "no error": {"a": 3, "b": 5, "delta": 2}, "wrong_result": {"a": 2, "b": 3, "delta": 1},
        "execution_error": {"a": 2, "b": 0, "delta": -2}, "timeout": {"a": 1, "b": 0, "delta": -1}}
    assert r["errors"]["transitions"] == {
        "wrong_result -> no error": 1, "execution_error -> no error": 1, "no error -> wrong_result": 1,
        "execution_error -> wrong_result": 1, "timeout -> no error": 1}
    fixed = r["samples"]["fixed"]
    assert len(fixed) == 2 and {e["index"] for e in fixed} <= {1, 2, 5}
    assert [e["index"] for e in r["samples"]["broken"]] == [3]
    assert r["samples"]["broken"][0]["error_b"] == "wrong_result"


def test_compare_is_antisymmetric(run_dir: Path) -> None:
    ab = compare(run_dir / "eval" / "base", run_dir / "eval" / "finetuned")
    ba = compare(run_dir / "eval" / "finetuned", run_dir / "eval" / "base")
    assert (ba["fixed"], ba["broken"]) == (ab["broken"], ab["fixed"])
    assert ba["overall"]["ex_delta"] == -ab["overall"]["ex_delta"]
    assert ba["mcnemar_p"] == ab["mcnemar_p"]


def test_mcnemar_exact_values() -> None:
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(10, 0) == pytest.approx(2 / 1024)
    assert mcnemar_p(5, 5) == 1.0
    assert mcnemar_p(2, 8) == pytest.approx(2 * (1 + 10 + 45) / 1024)


def test_compare_rejects_different_splits(tmp_path: Path) -> None:
    a = write_eval(tmp_path / "a", 0)
    b = tmp_path / "b"
    other_gold = [_record(i, "easy", (True, True, None)) | {"gold": "SELECT 99"} for i in range(3)]
    atomic_write_jsonl(b / "records.jsonl", other_gold)
    with pytest.raises(CompareError, match="different gold SQL"):
        compare(a, b)
    atomic_write_jsonl(b / "records.jsonl", [_record(100, "easy", (True, True, None))])
    with pytest.raises(CompareError, match="share no example"):
        compare(a, b)


def test_compare_names_bad_record(tmp_path: Path) -> None:
    a = write_eval(tmp_path / "a", 0)
    atomic_write_jsonl(tmp_path / "b" / "records.jsonl", [{"index": 0, "correct": True}])
    with pytest.raises(CompareError, match=r"records.jsonl: record 0: missing field 'exact_match'"):
        compare(a, tmp_path / "b")
    with pytest.raises(CompareError, match="missing"):
        compare(a, tmp_path / "nowhere")


def test_write_compare_and_cli(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    write_compare(run_dir / "eval" / "base", run_dir / "eval" / "finetuned", out)
    assert json.loads((out / "compare.json").read_text())["fixed"] == 3
    md = (out / "compare.md").read_text()
    assert "| **all** | 8 | 37.5 | 62.5 | +25.0 |" in md
    assert "Fixed (wrong in base, right in finetuned): **3**" in md

    from sqltrain.cli import main

    assert main(["compare", str(run_dir / "eval" / "base"), str(run_dir / "eval" / "finetuned"),
                 "--out", str(tmp_path / "cli"), "--labels", "before", "after"]) == 0
    assert "| hardness | n | EX before | EX after |" in (tmp_path / "cli" / "compare.md").read_text()
    assert main(["compare", str(run_dir / "eval" / "base"), str(tmp_path / "nowhere"), "--out", str(out)]) == 2


def assert_png(path: Path) -> None:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0  # not a blank canvas


def test_report_full_run(run_dir: Path) -> None:
    rows = [{"step": s, "loss": 2.0 / s, "lr": 1e-4} for s in range(1, 21)]
    rows += [{"step": s, "dev_loss": 1.5 / s ** 0.5} for s in (5, 10, 20)]
    atomic_write_jsonl(run_dir / "train" / "metrics.jsonl", rows)
    from sqltrain.config import load_config, save_config

    save_config(load_config(None, ["lora.r=8"]), run_dir / "train" / "adapter" / "sqltrain_config.yaml")

    path = write_report(run_dir)
    assert path == run_dir / "report" / "report.md"
    md = path.read_text()
    for png in ("loss.png", "ex_by_hardness.png", "errors.png"):
        assert f"]({png})" in md
        assert_png(run_dir / "report" / png)
    assert "train loss: 2.0000 at step 1 → 0.1000 at step 20 (best 0.1000)" in md
    assert "| base | 8 | 37.5 | 25.0 | 50.0 (2) |" in md
    assert "## base vs finetuned" in md and "LoRA r=8" in md
    assert "| wrong_result | 2 | 3 |" in md
    assert "Missing parts" not in md


def test_report_says_what_is_missing(tmp_path: Path) -> None:
    run = tmp_path / "empty"
    run.mkdir()
    md = write_report(run).read_text()
    assert "## Missing parts" in md
    assert "train/metrics.jsonl" in md and "eval/<name>/summary.json" in md
    assert not list((run / "report").glob("*.png"))

    write_eval(run / "eval" / "finetuned", 1)  # evaluated, never trained, no base
    md = write_report(run).read_text()
    assert_png(run / "report" / "ex_by_hardness.png")
    assert "eval/base" in md and "train/metrics.jsonl" in md
    assert not (run / "report" / "loss.png").exists()

    (run / "train").mkdir()
    (run / "train" / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"loss": 1.0}\n')
    (run / "eval" / "broken").mkdir()
    (run / "eval" / "broken" / "summary.json").write_text("{not json")
    md = write_report(run).read_text()
    assert "`train/metrics.jsonl` is unreadable" in md and "line 2: missing field 'step'" in md
    assert "`eval/broken/summary.json` is unreadable" in md
    assert "| finetuned | 8 |" in md


def test_report_cli(run_dir: Path, tmp_path: Path) -> None:
    from sqltrain.cli import main

    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report" / "report.md").exists()
    assert main(["report", str(tmp_path / "does-not-exist")]) == 2


def test_a_worse_fine_tuned_model_is_said_loudly(run_dir: Path, tmp_path: Path, capsys) -> None:
    from sqltrain.cli import main
    from sqltrain.pipeline import _warn_if_worse
    from sqltrain.report.paired import regression_line

    better = compare(run_dir / "eval" / "base", run_dir / "eval" / "finetuned")
    assert regression_line(better) is None
    worse = compare(run_dir / "eval" / "finetuned", run_dir / "eval" / "base", labels=("base", "finetuned"))
    line = regression_line(worse)
    assert line.startswith("WARNING: finetuned is WORSE than base: EX 62.5% -> 37.5% (-25.0 points")
    assert main(["compare", str(run_dir / "eval" / "finetuned"), str(run_dir / "eval" / "base"),
                 "--out", str(tmp_path / "cmp")]) == 0
    assert "WORSE" in capsys.readouterr().err
    assert "**WARNING:" in (tmp_path / "cmp" / "compare.md").read_text()
    _warn_if_worse({"base": {"ex": 0.453}, "finetuned": {"ex": 0.0}}, "runs/x")
    assert capsys.readouterr().err.startswith("WARNING: the fine-tuned model is WORSE than its base: EX 45.3% -> 0.0%")
    _warn_if_worse({"base": {"ex": 0.453}, "finetuned": {"ex": 0.6}}, "runs/x")
    assert capsys.readouterr().err == ""
