"""Ablations on the validation split: which recipe setting earns its place as a default.

Each variant is a set of config overrides on one base config. Every variant (x every --seeds seed)
trains on train minus the validation databases (data.validation.fraction, whole databases held
out, as Spider's dev is), and its adapter generates and is scored by execution on `validation`:
Spider dev is never looked at, so the defaults chosen here do not overfit the number the README
reports.

Variants file (YAML; the first variant is the reference every other one is compared with):
    baseline: {}
    budget512: {linking.token_budget: 512}
    r32: {lora.r: 32, lora.alpha: 64}
    vote8: {generate.selection: execution_vote, generate.num_candidates: 8, generate.temperature: 0.7}

What is shared follows the stage registry (sqltrain.stages): variants whose overrides leave
the sections the `train` stage depends on alone (vote8 above) reuse the reference's adapter, and
variants that leave `prepare`'s sections alone (lr, r32) train on the same prepared shards (a
link to the first run's data/, as Tune's trials do). A run directory per distinct training setup,
--work/<name of the first variant that needs it>-seed<seed>, runs `prepare` (once per distinct
prepare setup) and `train` through the pipeline; finished stages are skipped, so a cut-short
ablation resumes where it stopped. Once everything is trained, the variants generate together:
one pass per distinct prompt and decoding setup, each pass's replicas loading the model once and
serving every adapter of it (sqltrain.generate.pipeline.generate_for_adapters). Each variant's
predictions and evaluation go to --work/eval/<variant>-seed<seed>/.

Output (--out JSON, plus the same path with .md): per variant and seed the validation EX and
exact match, EX by hardness, the best validation loss and its step, skipped steps, training and
generation seconds (of the shared pass a variant generated in), and the paired comparison
with the reference of the same seed (fixed, broken, McNemar p); per variant the mean EX over
seeds. Both files are rewritten after every variant is scored. Every variant's config is loaded before anything runs, so a typo fails at once; a variant
that fails while running (a diverged training, say) is recorded with its error and the others go
on (exit status 1 at the end).

GPU (the Qwen GGUF from ../shared/models/get-model.sh qwen-coder-0.5b models/); two trainings
share the GPU (--concurrent 2 with half a GPU each: the 0.5B step is launch-bound, and two Tune
trials trained side by side in ~5 min on one H100, 2026-12-08):
  python benchmarks/ablate.py --config configs/qwen2.5-coder-0.5b-spider.yaml \\
      --variants benchmarks/ablations/qwen2.5-coder-0.5b.yaml --work runs/ablate-q05 --seeds 42,2 \\
      --concurrent 2 --out docs/ablations/qwen2.5-coder-0.5b.json \\
      train.gpus_per_worker=0.5 train.cpus_per_worker=6
CPU (what tests/test_ablate.py runs, on the mini benchmark):
  python benchmarks/ablate.py --config C --variants V --work W --out O model.name=random:tiny ...
Trailing key=value arguments override every variant's config (before the variant's own).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqltrain.config import Config, ConfigError, load_config  # noqa: E402
from sqltrain.stages import stage_key  # noqa: E402


@dataclass
class Variant:
    name: str
    seed: int
    overrides: dict
    cfg: Config
    run_dir: Path
    data_from: Path | None = None
    """The run whose prepared shards this one trains on (None: it prepares its own)."""


def read_variants(path: Path) -> dict[str, dict]:
    """The variants file: a mapping of name -> {config key: value}, the reference first."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the variants file: {e}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: expected a mapping of variant name -> overrides (the reference first)")
    for name, ov in data.items():
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{path}: variant name {name!r}: use letters, digits, '-' and '_'")
        if ov is not None and not isinstance(ov, dict):
            raise ConfigError(f"{path}: variant {name!r}: expected a mapping of config key -> value")
    return {name: ov or {} for name, ov in data.items()}


def plan(config: str | None, variants: dict[str, dict], seeds: list[int], fraction: float,
         common: list[str], work: Path) -> list[Variant]:
    """Every (variant, seed) with its loaded config and the run directory it trains in; raises
    ConfigError naming the variant before anything runs."""
    forced = [f"data.validation.fraction={fraction}", "data.eval_split=validation"]
    out, trained, prepared = [], {}, {}
    for seed in seeds:
        for name, ov in variants.items():
            own = [f"{k}={json.dumps(v)}" for k, v in ov.items()]
            try:
                cfg = load_config(config, [*common, f"train.seed={seed}", *own, *forced])
            except ConfigError as e:
                raise ConfigError(f"variant {name!r}: {e}") from None
            run_dir = trained.setdefault(stage_key(cfg, "train"), (work / f"{name}-seed{seed}").absolute())
            data_from = prepared.setdefault(stage_key(cfg, "prepare"), run_dir)
            out.append(Variant(name, seed, ov, cfg.model_copy(update={"run_dir": str(run_dir)}), run_dir,
                               data_from if data_from != run_dir else None))
    return out


def train_all(todo: list[Variant], concurrent: int = 1) -> dict[int, Exception]:
    """Prepare, then train, every distinct setup once (variants sharing a run directory share its
    adapter); `concurrent` trainings at a time (Ray tasks on the one cluster, so with
    train.gpus_per_worker=0.5 two share each GPU). Returns the failures by position in todo: a
    failed prepare or training fails every variant that needs it."""
    from sqltrain.pipeline import run_pipeline
    from sqltrain.prep.pipeline import share_prepared_data

    setups = first_of_each_run(todo)
    failures: dict[Path, Exception] = {}
    for v in setups:  # a run that shares shards comes after the run that prepares them
        try:
            if v.data_from is None:
                run_pipeline(v.cfg, only=["prepare"])  # skips what is up to date
            else:
                share_prepared_data(v.data_from, v.run_dir)
        except Exception as e:  # noqa: BLE001 - recorded for the variants that need these shards
            failures[v.run_dir] = e
    ready = [v for v in setups if v.run_dir not in failures]
    if concurrent == 1:
        for v in ready:
            print(f"[ablate] train {v.run_dir.name} (for {v.name} seed {v.seed})", flush=True)
            try:
                run_pipeline(v.cfg, only=["train"])
            except Exception as e:  # noqa: BLE001 - recorded for the variants that need this adapter
                failures[v.run_dir] = e
    else:
        failures.update(train_concurrently(ready, concurrent))
    for run_dir, e in failures.items():
        print(f"[ablate] {run_dir.name} failed: {e}", file=sys.stderr, flush=True)
    return {i: failures[v.run_dir] for i, v in enumerate(todo) if v.run_dir in failures}


def first_of_each_run(todo: list[Variant]) -> list[Variant]:
    """The first variant of each run directory, in todo order: the order plan() chose the runs in,
    so a run's data_from (an earlier run) is prepared before it is shared."""
    first: dict[Path, Variant] = {}
    for v in todo:
        first.setdefault(v.run_dir, v)
    return list(first.values())


def train_concurrently(setups: list[Variant], concurrent: int) -> dict[Path, Exception]:
    """The train stage of each setup as a Ray task, `concurrent` in flight; their Ray Train
    workers take the resources their configs ask for from the same cluster."""
    import ray

    from sqltrain.pipeline import run_pipeline
    from sqltrain.raycluster import ensure_ray

    if not setups:
        return {}
    ensure_ray(setups[0].cfg.cluster.address, setups[0].cfg.cluster.runtime_env)
    # the task only drives (its Ray Train workers hold the CPUs and GPUs); a failed training is not retried
    task = ray.remote(num_cpus=0, max_retries=0)(run_pipeline)
    queue, running, failures = list(setups), {}, {}
    while queue or running:
        while queue and len(running) < concurrent:
            v = queue.pop(0)
            print(f"[ablate] train {v.run_dir.name} (for {v.name} seed {v.seed})", flush=True)
            running[task.remote(v.cfg, ["train"])] = v
        done, _ = ray.wait(list(running), num_returns=1)
        v = running.pop(done[0])
        try:
            ray.get(done[0])
        except Exception as e:  # noqa: BLE001 - recorded for the variants that need this adapter
            failures[v.run_dir] = getattr(e, "cause", None) or e  # the training's own error, not Ray's wrapper
    return failures


def outputs(v: Variant, work: Path) -> tuple[Path, Path]:
    """(predictions, evaluation dir) of a variant x seed."""
    out = work / "eval" / f"{v.name}-seed{v.seed}"
    return out / "predictions.jsonl", out / "eval"


def generate_all(todo: list[Variant], work: Path, errors: dict[int, Exception]) -> None:
    """Every trained variant not generated yet, in as few passes as there are distinct prompt and
    decoding setups (one engine start each instead of one per variant); a failure is recorded
    in `errors` (by position in todo) for its variant only."""
    from sqltrain.generate.pipeline import generate_for_adapters

    pending = [i for i, v in enumerate(todo)
               if i not in errors and not outputs(v, work)[0].with_suffix(".meta.json").exists()]
    jobs = [(todo[i].cfg, str(todo[i].run_dir / "train" / "adapter"), outputs(todo[i], work)[0]) for i in pending]
    for i, error in zip(pending, generate_for_adapters(jobs, "validation")):
        if error is not None:
            errors[i] = error


def score(v: Variant, work: Path) -> dict:
    from sqltrain.evaluate.records import EvalSummary
    from sqltrain.evaluate.runner import run_evaluate

    preds, eval_dir = outputs(v, work)
    if not (eval_dir / "summary.json").exists():
        run_evaluate(v.cfg, preds, eval_dir, split="validation", progress=False)
    return row(v, EvalSummary.read(eval_dir / "summary.json"), eval_dir)


def row(v: Variant, summary, eval_dir: Path) -> dict:
    """One variant x seed: its scores and what its training and generation cost."""
    train = json.loads((v.run_dir / "train" / "summary.json").read_text())
    stage = v.run_dir / "stages" / "train.json"
    meta = json.loads((eval_dir.parent / "predictions.meta.json").read_text())
    return {
        "variant": v.name, "seed": v.seed, "overrides": v.overrides, "run_dir": str(v.run_dir),
        "eval_dir": str(eval_dir), "n": summary.n, "ex": summary.ex, "exact_match": summary.exact_match,
        "ex_by_hardness": {h: s.ex for h, s in summary.by_hardness.items()},
        "best_validation_loss": train["exported"]["dev_loss"], "best_step": train["exported"]["step"],
        "skipped_steps": train["skipped_steps"],
        "train_seconds": json.loads(stage.read_text())["seconds"] if stage.exists() else None,
        "generate_seconds": meta["seconds"],
    }


def failed(v: Variant, error: BaseException) -> dict:
    """A variant whose preparing, training (e.g. a diverged run), generation or scoring raised:
    recorded with the error's first line, and the ablation goes on with the next one."""
    first = (str(error).strip().splitlines() or [""])[0]
    return {"variant": v.name, "seed": v.seed, "overrides": v.overrides, "run_dir": str(v.run_dir),
            "error": f"{type(error).__name__}: {first}"}


def versus(reference: dict, r: dict) -> dict | None:
    """Row r paired with the reference (the first variant) of its seed; None when either failed."""
    from sqltrain.report.paired import compare

    if "error" in r or "error" in reference:
        return None
    c = compare(reference["eval_dir"], r["eval_dir"], labels=(reference["variant"], r["variant"]))
    return {"reference": reference["variant"], "ex_delta": c["overall"]["ex_delta"],
            "fixed": c["fixed"], "broken": c["broken"], "mcnemar_p": c["mcnemar_p"]}


def summarize(rows: list[dict]) -> list[dict]:
    """Per variant, in file order: mean validation EX over its seeds and the change from the reference."""
    names = list(dict.fromkeys(r["variant"] for r in rows))
    scored = {n: [r for r in rows if r["variant"] == n and "error" not in r] for n in names}
    mean = {n: statistics.fmean(r["ex"] for r in rs) if rs else None for n, rs in scored.items()}
    ref = mean[names[0]]
    return [{"variant": n, "seeds": [r["seed"] for r in scored[n]], "mean_ex": mean[n],
             "delta_vs_reference": mean[n] - ref if mean[n] is not None and ref is not None else None}
            for n in names]


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _signed(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:+.1f}"


def markdown(result: dict) -> str:
    lines = [f"# Ablations on the validation split ({result['config']})", "",
             "| variant | overrides | seed | n | EX | Δ EX vs ref | fixed / broken (p) | EM | best val loss (step) | skipped | train s | generate s |",
             "|---|---|---:|---:|---:|---:|---|---:|---|---:|---:|---:|"]
    for r in result["rows"]:
        ov = ", ".join(f"`{k}={v}`" for k, v in r["overrides"].items()) or "—"
        if "error" in r:
            lines.append(f"| {r['variant']} | {ov} | {r['seed']} | failed: {r['error'].replace('|', '/')} |||||||||")
            continue
        c = r["vs_reference"]
        paired = f"{_signed(c['ex_delta'])} | {c['fixed']} / {c['broken']} ({c['mcnemar_p']:.2g})" if c else "— | —"
        train_s = f"{r['train_seconds']:.0f}" if r["train_seconds"] is not None else "—"
        lines.append(f"| {r['variant']} | {ov} | {r['seed']} | {r['n']} | {100 * r['ex']:.1f} | "
                     f"{paired} | "
                     f"{_pct(r['exact_match'])} | {r['best_validation_loss']:.4f} ({r['best_step']}) | "
                     f"{r['skipped_steps']} | {train_s} | {r['generate_seconds']:.0f} |")
    lines += ["", "| variant | seeds | mean EX | Δ vs reference |", "|---|---|---:|---:|"]
    lines += [f"| {s['variant']} | {', '.join(map(str, s['seeds'])) or '—'} | {_pct(s['mean_ex'])} | "
              f"{_signed(s['delta_vs_reference'])} |" for s in result["summary"]]
    return "\n".join(lines) + "\n"


def write(out: Path, result: dict) -> None:
    from sqltrain.io import atomic_write_json, atomic_write_text

    atomic_write_json(out, result)
    atomic_write_text(out.with_suffix(".md"), markdown(result))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="base config (YAML); defaults when absent")
    ap.add_argument("--variants", required=True, type=Path, help="YAML: variant name -> overrides")
    ap.add_argument("--work", required=True, type=Path, help="run directories and evaluations")
    ap.add_argument("--out", required=True, type=Path, help="JSON results (and .md beside it)")
    ap.add_argument("--seeds", default="42", help="comma-separated train.seed values (default 42)")
    ap.add_argument("--validation", type=float, default=0.1,
                    help="data.validation.fraction: share of train's databases held out (default 0.1)")
    ap.add_argument("--concurrent", type=int, default=1,
                    help="trainings at a time (default 1); with train.gpus_per_worker=0.5, two share a GPU")
    ap.add_argument("overrides", nargs="*", help="key=value for every variant")
    args = ap.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        todo = plan(args.config, read_variants(args.variants), seeds, args.validation, args.overrides, args.work)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = {"config": args.config or "<defaults>", "validation_fraction": args.validation,
              "common_overrides": args.overrides, "rows": [], "summary": []}
    errors = train_all(todo, args.concurrent)
    generate_all(todo, args.work, errors)
    for i, v in enumerate(todo):
        try:
            if i in errors:
                raise errors[i]
            result["rows"].append(score(v, args.work))
        except Exception as e:  # one variant's failure (a diverged run, say) must not lose the others
            print(f"[ablate] {v.name} seed {v.seed} failed: {e}", file=sys.stderr, flush=True)
            result["rows"].append(failed(v, e))
        row = result["rows"][-1]
        row["vs_reference"] = versus(next(r for r in result["rows"] if r["seed"] == v.seed), row)
        result["summary"] = summarize(result["rows"])
        write(args.out, result)
    print(markdown(result))
    return 1 if any("error" in r for r in result["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
