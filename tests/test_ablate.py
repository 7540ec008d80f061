"""benchmarks/ablate.py: variants checked before anything runs, adapters shared only between
variants that train the same way, and a real ablation on the mini benchmark's validation split
that resumes without training again."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sqltrain.config import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import ablate  # noqa: E402

TINY = ["model.name=random:tiny", "quantization.method=none", "model.gradient_checkpointing=false",
        "linking.format=compact", "linking.token_budget=256", "prompt.max_seq_len=384",
        "train.num_workers=1", "train.cpus_per_worker=0.5", "train.micro_batch_size=4",
        "train.max_steps=2", "train.log_every=1", "train.eval_every=2", "train.save_every=2",
        "train.eval_examples=8", "train.keep_best=1", "train.max_failures=0",
        "deepspeed.stage=2", "deepspeed.bucket_size=1000000",
        "generate.batch_size=4", "generate.max_new_tokens=8", "generate.limit=6",
        "tracking.backend=none"]


def write_variants(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_only_variants_that_train_alike_share_an_adapter(tmp_path):
    variants = ablate.read_variants(write_variants(tmp_path / "v.yaml", """
baseline: {}
r4: {lora.r: 4, lora.alpha: 8}
short: {generate.max_new_tokens: 4}
budget: {linking.token_budget: 128}
"""))
    todo = ablate.plan(None, variants, [1, 2], 0.2, TINY, tmp_path / "work")
    dirs = {(v.name, v.seed): v.run_dir for v in todo}
    data = {(v.name, v.seed): v.data_from for v in todo}
    first = dirs["baseline", 1]
    for seed in (1, 2):
        assert dirs["short", seed] == dirs["baseline", seed] == (tmp_path / "work" / f"baseline-seed{seed}").absolute()
        assert len({dirs[n, seed] for n in ("baseline", "r4", "budget")}) == 3  # lora and linking retrain
        assert data["r4", seed] == first  # ... but only linking re-prepares: r4 trains on the first shards
        assert data["budget", seed] == (None if seed == 1 else dirs["budget", 1])
    assert dirs["baseline", 1] != dirs["baseline", 2] and data["baseline", 2] == first and data["baseline", 1] is None
    for v in todo:  # every variant scores on the held-out databases, never on dev
        assert (v.cfg.data.eval_split, v.cfg.data.validation.fraction) == ("validation", 0.2)
        assert v.cfg.run_dir == str(v.run_dir) and v.cfg.train.seed == v.seed
    assert next(v for v in todo if v.name == "short").cfg.generate.max_new_tokens == 4


@pytest.mark.parametrize("text, message", [
    ("baseline: {}\nbad: {lora.rr: 4}\n", r"variant 'bad': .*lora.rr"),
    ("baseline: {}\nbad: {lora.r: many}\n", r"variant 'bad': .*lora.r"),
    ("- baseline\n", r"expected a mapping of variant name"),
    ("baseline: {}\nbad: [1]\n", r"variant 'bad': expected a mapping"),
    ("'a b': {}\n", r"variant name 'a b'"),
])
def test_a_bad_variant_is_named_before_anything_runs(tmp_path, capsys, text, message):
    import re

    work = tmp_path / "work"
    out = tmp_path / "out.json"
    code = ablate.main(["--variants", str(write_variants(tmp_path / "v.yaml", text)), "--work", str(work),
                        "--out", str(out), *TINY])
    assert code == 2 and re.search(message, capsys.readouterr().err)
    assert not work.exists() and not out.exists()


@pytest.mark.slow
def test_an_ablation_trains_once_per_setup_scores_validation_and_resumes(tmp_path):
    import ray

    variants = write_variants(tmp_path / "v.yaml",
                              "baseline: {}\nshort: {generate.max_new_tokens: 2}\nr4: {lora.r: 4, lora.alpha: 8}\n"
                              "nolayer: {lora.target_modules: [no_such_proj]}\n")
    work, out = tmp_path / "work", tmp_path / "abl.json"
    # two trainings at a time (Ray tasks on one cluster); nolayer's training fails, the others go on
    args = ["--variants", str(variants), "--work", str(work), "--out", str(out), "--validation", "0.2",
            "--concurrent", "2", f"run_dir={tmp_path / 'unused'}", *TINY]
    try:
        assert ablate.main(args) == 1
        result = json.loads(out.read_text())
        run, r4 = work / "baseline-seed42", work / "r4-seed42"  # short reuses baseline's adapter
        assert sorted(p.name for p in work.iterdir() if (p / "train" / "adapter").is_dir()) == [run.name, r4.name]
        assert (r4 / "data").resolve() == (run / "data").resolve()  # r4 trained on baseline's shards
        assert not (r4 / "stages" / "prepare.json").exists()
        stamps = {p: p.stat().st_mtime_ns for p in [run / "stages" / "train.json", r4 / "stages" / "train.json",
                                                   *work.glob("eval/*/predictions.jsonl")]}
        assert len(stamps) == 5
        assert ablate.main(args) == 1  # everything up to date: nothing trains or generates again
        assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    finally:
        ray.shutdown()
    base, short, r4row, nolayer = result["rows"]
    assert "no_such_proj match no module" in nolayer["error"] and "RayTaskError" not in nolayer["error"]
    assert r4row["run_dir"] == str(r4) and r4row["vs_reference"]["reference"] == "baseline"
    for r in (base, short):
        summary = json.loads((Path(r["eval_dir"]) / "summary.json").read_text())
        assert (r["ex"], r["n"], summary["split"]) == (summary["ex"], 6, "validation")
        assert r["run_dir"] == str(run) and r["skipped_steps"] == 0 and r["best_step"] == 2
    assert base["vs_reference"] == {"reference": "baseline", "ex_delta": 0.0, "fixed": 0, "broken": 0, "mcnemar_p": 1.0}
    meta = json.loads((work / "eval" / "short-seed42" / "predictions.meta.json").read_text())
    assert meta["max_new_tokens"] == 2 and meta["adapter"] == str(run / "train" / "adapter")
    assert "adapters_in_pass" not in meta  # its own decoding settings: a pass of its own
    for name in ("baseline", "r4"):  # same prompts and decoding: both adapters in one pass
        assert json.loads((work / "eval" / f"{name}-seed42" / "predictions.meta.json").read_text())["adapters_in_pass"] == 2
    assert [s["variant"] for s in result["summary"]] == ["baseline", "short", "r4", "nolayer"]
    assert "| short | `generate.max_new_tokens=2` | 42 | 6 |" in out.with_suffix(".md").read_text()


def test_the_committed_ablation_of_the_0_5b_recipe_loads(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    variants = ablate.read_variants(repo / "benchmarks" / "ablations" / "qwen2.5-coder-0.5b.yaml")
    todo = ablate.plan(str(repo / "configs" / "qwen2.5-coder-0.5b-spider.yaml"), variants, [42, 2], 0.1, [],
                       tmp_path)
    assert list(variants)[0] == "baseline" and len(todo) == 2 * len(variants)
    shared = [v.name for v in todo if v.name != "baseline" and v.run_dir.name.startswith("baseline-")]
    assert shared == ["vote8", "vote8"]  # only the generation-only variant reuses the reference's adapter
    # runs are prepared in order of first use: the reference's run (whose shards lr, r32, ... share)
    # comes first although vote8, the last variant, uses it too
    runs = ablate.first_of_each_run(todo)
    assert [v.run_dir for v in runs] == list(dict.fromkeys(v.run_dir for v in todo))
    order = {v.run_dir: i for i, v in enumerate(runs)}
    assert runs[0].name == "baseline" and all(order[v.data_from] < order[v.run_dir] for v in runs if v.data_from)


def test_a_failing_variant_is_recorded_and_the_ablation_goes_on(tmp_path, capsys):
    variants = write_variants(tmp_path / "v.yaml", f"""
baseline: {{data.spider_dir: {tmp_path / 'nowhere'}}}
other: {{data.spider_dir: {tmp_path / 'elsewhere'}}}
""")
    out = tmp_path / "abl.json"
    code = ablate.main(["--variants", str(variants), "--work", str(tmp_path / "work"), "--out", str(out), *TINY])
    assert code == 1  # every variant was tried; the exit status says some failed
    result = json.loads(out.read_text())
    assert [(r["variant"], "nowhere" in r["error"], "elsewhere" in r["error"]) for r in result["rows"]] == \
        [("baseline", True, False), ("other", False, True)]
    assert result["summary"][1] == {"variant": "other", "seeds": [], "mean_ex": None, "delta_vs_reference": None}
    assert "| other | " in out.with_suffix(".md").read_text() and "failed: " in capsys.readouterr().err
