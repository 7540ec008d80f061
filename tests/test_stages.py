"""The stage registry: which config change re-runs which stage, and what is derived from it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from sqltrain import stages
from sqltrain.config import Config, load_config

# One change per config field of the top level: the stages whose output it makes stale.
EVERYTHING = {"prepare", "train", "generate-base", "generate-finetuned", "evaluate-base", "evaluate-finetuned",
              "compare", "report"}
FINETUNED = {"train", "generate-finetuned", "evaluate-finetuned", "compare", "report"}
RERUNS = {
    "data.limit=7": EVERYTHING,
    "linking.token_budget=123": EVERYTHING,
    "prompt.max_seq_len=777": EVERYTHING,
    "model.name=random:tiny": EVERYTHING,
    "lora.r=4": FINETUNED,
    "quantization.method=none": EVERYTHING - {"prepare"},  # the hf engine runs the base in NF4 too
    "deepspeed.stage=3": FINETUNED,
    "train.lr=0.001": FINETUNED,
    "generate.max_new_tokens=7": {"generate-base", "generate-finetuned", "evaluate-base", "evaluate-finetuned",
                                  "compare", "report"},
    "evaluate.timeout_s=3": {"evaluate-base", "evaluate-finetuned", "compare", "report"},
    "tune.num_samples=9": set(),
    "cluster.address=auto": set(),
    "run_dir=/elsewhere": set(),
    "tracking.backend=none": set(),
}


def _changed(override: str) -> set[str]:
    base, changed = load_config(None), load_config(None, [override])
    return {s for s in stages.PIPELINE if stages.stage_key(base, s) != stages.stage_key(changed, s)}


@pytest.mark.parametrize("override", RERUNS)
def test_a_config_change_reruns_exactly_the_stages_that_depend_on_it(override):
    assert _changed(override) == RERUNS[override]


def test_every_config_section_is_declared_by_a_stage_or_is_placement():
    declared = {sec for s in stages.STAGES for sec in s.sections}
    assert declared | set(stages.PLACEMENT_FIELDS) == set(Config.model_fields)
    assert not declared & set(stages.PLACEMENT_FIELDS)
    assert {o.split("=")[0].split(".")[0] for o in RERUNS} == set(Config.model_fields)  # the table above is whole


def test_registry_is_ordered_acyclic_and_runnable():
    seen: set[str] = set()
    for s in stages.STAGES:
        assert set(s.inputs) <= seen, f"{s.name} reads a stage declared after it"
        assert set(s.sections) <= set(Config.model_fields)
        assert all(f.is_file() for f in stages.code_files(s.code))
        seen.add(s.name)
    outputs = [o for s in stages.STAGES for o in s.outputs]
    assert len(outputs) == len(set(outputs))
    from sqltrain.pipeline import STAGE_NAMES, stage_runners

    assert set(stage_runners(load_config(None))) == set(STAGE_NAMES) == set(stages.PIPELINE)


def test_derived_sections_and_versions():
    from sqltrain.train.driver import RESUME_SECTIONS
    from sqltrain.tune.search import TUNABLE_SECTIONS

    assert set(RESUME_SECTIONS) == {"model", "lora", "quantization", "deepspeed", "train", "prompt"}
    assert set(TUNABLE_SECTIONS) == {"train", "lora", "quantization", "deepspeed"}
    assert stages.upstream("evaluate-finetuned") == ("prepare", "train", "generate-finetuned")
    assert stages.code_digest(("minibench",)) != stages.code_digest(("prep",))


def test_a_version_bump_reruns_the_stage_and_what_follows(monkeypatch):
    cfg = load_config(None)
    before = {s: stages.stage_key(cfg, s) for s in stages.PIPELINE}
    bumped = dataclasses.replace(stages.spec("generate-base"), version=2)
    monkeypatch.setitem(stages.BY_NAME, "generate-base", bumped)
    after = {s: stages.stage_key(cfg, s) for s in stages.PIPELINE}
    assert {s for s in stages.PIPELINE if before[s] != after[s]} == {"generate-base", "evaluate-base", "compare", "report"}


def test_prepare_fingerprint_follows_its_sections_and_code(mini_dir, monkeypatch):
    from sqltrain.prep.pipeline import fingerprint
    from sqltrain.spider.benchmark import SpiderBenchmark

    bench = SpiderBenchmark(mini_dir)
    cfg = load_config(None, [f"data.spider_dir={mini_dir}"])
    fp = fingerprint(cfg, bench)
    assert fingerprint(load_config(None, [f"data.spider_dir={mini_dir}", "train.lr=0.001"]), bench) == fp
    assert fingerprint(load_config(None, [f"data.spider_dir={mini_dir}", "linking.format=compact"]), bench) != fp
    monkeypatch.setitem(stages.BY_NAME, "prepare", dataclasses.replace(stages.spec("prepare"), code=("prep",)))
    assert fingerprint(cfg, bench) != fp


# -- the pipeline's markers, on its two stages that need no model -------------------------------
def _write_eval(path: Path, correct: list[bool]) -> None:
    path.mkdir(parents=True)
    recs = [{"index": i, "hardness": "easy", "correct": c, "exact_match": c, "error": None if c else "wrong_result"}
            for i, c in enumerate(correct)]
    (path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    ex = sum(correct) / len(correct)
    (path / "summary.json").write_text(json.dumps({"n": len(correct), "ex": ex, "exact_match": ex}))


def test_pipeline_markers_rerun_only_what_a_change_touches(tmp_path):
    from sqltrain.pipeline import run_pipeline

    run = tmp_path / "run"
    _write_eval(run / "eval" / "base", [True, False, False])
    _write_eval(run / "eval" / "finetuned", [True, True, False])
    logs: list[str] = []

    def pipeline(*overrides: str) -> list[str]:
        logs.clear()
        run_pipeline(load_config(None, [f"run_dir={run}", *overrides]), only=["compare", "report"], log=logs.append)
        return [line.split()[1].rstrip(":") for line in logs if line.endswith("running")]

    assert pipeline() == ["compare", "report"]
    assert json.loads((run / "stages" / "compare.json").read_text())["sections"] == list(stages.depends_on("compare"))
    assert pipeline() == []
    assert pipeline("tune.num_samples=9", "cluster.address=auto") == []
    assert pipeline("evaluate.timeout_s=3") == ["compare", "report"]
    (run / "compare" / "compare.json").unlink()
    assert pipeline("evaluate.timeout_s=3") == ["compare"]
    marker = run / "stages" / "report.json"  # a marker written before versions existed still holds
    old = json.loads(marker.read_text())
    del old["versions"]
    marker.write_text(json.dumps(old))
    assert pipeline("evaluate.timeout_s=3") == []


def test_every_stage_runs_as_run_stage_of_cfg_returning_a_typed_result():
    import inspect

    from sqltrain.evaluate.runner import run_evaluate
    from sqltrain.generate.pipeline import run_generate
    from sqltrain.prep.pipeline import run_prepare
    from sqltrain.report.paired import run_compare
    from sqltrain.report.report import run_report
    from sqltrain.train.driver import run_train
    from sqltrain.tune.tuner import run_tune

    runs = {"prepare": run_prepare, "train": run_train, "generate": run_generate, "evaluate": run_evaluate,
            "compare": run_compare, "report": run_report, "tune": run_tune}
    assert {name.split("-")[0] for name in stages.BY_NAME} == set(runs)
    for name, fn in runs.items():
        assert fn.__name__ == f"run_{name}"
        assert next(iter(inspect.signature(fn).parameters)) == "cfg"
        assert str(inspect.signature(fn).return_annotation).endswith(("Result", "EvalSummary")), name
