"""The vllm engine's logic on CPU, without vllm: engine selection, what vLLM is asked for
(LLM and SamplingParams arguments, LoRA rank, prompt token ids), the stop rule it shares with
the hf engine, and output parsing into candidates. The real engine runs on a GPU host only
(README: generate; docs/benchmarks.md)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from sqltrain.config import ConfigError, load_config

TINY = [
    "model.name=random:tiny", "model.gradient_checkpointing=false", "quantization.method=none",
    "linking.format=compact", "linking.token_budget=256", "prompt.max_seq_len=384",
    "generate.max_new_tokens=12", "generate.batch_size=4",
]


@pytest.fixture(scope="module")
def tok():
    """The tokenizer the tests' tiny model uses (SmolLM2's)."""
    from sqltrain.model.loading import load_tokenizer

    return load_tokenizer(load_config(None, TINY).model)


# --- engine selection -------------------------------------------------------------------


def test_resolve_engine() -> None:
    from sqltrain.generate.replica import resolve_engine

    assert resolve_engine("auto", has_cuda=False, vllm_available=True) == "hf"
    assert resolve_engine("auto", has_cuda=True, vllm_available=False) == "hf"
    assert resolve_engine("auto", has_cuda=True, vllm_available=True) == "vllm"
    assert resolve_engine("hf", has_cuda=True, vllm_available=True) == "hf"
    assert resolve_engine("vllm", has_cuda=True, vllm_available=True) == "vllm"
    with pytest.raises(ConfigError, match="vllm is not installed"):
        resolve_engine("vllm", has_cuda=True, vllm_available=False)
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        resolve_engine("vllm", has_cuda=False, vllm_available=True)


def test_cpu_replica_runs_the_hf_engine() -> None:
    """auto on this machine (no CUDA GPU; vllm is not a test dependency) builds the hf engine."""
    from sqltrain.generate.replica import GenerationReplica

    replica = GenerationReplica(load_config(None, TINY).to_dict())
    assert replica.engine.engine == "hf" and replica.load_seconds > 0


def test_vllm_requested_but_missing_fails_before_ray(tmp_path, capsys) -> None:
    import ray

    from sqltrain.cli import main
    from sqltrain.generate.pipeline import run_generate
    from sqltrain.generate.replica import vllm_installed

    if vllm_installed():
        pytest.skip("vllm is installed here")
    cfg = load_config(None, [f"run_dir={tmp_path}", *TINY, "generate.engine=vllm"])
    with pytest.raises(ConfigError, match="vllm is not installed"):
        run_generate(cfg, split="dev")
    assert not ray.is_initialized()
    assert main(["generate", "--config", str(_yaml(tmp_path)), "generate.engine=vllm"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'sqltrain[vllm]'" in err


def _yaml(tmp_path):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(load_config(None, [f"run_dir={tmp_path}", *TINY]).to_dict()))
    return path


def test_config_validation() -> None:
    ok = load_config(None, ["generate.temperature=0.8", "generate.num_candidates=4", "generate.top_p=0.95"])
    assert ok.generate.num_candidates == 4
    for bad, msg in [
        ("generate.num_candidates=3", "needs sampling: set generate.temperature > 0"),
        ("generate.num_candidates=0", "must be >= 1"),
        ("generate.top_p=0", r"must be in \(0, 1\]"),
        ("generate.top_p=1.5", r"must be in \(0, 1\]"),
        ("generate.temperature=-0.1", "must be >= 0"),
        ("generate.gpu_memory_utilization=0", r"must be in \(0, 1\]"),
        ("generate.engine=tgi", "Input should be 'auto', 'hf' or 'vllm'"),
        ("generate.vllm_compile=yes", "Input should be 'auto', 'eager', 'cudagraphs' or 'full'"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            load_config(None, [bad])


def test_tensor_parallel_resources_and_checks() -> None:
    from sqltrain.generate.pipeline import actor_resources, check_engine

    tp = lambda k: load_config(None, ["generate.use_gpu=true", f"generate.tensor_parallel_size={k}"])  # noqa: E731
    assert actor_resources(tp(2), {"CPU": 64, "GPU": 8}) == (4, {"num_gpus": 2, "num_cpus": 1})
    assert actor_resources(tp(3), {"CPU": 64, "GPU": 8}) == (2, {"num_gpus": 3, "num_cpus": 1})
    with pytest.raises(ConfigError, match="tensor_parallel_size=4 but the cluster has 2 GPU"):
        actor_resources(tp(4), {"CPU": 16, "GPU": 2})
    with pytest.raises(ConfigError, match="tensor_parallel_size > 1 needs the vllm engine"):
        check_engine(load_config(None, ["generate.engine=hf", "generate.tensor_parallel_size=2"]))


def test_batch_layout() -> None:
    from sqltrain.generate.pipeline import batch_layout

    rows = [{"index": i} for i in range(10)]
    assert batch_layout("hf", rows, 3, 4) == (rows, 4)
    dealt, bs = batch_layout("vllm", rows, 3, 4)
    assert [r["index"] for r in dealt] == [0, 3, 6, 9, 1, 4, 7, 2, 5, 8] and bs == 4
    assert batch_layout("vllm", rows, 1, 4)[1] == 10  # one call per replica


# --- what vLLM is asked for ---------------------------------------------------------------


def test_lora_rank_from_adapter_config(tmp_path) -> None:
    from sqltrain.generate.vllm_engine import adapter_rank, vllm_lora_rank

    assert [vllm_lora_rank(r) for r in (1, 4, 8, 16, 17, 64, 300, 512)] == [1, 8, 8, 16, 32, 64, 320, 512]
    with pytest.raises(ConfigError, match="above vLLM's largest"):
        vllm_lora_rank(513)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 16, "rank_pattern": {"q_proj": 48}}))
    assert adapter_rank(tmp_path) == 48
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="adapter_config.json: cannot read the LoRA rank"):
        adapter_rank(tmp_path)


def test_llm_kwargs() -> None:
    from sqltrain.generate.vllm_engine import STOP_PROCESSOR, llm_kwargs

    gen = load_config(None, []).generate
    kw = llm_kwargs(gen, "/m", "/t", None, 1.0)
    assert kw == {
        "model": "/m", "tokenizer": "/t", "dtype": "bfloat16", "seed": 0, "tensor_parallel_size": 1,
        "distributed_executor_backend": "uni", "gpu_memory_utilization": 0.8, "generation_config": "vllm",
        "logits_processors": [STOP_PROCESSOR], "enforce_eager": True,
    }
    shared = llm_kwargs(gen, "/m", "/t", 4, 0.5)  # two replicas on one GPU, an r=4 adapter
    assert shared["gpu_memory_utilization"] == 0.4
    assert (shared["enable_lora"], shared["max_lora_rank"], shared["max_loras"]) == (True, 8, 1)
    # several adapters in one replica (Tune trials scored in one pass): as many LoRA slots, up to a cap
    assert llm_kwargs(gen, "/m", "/t", 32, 1.0, adapters=3)["max_loras"] == 3
    assert llm_kwargs(gen, "/m", "/t", 32, 1.0, adapters=20)["max_loras"] == 8
    tp = load_config(None, ["generate.tensor_parallel_size=2", "generate.vllm_compile=full"]).generate
    kw = llm_kwargs(tp, "/m", "/t", None, 2.0)
    assert kw["distributed_executor_backend"] == "mp" and kw["gpu_memory_utilization"] == 0.8
    assert "enforce_eager" not in kw and "compilation_config" not in kw
    graphs = load_config(None, ["generate.vllm_compile=cudagraphs"]).generate
    assert llm_kwargs(graphs, "/m", "/t", None, 1.0)["compilation_config"] == {
        "mode": "NONE", "cudagraph_mode": "FULL_DECODE_ONLY", "cudagraph_specialize_lora": False,
        "cudagraph_capture_sizes": [1, 2, 4, 8, 16, 32, 64, 128, 192, 256, 320, 384, 448, 512]}


def test_auto_compile_captures_cuda_graphs_only_for_long_jobs() -> None:
    from sqltrain.generate.pipeline import resolve_vllm_compile, timing

    cfg = load_config(None, [])
    assert cfg.generate.vllm_compile == "auto"

    def pick(c, prompts, replicas=1):
        return resolve_vllm_compile(c, prompts, replicas).generate.vllm_compile

    assert pick(cfg, 1026) == "cudagraphs"  # the README's Spider runs: one greedy answer per question
    assert pick(cfg, 499) == "eager" and pick(cfg, 500) == "cudagraphs"
    assert pick(cfg, 1026, replicas=4) == "eager"  # each replica decodes only ~257
    eight = load_config(None, ["generate.num_candidates=8", "generate.temperature=0.7"])
    assert pick(eight, 1026) == "cudagraphs" and pick(eight, 1026, replicas=32) == "eager"
    fixed = load_config(None, ["generate.vllm_compile=full"])
    assert pick(fixed, 10**6) == "full" and pick(fixed, 1) == "full"
    # The mode the replicas ran goes into the meta file (hf rows carry none).
    row = {"engine": "vllm", "batch_start": 0.0, "batch_end": 2.0, "new_tokens": 3, "load_seconds": 1.0}
    assert timing([row | {"vllm_compile": "cudagraphs"}])["vllm_compile"] == "cudagraphs"
    assert "vllm_compile" not in timing([row | {"engine": "hf"}])


def test_sampling_kwargs() -> None:
    from sqltrain.generate.vllm_engine import STOP_KEY, sampling_kwargs

    greedy = sampling_kwargs(load_config(None, ["generate.top_p=0.5"]).generate, {2, 7}, 2)
    assert greedy == {"n": 1, "max_tokens": 256, "stop_token_ids": [2, 7], "skip_special_tokens": True,
                      "extra_args": {STOP_KEY: 2}, "temperature": 0.0, "top_p": 1.0}
    gen = load_config(None, ["generate.temperature=0.7", "generate.top_p=0.9", "generate.num_candidates=5",
                             "generate.seed=3", "generate.max_new_tokens=64"]).generate
    kw = sampling_kwargs(gen, {2}, 2)
    assert (kw["n"], kw["temperature"], kw["top_p"], kw["seed"], kw["logprobs"], kw["max_tokens"]) == (
        5, 0.7, 0.9, 3, 0, 64)


def test_vllm_environment() -> None:
    from sqltrain.generate.vllm_engine import vllm_environment

    env = vllm_environment(flashinfer_installed=False)
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0" and env["VLLM_USE_FLASHINFER_SAMPLER"] == "0"
    assert "VLLM_USE_FLASHINFER_SAMPLER" not in vllm_environment(flashinfer_installed=True)


def test_prompts_go_in_as_the_hf_engines_token_ids(tok) -> None:
    from sqltrain.generate.pipeline import build_prompt_rows
    from sqltrain.generate.vllm_engine import prompt_inputs

    cfg = load_config(None, [*TINY, "generate.limit=3"])
    prompts = [r["prompt"] for r in build_prompt_rows(cfg, "dev")]
    inputs = prompt_inputs(tok, prompts)
    hf = tok(prompts, add_special_tokens=False)["input_ids"]
    assert [i["prompt_token_ids"] for i in inputs] == [list(x) for x in hf]
    assert all(tok.decode(i["prompt_token_ids"]) == p for i, p in zip(inputs, prompts))  # nothing added


def test_stop_ids_match_the_hf_engine() -> None:
    from sqltrain.generate.engine import SQLGenerator
    from sqltrain.generate.vllm_engine import model_stop_ids
    from sqltrain.model.loading import resolve_model_source

    cfg = load_config(None, TINY)
    hf = SQLGenerator(cfg.to_dict())
    assert model_stop_ids(resolve_model_source(cfg.model).path, hf.tokenizer) == hf.eos_ids


def test_stop_processor_is_importable_by_name() -> None:
    """vLLM loads the processor by this name; the module needs vllm, so only its source is read."""
    import importlib.util
    from pathlib import Path

    from sqltrain.generate.vllm_engine import STOP_PROCESSOR

    module, cls = STOP_PROCESSOR.split(":")
    spec = importlib.util.find_spec(module)
    assert spec is not None and f"class {cls}(LogitsProcessor)" in Path(spec.origin).read_text()


# --- the stop rule: vllm's tracker stops where hf's stopping criteria stop ------------------

# (raw continuation a model could write, the SQL both engines must extract from what they keep)
RAW_OUTPUTS = [
    ("SELECT name FROM singer;\nThis query lists the singers.", "SELECT name FROM singer"),
    ("```sql\nSELECT count(*) FROM concert\n```\nIt counts the concerts.", "SELECT count(*) FROM concert"),
    ("SELECT name FROM t WHERE note = 'a;b' AND x > 1;\nSELECT 2;", "SELECT name FROM t WHERE note = 'a;b' AND x > 1"),
    ("Here is the query:\n\nSELECT a FROM t\n\nExplanation: it selects a.", "SELECT a FROM t"),
    ("SELECT a\nFROM t\nWHERE b = 1\n\nThe query filters on b.", "SELECT a\nFROM t\nWHERE b = 1"),
    ("SQL: SELECT T1.name FROM a AS T1 JOIN b AS T2 ON T1.id = T2.id;",
     "SELECT T1.name FROM a AS T1 JOIN b AS T2 ON T1.id = T2.id"),
    ("SELECT avg(age) FROM people -- average; over all\n;", "SELECT avg(age) FROM people -- average; over all"),
    ("CREATE TABLE x (a int);\nSELECT a FROM x;", "CREATE TABLE x (a int)"),  # a schema echo ends at its ';'
    ("```\nSELECT 1\n```", "SELECT 1"),
    ("SELECT title FROM film WHERE title LIKE '%;%' ORDER BY title",
     "SELECT title FROM film WHERE title LIKE '%;%' ORDER BY title"),
]


def _hf_stop(tok, ids: list[int]) -> int:
    """Tokens the hf engine keeps: its stopping criteria asked after every new token."""
    import torch

    from sqltrain.generate.engine import make_stopping_criteria

    stop = make_stopping_criteria(tok, 0)
    for t in range(1, len(ids) + 1):
        if bool(stop(torch.tensor([ids[:t]]), None)[0]):
            return t
    return len(ids)


def _tracker_stop(tok, ids: list[int]) -> int:
    """Tokens the vllm engine keeps: the tracker sees the output list grow, as in vLLM."""
    return _tracker_finish(tok, ids) or len(ids)


def _tracker_finish(tok, ids: list[int]) -> int | None:
    """After how many tokens the tracker forces end-of-sequence (None: never)."""
    from sqltrain.generate.stopping import SQLStopTracker

    tracker, out = SQLStopTracker(tok), []
    tracker.update(added=[(0, out, tok.eos_token_id)])
    for t, token in enumerate(ids, start=1):
        out.append(token)
        if tracker.finished():
            assert tracker.finished() == [(0, tok.eos_token_id)]
            return t
    return None


@pytest.mark.parametrize("raw,sql", RAW_OUTPUTS)
def test_vllm_and_hf_stop_at_the_same_token(tok, raw, sql) -> None:
    from sqltrain.generate.extract import extract_sql

    ids = tok(raw, add_special_tokens=False)["input_ids"]
    kept = _tracker_stop(tok, ids)
    assert kept == _hf_stop(tok, ids)
    text = tok.decode(ids[:kept], skip_special_tokens=True)
    assert extract_sql(text) == sql


@pytest.mark.parametrize("raw,sql", RAW_OUTPUTS)
def test_truncating_after_decoding_keeps_what_the_tracker_keeps(tok, raw, sql) -> None:
    """generate.vllm_stop=truncate: the output decoded on (here: the rest of the raw text and an
    EOS) is cut to exactly the tokens the logits processor would have let through."""
    from sqltrain.generate.extract import extract_sql
    from sqltrain.generate.vllm_engine import completion_of

    ids = tok(raw, add_special_tokens=False)["input_ids"]
    kept = _tracker_finish(tok, ids)
    decoded = [*ids, tok.eos_token_id]
    lps = [-0.1 * (i + 1) for i in range(len(decoded))]
    out = SimpleNamespace(text=raw, token_ids=decoded, logprobs=[{t: SimpleNamespace(logprob=v)} for t, v in zip(decoded, lps)])
    text, cut_ids, cut_lps = completion_of(out, cut_with=tok)
    if kept is not None:  # the processor would have forced EOS after token `kept`: cut there
        assert (cut_ids, cut_lps) == (ids[:kept], lps[:kept])
        assert text == tok.decode(ids[:kept], skip_special_tokens=True)
    else:  # the rule never fires: the output is kept whole, as vLLM gave it
        assert (text, cut_ids, cut_lps) == (raw, decoded, lps)
    assert extract_sql(text) == sql


def test_truncate_mode_asks_vllm_for_no_processor() -> None:
    from sqltrain.generate.vllm_engine import llm_kwargs, sampling_kwargs

    gen = load_config(None, ["generate.vllm_stop=truncate"]).generate
    assert "logits_processors" not in llm_kwargs(gen, "/m", "/t", 8, 1.0)
    assert "extra_args" not in sampling_kwargs(gen, {2}, 2)


def test_no_stop_string_could_do_this() -> None:
    """Why a stop rule and not vLLM stop strings: each candidate string cuts some answer early."""
    from sqltrain.generate.extract import extract_sql

    cut = {";": RAW_OUTPUTS[2][0], "```": RAW_OUTPUTS[1][0], "\n\n": RAW_OUTPUTS[3][0]}
    for stop, raw in cut.items():
        assert extract_sql(raw.split(stop, 1)[0]) != extract_sql(raw), stop


def test_tracker_batch_bookkeeping(tok) -> None:
    from sqltrain.generate.stopping import SQLStopTracker

    done_ids = tok("SELECT a FROM t;", add_special_tokens=False)["input_ids"]
    open_ids = tok("SELECT a FROM t WHERE b", add_special_tokens=False)["input_ids"]
    tracker = SQLStopTracker(tok)
    a, b = list(done_ids), list(open_ids)
    tracker.update(added=[(0, a, 7), (1, b, 8), (2, None, None)])  # row 2: not one of ours
    assert tracker.finished() == [(0, 7)]
    tracker.update(moved=[(0, 1, True)])  # swap rows 0 and 1
    assert tracker.finished() == [(1, 7)]
    tracker.update(removed=[1], moved=[(0, 3, False)])  # finished request leaves, the other moves
    assert tracker.finished() == [] and set(tracker.rows) == {3}
    b += tok(";", add_special_tokens=False)["input_ids"]
    assert tracker.finished() == [(3, 8)]
    b.append(-1)  # async scheduling: a placeholder until the sampled id arrives
    assert tracker.finished() == []


# --- outputs ----------------------------------------------------------------------------------


def test_completion_parsing_and_candidates() -> None:
    from sqltrain.generate.candidates import answer_logprob, candidates, prediction_columns
    from sqltrain.generate.vllm_engine import completion_of

    lp = lambda v: SimpleNamespace(logprob=v)  # noqa: E731
    out = SimpleNamespace(text="SELECT 1;", token_ids=(5, 6, 2),
                          logprobs=[{5: lp(-0.5)}, {6: lp(-0.25)}, {2: lp(-9.0)}])
    assert completion_of(out) == ("SELECT 1;", [5, 6, 2], [-0.5, -0.25, -9.0])
    assert completion_of(SimpleNamespace(text="x", token_ids=[5], logprobs=None)) == ("x", [5], None)
    assert answer_logprob([5, 6, 2], [-0.5, -0.25, -9.0], {2}) == -0.75  # a forced EOS says nothing
    cands = candidates([("SELECT 1;", [5, 6, 2], [-0.5, -0.25, -9.0]), ("```sql\nSELECT 2\n```", [7], [-1.0])], {2})
    assert cands == [{"sql": "SELECT 1", "raw": "SELECT 1;", "logprob": -0.75},
                     {"sql": "SELECT 2", "raw": "```sql\nSELECT 2\n```", "logprob": -1.0}]
    batch = {"index": [4], "id": ["d4"], "db_id": ["x"], "prompt_tokens": [10]}
    cols = prediction_columns(batch, [cands], [4])
    assert (cols["sql"], cols["raw"], cols["new_tokens"]) == (["SELECT 1"], ["SELECT 1;"], [4])
    assert cols["candidates"] == [cands]
    assert "candidates" not in prediction_columns(batch, [cands[:1]], [3])


def test_planned_engine_on_a_cpu_cluster() -> None:
    from sqltrain.generate.pipeline import planned_engine

    assert planned_engine(load_config(None, []), {"CPU": 2}) == "hf"
    assert planned_engine(load_config(None, ["generate.use_gpu=true"]), {"CPU": 2}) == "hf"
    with pytest.raises(ConfigError, match="tensor_parallel_size > 1 needs the vllm engine"):
        planned_engine(load_config(None, ["generate.tensor_parallel_size=2"]), {"CPU": 2})


# --- the real engine (GPU hosts with vllm only; skipped elsewhere) ----------------------------


@pytest.mark.slow
def test_vllm_engine_on_a_gpu(tmp_path) -> None:
    """The vllm engine end to end: LoRA served from a `sqltrain train`-style adapter dir, the
    prediction contract, and the stop rule (each answer ends exactly at its first complete
    point, as on hf). Model: $SQLTRAIN_VLLM_TEST_MODEL (e.g. the Qwen GGUF; a random model
    rarely writes a complete answer, so the stop check is stronger with a real one)."""
    import os

    import torch

    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from sqltrain.generate.extract import sql_complete
    from sqltrain.generate.pipeline import build_prompt_rows
    from sqltrain.generate.stopping import ending_token_ids
    from sqltrain.generate.vllm_engine import VLLMGenerator
    from sqltrain.model.loading import attach_lora, load_base_model
    from sqltrain.train.checkpoints import write_adapter_metadata

    model = os.environ.get("SQLTRAIN_VLLM_TEST_MODEL", "random:smollm2-135m")
    over = [f"run_dir={tmp_path}", *TINY, f"model.name={model}", "generate.max_new_tokens=64",
            "generate.limit=16", "generate.engine=vllm", "generate.gpu_memory_utilization=0.3", "lora.r=8"]
    cfg = load_config(None, over)
    lora = attach_lora(load_base_model(cfg), cfg)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    lora.save_pretrained(tmp_path / "adapter")
    write_adapter_metadata(cfg, tmp_path / "adapter")
    del lora
    rows = build_prompt_rows(cfg, "dev")
    batch = {k: [r[k] for r in rows] for k in rows[0]}
    gen = VLLMGenerator(cfg.to_dict(), adapter=str(tmp_path / "adapter"))
    tuned, _ = gen.completions(batch["prompt"])
    gen.lora = None
    base, _ = gen.completions(batch["prompt"])
    assert [c[0][0] for c in tuned] != [c[0][0] for c in base]  # the adapter is applied
    ending = ending_token_ids(gen.tokenizer)
    for (text, ids, _), in tuned + base:
        answer = [t for t in ids if t not in gen.stop_ids]
        decode = lambda k: gen.tokenizer.decode(answer[:k], skip_special_tokens=True)  # noqa: B023, E731
        complete = [k for k in range(1, len(answer) + 1) if answer[k - 1] in ending and sql_complete(decode(k))]
        if complete:  # stopped at the first token that completes the answer, not later
            assert len(answer) == complete[0], text
    out = gen(batch)
    assert list(out["index"]) == batch["index"] and len(out["sql"]) == len(rows)
    # generate.vllm_stop=truncate: no logits processor, the same rule after decoding, the same text.
    del gen
    import gc

    gc.collect()
    torch.cuda.empty_cache()
    cut = load_config(None, [*over, "generate.vllm_stop=truncate"])
    gen = VLLMGenerator(cut.to_dict(), adapter=str(tmp_path / "adapter"))
    assert [c[0][0] for c in gen.completions(batch["prompt"])[0]] == [c[0][0] for c in tuned]


def test_each_adapter_slot_is_its_own_lora_request() -> None:
    """vLLM's LoRA ids count from 1 (0 = no adapter) and each slot has its own name; a batch's
    rows pick theirs by the adapter_slot column, absent meaning slot 0."""
    from sqltrain.generate.candidates import SLOT, row_slots
    from sqltrain.generate.vllm_engine import lora_requests

    assert lora_requests(["/a", "/b"]) == [("sqltrain-adapter-0", 1, "/a"), ("sqltrain-adapter-1", 2, "/b")]
    assert lora_requests([]) == []
    assert row_slots({"prompt": ["p", "q"]}, ["/a"]) == [0, 0]
    assert row_slots({"prompt": ["p", "q"], SLOT: [1, 0]}, ["/a", "/b"]) == [1, 0]
    with pytest.raises(ValueError, match="adapter slot 1 out of range: the replica holds 1 adapter"):
        row_slots({"prompt": ["p"], SLOT: [1]}, ["/a"])
