"""`run_generate`: a split's questions -> predictions.jsonl, on Ray Data actors.

1. The config: with an adapter, the model, quantization, linking and prompt sections come from
   the adapter dir (`sqltrain_config.yaml`, `prompt.json` written by training), so generation
   links schemas and renders prompts exactly as training did; data, generate and cluster stay
   the caller's (which benchmark, how to decode, where to run).
2. Prompts: `RecordBuilder.generation_prompt` (sqltrain.prep.records), the code path of the training records.
3. Rows sorted by prompt length (longest first), so each hf batch holds prompts of similar
   length and little padding; a long batch first also surfaces out-of-memory at once. The
   vllm engine gets one batch per replica instead, rows dealt round-robin (`batch_layout`).
4. Ray Data `map_batches(GenerationReplica)` with an actor pool: one replica per GPU (replicas
   share the GPUs when generate.num_replicas is larger; one per tensor_parallel_size GPUs),
   CPU actors when there is no GPU. Each replica picks its engine (generate/replica.py).
5. With generate.selection=execution_vote, each question's candidates are executed in the
   sandbox and vote on their results (sqltrain.generate.vote); the winner becomes its sql/raw.
With several adapters (`run_generate_adapters`: Tune trials, ablation variants), those trained
with the same model and prompt setup share one pass: the rows are built once and repeated per
adapter with an `adapter_slot` column, each replica loads the model once with every adapter
(vLLM LoRA requests per prompt; PEFT adapters switched per slot on hf), and each adapter's rows
go to its own predictions file.

6. predictions.jsonl (index, id, db_id, sql, raw; `candidates` with num_candidates > 1,
   `selected` after a vote) in split order, written atomically, plus a `<name>.meta.json`
   beside it (model, adapter, engine, load and generation timing, tokens/s, selection and the
   vote's seconds and executions).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqltrain.config import Config, ConfigError, PromptConfig, config_from_dict
from sqltrain.io import OutputError, atomic_write_json, atomic_write_jsonl
from sqltrain.generate.candidates import SLOT
from sqltrain.generate.vote import number_or_none as _number
from sqltrain.train.checkpoints import CONFIG_FILE, PROMPT_FILE, check_adapter_trusted

ADAPTER_SECTIONS = ("model", "quantization", "linking", "lora")
"""Config sections that describe how the adapter was trained; generation must match them (the
prompt section too, read from the adapter's prompt.json)."""


@dataclass(frozen=True)
class GenerateResult:
    predictions: Path
    """predictions.jsonl: index, id, db_id, sql, raw (and candidates) per example, in split order."""
    meta: Path
    """<name>.meta.json beside it: model, adapter, engine, timing, tokens/s."""
    n: int


def generation_config(cfg: Config, adapter: str | os.PathLike | None) -> Config:
    """cfg, with the adapter's training sections (and its prompt.json) when there is an adapter."""
    if adapter is None:
        return cfg
    import yaml

    adir = Path(adapter)
    for name in ("adapter_config.json", CONFIG_FILE, PROMPT_FILE):
        if not (adir / name).exists():
            raise ConfigError(f"adapter dir {adir}: missing {name} (expected a `sqltrain train` adapter)")
    check_adapter_trusted(adir)
    try:
        trained = yaml.safe_load((adir / CONFIG_FILE).read_text()) or {}
        prompt = json.loads((adir / PROMPT_FILE).read_text())
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise ConfigError(f"adapter dir {adir}: unreadable config or prompt: {e}") from None
    merged = cfg.to_dict()
    sections = config_from_dict({s: trained.get(s, {}) for s in ADAPTER_SECTIONS}).to_dict()
    merged.update({s: sections[s] for s in ADAPTER_SECTIONS})
    merged["model"]["cache_dir"] = cfg.model.cache_dir  # a local path, not a property of the adapter
    try:
        merged["prompt"] = PromptConfig.model_validate(prompt).model_dump(mode="json")
    except ValueError as e:
        raise ConfigError(f"{adir / PROMPT_FILE}: invalid prompt: {e}") from None
    return config_from_dict(merged)


def default_output(cfg: Config, adapter: str | None, split: str) -> Path:
    """{run_dir}/predictions/{base|finetuned}.jsonl ({tag}-{split}.jsonl off the eval split)."""
    tag = "base" if adapter is None else "finetuned"
    name = tag if split == cfg.data.eval_split else f"{tag}-{split}"
    return Path(cfg.run_dir) / "predictions" / f"{name}.jsonl"


def build_prompt_rows(cfg: Config, split: str) -> list[dict[str, Any]]:
    """One row per example to generate for: ids, prompt text and its token count."""
    from sqltrain.data import resolve_benchmark
    from sqltrain.model.loading import load_tokenizer
    from sqltrain.prep.records import RecordBuilder

    bench = resolve_benchmark(cfg.data)
    examples = bench.examples(split, exclude=cfg.data.exclude)
    limits = [n for n in (cfg.data.limit, cfg.generate.limit) if n is not None]
    examples = examples[: min(limits)] if limits else examples
    builder = RecordBuilder(cfg, bench, load_tokenizer(cfg.model))
    rows = []
    for ex in examples:
        text, info = builder.generation_prompt(ex)
        rows.append({"index": ex.index, "id": ex.id, "db_id": ex.db_id, "prompt": text,
                     "prompt_tokens": info["prompt_tokens"]})
    rows.sort(key=lambda r: -r["prompt_tokens"])
    return rows


TP_NEEDS_VLLM = ("generate.tensor_parallel_size > 1 needs the vllm engine on GPUs (hf runs one device per "
                 "replica): set generate.engine=vllm and generate.use_gpu=true, or tensor_parallel_size=1")


def check_engine(cfg: Config) -> None:
    """Fail before Ray starts on an engine choice that cannot work (one-line ConfigError)."""
    from sqltrain.generate.replica import resolve_engine, vllm_installed

    if cfg.generate.engine == "vllm":
        resolve_engine("vllm", has_cuda=True, vllm_available=vllm_installed())  # raises when not installed
    if cfg.generate.engine == "hf" and cfg.generate.tensor_parallel_size > 1:
        raise ConfigError(TP_NEEDS_VLLM)


def planned_engine(cfg: Config, cluster: dict[str, float]) -> str:
    """The engine the replicas will pick (they decide; the driver lays out batches for it)."""
    from sqltrain.generate.replica import resolve_engine, vllm_installed

    has_gpu = cfg.generate.use_gpu and cluster.get("GPU", 0) >= 1
    engine = resolve_engine(cfg.generate.engine, has_cuda=has_gpu, vllm_available=vllm_installed())
    if engine == "hf" and cfg.generate.tensor_parallel_size > 1:
        raise ConfigError(TP_NEEDS_VLLM)
    return engine


def actor_resources(cfg: Config, cluster: dict[str, float], log=print) -> tuple[int, dict[str, float]]:
    """(replicas, Ray resources per replica) for a cluster's resources (ray.cluster_resources()).

    With GPUs: one replica per GPU, or generate.num_replicas spread evenly over them when that
    is more (replicas sharing a GPU overlap one's Python time with another's kernels); with
    generate.tensor_parallel_size = k > 1, one replica per k GPUs.
    Without: generate.num_replicas CPU actors splitting the CPUs."""
    gpus = math.floor(cluster.get("GPU", 0))
    tp = cfg.generate.tensor_parallel_size
    if cfg.generate.use_gpu and tp > 1:
        if gpus < tp:
            raise ConfigError(f"generate.tensor_parallel_size={tp} but the cluster has {gpus} GPU(s)")
        return gpus // tp, {"num_gpus": tp, "num_cpus": 1}
    if cfg.generate.use_gpu and gpus >= 1:
        per_gpu = math.ceil(cfg.generate.num_replicas / gpus)  # whole shares, so every replica fits
        return per_gpu * gpus, {"num_gpus": 1 / per_gpu, "num_cpus": 1}
    if cfg.generate.use_gpu:
        log("[sqltrain] generate: generate.use_gpu is set but the cluster has no GPU; generating on CPU")
    replicas = cfg.generate.num_replicas
    return replicas, {"num_cpus": max(1, int(cluster.get("CPU", 1)) // replicas)}


def batch_layout(engine: str, rows: list[dict[str, Any]], replicas: int,
                 batch_size: int) -> tuple[list[dict[str, Any]], int]:
    """(rows in dispatch order, rows per batch). hf: length-sorted batches of batch_size (little
    padding). vllm: one batch per replica (it schedules sequences itself; every extra call
    adds a tail where few sequences run), rows dealt round-robin so the batches are alike."""
    if engine != "vllm":
        return rows, batch_size
    dealt = [rows[i] for k in range(replicas) for i in range(k, len(rows), replicas)]
    return dealt, max(1, math.ceil(len(rows) / replicas))


CUDAGRAPHS_FROM_ANSWERS = 500
"""generate.vllm_compile=auto captures CUDA graphs from this many answers per replica. Measured
on Spider dev (1026 greedy answers, Qwen2.5-Coder-0.5B, one H100, 2026-12-07): with the 14 graphs
of vllm_engine.CUDAGRAPH_SIZES (1-2 s of capture on a warm host), answers/s after load went 70 ->
220 with the adapter and 189 -> 409 for the base model, and the stage 71 -> 57 s and 90 -> 61 s,
with the same EX (docs/benchmarks.md). Below a few hundred answers the capture is not won back."""


def resolve_vllm_compile(cfg: Config, prompts: int, replicas: int = 1) -> Config:
    """cfg with generate.vllm_compile=auto made concrete for a job of `prompts` questions spread
    over `replicas` (see GenerateConfig.vllm_compile)."""
    gen = cfg.generate
    if gen.vllm_compile != "auto":
        return cfg
    graphs = prompts * gen.num_candidates / replicas >= CUDAGRAPHS_FROM_ANSWERS
    return cfg.model_copy(update={"generate": gen.model_copy(update={"vllm_compile": "cudagraphs" if graphs else "eager"})})


def generate_rows(cfg: Config, adapter: str | list[str] | None, rows: list[dict[str, Any]], log=print) -> list[dict[str, Any]]:
    """Run the actor pool over the (length-sorted) rows; returns prediction rows (any order)."""
    import ray
    from tqdm import tqdm

    from sqltrain.generate.replica import GenerationReplica
    from sqltrain.raycluster import ensure_ray

    check_engine(cfg)
    ensure_ray(cfg.cluster.address, cfg.cluster.runtime_env)
    cluster = ray.cluster_resources()
    replicas, resources = actor_resources(cfg, cluster, log)
    engine = planned_engine(cfg, cluster)
    if engine == "vllm":
        cfg = resolve_vllm_compile(cfg, len(rows), replicas)
    rows, bs = batch_layout(engine, rows, replicas, cfg.generate.batch_size)
    mode = f", {cfg.generate.vllm_compile}" if engine == "vllm" else ""
    log(f"[sqltrain] generate: {len(rows)} prompts, {replicas} replica(s) ({engine}{mode}), each with {resources}")
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # one bar below, counting predictions, instead of Ray's per-operator bars
    # vllm: hand out batches only once every replica has loaded, one at a time, so that
    # replicas start together and each takes its share (hf keeps Ray Data's defaults).
    ctx.wait_for_min_actors_s = 3600 if engine == "vllm" else ray.data.context.DEFAULT_WAIT_FOR_MIN_ACTORS_S
    pool = ray.data.ActorPoolStrategy(size=replicas, max_tasks_in_flight_per_actor=1 if engine == "vllm" else None)
    ds = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / bs)))
    ds = ds.map_batches(
        GenerationReplica, batch_size=bs, compute=pool, **resources,
        fn_constructor_kwargs={"cfg_dict": cfg.to_dict(), "adapter": adapter,
                               "gpu_share": min(1.0, resources.get("num_gpus", 1.0))},
    )
    out: list[dict[str, Any]] = []
    with tqdm(total=len(rows), desc="generate", unit="q", mininterval=1.0) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
            out += batch.to_dict("records")
            bar.update(len(batch))
    return out


def _prediction(row: dict[str, Any]) -> dict[str, Any]:
    pred = {"index": int(row["index"]), "id": str(row["id"]), "db_id": str(row["db_id"]),
            "sql": str(row["sql"]), "raw": str(row["raw"])}
    if row.get("candidates") is not None:  # generate.num_candidates > 1
        pred["candidates"] = [{"sql": str(c["sql"]), "raw": str(c["raw"]), "logprob": _number(c["logprob"])}
                              for c in row["candidates"]]
    if row.get("selected") is not None:  # generate.selection=execution_vote: the candidate chosen
        pred["selected"] = int(row["selected"])
    return pred


def timing(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Engine and timing fields of the meta file, from the replicas' per-batch columns."""
    engines = sorted({str(r["engine"]) for r in results})
    span = max(float(r["batch_end"]) for r in results) - min(float(r["batch_start"]) for r in results)
    new_tokens = sum(int(r["new_tokens"]) for r in results)
    compile_modes = sorted({str(r["vllm_compile"]) for r in results if r.get("vllm_compile")})
    return {
        "engine": engines[0] if len(engines) == 1 else engines,
        **({"vllm_compile": compile_modes[0]} if len(compile_modes) == 1 else {}),
        "load_seconds": round(max(float(r["load_seconds"]) for r in results), 2),
        "generate_seconds": round(span, 2),  # first batch start to last batch end, load excluded
        "tokens_per_s": round(new_tokens / max(span, 1e-9), 1),
        "predictions_per_s_after_load": round(len(results) / max(span, 1e-9), 3),
    }


def select_candidates(cfg: Config, results: list[dict[str, Any]], log=print) -> dict[str, Any] | None:
    """generate.selection=execution_vote: each row's sql/raw become its voted candidate's
    (sqltrain.generate.vote); returns the meta file's `vote` entry (None for greedy)."""
    if cfg.generate.selection != "execution_vote" or not results:
        return None
    from sqltrain.data import resolve_benchmark
    from sqltrain.generate.vote import apply_execution_vote

    bench = resolve_benchmark(cfg.data)
    summary = apply_execution_vote(results, bench.db_path, cfg.evaluate)
    log(f"[sqltrain] generate: execution vote over {cfg.generate.num_candidates} candidates per question in "
        f"{summary['seconds']:.1f}s ({summary['executions']} executions; {summary['changed']} of {len(results)} "
        f"predictions not the first candidate; {summary['no_survivor']} with no candidate that runs)")
    return {"n": cfg.generate.num_candidates, **summary}


def check_prediction_target(out: Path) -> None:
    """Refuse, before any work, to overwrite a file that is not an earlier predictions file of
    sqltrain's (those have their .meta.json beside them)."""
    if out.is_dir():
        raise OutputError(f"predictions path {out} is a directory; give a file path")
    if out.exists() and not out.with_suffix(".meta.json").is_file():
        raise OutputError(f"predictions path {out} exists and was not written by sqltrain (no "
                          f"{out.with_suffix('.meta.json').name} beside it); move it away or choose another path")


def run_generate(cfg: Config, adapter: str | None = None, split: str | None = None, out: Path | None = None,
                 log=print) -> GenerateResult:
    """Generate SQL for every example of `split` (default: data.eval_split) with the base model
    or base + `adapter`; write predictions.jsonl to `out` (default: see default_output)."""
    split = split or cfg.data.eval_split
    if adapter is not None:
        return run_generate_adapters(cfg, [adapter], split, None if out is None else [out], log)[0]
    out = Path(out) if out is not None else default_output(cfg, None, split)
    check_prediction_target(out)
    return generate_pass(cfg, [], split, [out], log)[0]


def run_generate_adapters(cfg: Config, adapters: list[str], split: str | None = None,
                          outs: list[Path] | None = None, log=print) -> list[GenerateResult]:
    """Generate for `split` with each adapter, writing outs[i] for adapters[i] (Tune trials,
    ablation variants). Adapters trained with the same model and prompt setup share one pass:
    each replica loads the model once and serves them all (rows tagged with their adapter),
    instead of one engine start per adapter (~80 s each for vLLM on an H100, 2026-12-08).
    `outs` may be left out for a single adapter (default_output)."""
    split = split or cfg.data.eval_split
    adapters = [str(Path(a).absolute()) for a in adapters]
    if outs is None and len(adapters) != 1:
        raise ValueError("run_generate_adapters: give one output path per adapter")
    outs = [Path(o) for o in outs] if outs is not None else [default_output(cfg, adapters[0], split)]
    if len(outs) != len(adapters) or len(set(outs)) != len(outs):
        raise ValueError(f"run_generate_adapters: {len(adapters)} adapters need as many distinct output paths")
    for out in outs:
        check_prediction_target(out)
    gcfgs = [generation_config(cfg, a) for a in adapters]
    for a, g in zip(adapters, gcfgs):
        if g.model.name != cfg.model.name:
            log(f"[sqltrain] generate: the adapter {a} was trained on {g.model.name!r}; using it "
                f"(config says {cfg.model.name!r})")
    results: list[GenerateResult | None] = [None] * len(adapters)
    for group in pass_groups(gcfgs):
        done = generate_pass(gcfgs[group[0]], [adapters[i] for i in group], split, [outs[i] for i in group], log)
        for i, r in zip(group, done):
            results[i] = r
    return results  # type: ignore[return-value]


CALLER_SECTIONS = ("data", "generate", "evaluate", "cluster")
"""The caller's part of a generation config (which questions, how to decode and vote, where)."""


def generate_for_adapters(jobs: list[tuple[Config, str, Path]], split: str, log=print) -> list[Exception | None]:
    """(caller config, adapter, output) jobs in as few passes as possible: jobs whose configs agree
    on CALLER_SECTIONS go to one run_generate_adapters (which splits them by prompt setup); when a
    shared call fails, its jobs run one at a time, so a bad adapter costs only its own output.
    Returns each job's exception, or None when its predictions were written."""
    errors: list[Exception | None] = [None] * len(jobs)
    for group in groups_agreeing_on([cfg for cfg, _, _ in jobs], CALLER_SECTIONS):
        cfg = jobs[group[0]][0]
        try:
            run_generate_adapters(cfg, [jobs[i][1] for i in group], split, [jobs[i][2] for i in group], log)
            continue
        except Exception as e:  # noqa: BLE001 - retried one adapter at a time below
            if len(group) == 1:
                errors[group[0]] = e
                continue
            log(f"[sqltrain] generate: {len(group)} adapters in one pass failed ({e}); one at a time")
        for i in group:
            try:
                run_generate(jobs[i][0], adapter=jobs[i][1], split=split, out=jobs[i][2], log=log)
            except Exception as e:  # noqa: BLE001 - this job's output is lost, not the others'
                errors[i] = e
    return errors


PROMPT_SECTIONS = ("model", "quantization", "linking", "prompt")
"""What decides a generation prompt and the base weights: adapters that agree on these share a pass."""


def pass_groups(gcfgs: list[Config]) -> list[list[int]]:
    """Indices of the generation configs that can share one pass (same PROMPT_SECTIONS), in order."""
    return groups_agreeing_on(gcfgs, PROMPT_SECTIONS)


def groups_agreeing_on(cfgs: list[Config], sections: tuple[str, ...]) -> list[list[int]]:
    """Indices of the configs grouped by their values of `sections`, groups and members in order."""
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        d = cfg.to_dict()
        groups.setdefault(json.dumps({k: d[k] for k in sections}, sort_keys=True), []).append(i)
    return list(groups.values())


def generate_pass(gcfg: Config, adapters: list[str], split: str, outs: list[Path], log=print) -> list[GenerateResult]:
    """One Ray Data pass: the base model (no adapters; one output) or base + each adapter (one
    output per adapter, rows tagged with their adapter's slot when there are several)."""
    check_engine(gcfg)
    start = time.perf_counter()
    rows = build_prompt_rows(gcfg, split)
    prompt_s = time.perf_counter() - start
    many = len(adapters) > 1
    tagged = [{**r, SLOT: i} for i in range(len(adapters)) for r in rows] if many else rows
    engine_adapter = adapters if many else (adapters[0] if adapters else None)
    results = generate_rows(gcfg, engine_adapter, tagged, log) if tagged else []
    seconds = time.perf_counter() - start
    if len(results) != len(tagged):
        raise RuntimeError(f"generation returned {len(results)} predictions for {len(tagged)} prompts")
    shared = {"seconds": round(seconds, 2), "prompt_seconds": round(prompt_s, 2),
              "predictions_per_s": round(len(results) / max(seconds - prompt_s, 1e-9), 3),
              **(timing(results) if results else {})}
    if many:
        shared["adapters_in_pass"] = len(adapters)  # seconds and rates above are the whole pass's
    done = []
    for slot, out in enumerate(outs):
        mine = sorted((r for r in results if not many or int(r[SLOT]) == slot), key=lambda r: int(r["index"]))
        adapter = adapters[slot] if adapters else None
        done.append(write_predictions(gcfg, split, out, adapter, mine, shared, log))
    if many:
        log(f"[sqltrain] generate: {len(adapters)} adapters in one pass, {len(results)} predictions in {seconds:.0f}s")
    return done


def write_predictions(gcfg: Config, split: str, out: Path, adapter: str | None, results: list[dict[str, Any]],
                      shared: dict[str, Any], log=print) -> GenerateResult:
    """predictions.jsonl (after the execution vote, when configured) and its .meta.json."""
    selection = select_candidates(gcfg, results, log)
    atomic_write_jsonl(out, [_prediction(r) for r in results])
    gen = gcfg.generate
    atomic_write_json(out.with_suffix(".meta.json"), {
        "split": split, "n": len(results), "model": gcfg.model.name, "adapter": adapter,
        "quantization": gcfg.quantization.method, "batch_size": gen.batch_size,
        "max_new_tokens": gen.max_new_tokens, "num_replicas": gen.num_replicas,
        "num_candidates": gen.num_candidates, "temperature": gen.temperature, "top_p": gen.top_p, "seed": gen.seed,
        "selection": gen.selection, "vote": selection,
        "new_tokens": sum(int(r["new_tokens"]) for r in results),
        "prompt_tokens": sum(int(r["prompt_tokens"]) for r in results),
        **shared,
    })
    log(f"[sqltrain] generate: {len(results)} predictions in {shared['seconds']:.0f}s -> {out}")
    return GenerateResult(out, out.with_suffix(".meta.json"), len(results))
