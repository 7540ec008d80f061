"""Generation on the mini benchmark with a tiny random-init model on CPU.

In-process tests drive `SQLGenerator` directly (left padding, stopping, adapters); the
`slow` test runs the Ray Data actor pool end to end and scores its output with `evaluate`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sqltrain.config import ConfigError, load_config
from sqltrain.io import read_jsonl

TINY = [
    "model.name=random:tiny", "model.gradient_checkpointing=false", "quantization.method=none",
    "linking.format=compact", "linking.token_budget=256", "prompt.max_seq_len=384",
    "generate.max_new_tokens=12", "generate.batch_size=4",
]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return load_config(None, [f"run_dir={tmp_path_factory.mktemp('gen') / 'run'}", *TINY])


@pytest.fixture(scope="module")
def rows(cfg):
    from sqltrain.generate.pipeline import build_prompt_rows

    return build_prompt_rows(cfg.model_copy(update={"generate": cfg.generate.model_copy(update={"limit": 6})}), "dev")


@pytest.fixture(scope="module")
def generator(cfg):
    """The tiny model with larger random weights: at its init scale the logits are nearly
    uniform and greedy decoding just repeats the last prompt token, whatever the prompt."""
    import torch

    from sqltrain.generate.engine import SQLGenerator

    gen = SQLGenerator(cfg.to_dict())
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in gen.model.named_parameters():
            if "embed" not in name and "norm" not in name:
                p.normal_(std=0.2)
    return gen


ADAPTER_SYSTEM = ("prompt.system=You translate questions about a database into one SQLite query. "
                  "Write only the query, nothing else, no explanation.")


def make_adapter(cfg, dest: Path, seed: int, overrides: list[str]) -> Path:
    """A real PEFT adapter on the tiny model with non-zero LoRA weights (seeded) and its metadata."""
    import torch

    from sqltrain.model.loading import attach_lora, load_base_model
    from sqltrain.train.checkpoints import write_adapter_metadata

    acfg = load_config(None, [f"run_dir={cfg.run_dir}", *TINY, *overrides])
    model = attach_lora(load_base_model(acfg), acfg)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # PEFT initializes B to zero: the adapter would be a no-op
                p.normal_(std=0.5)
    model.save_pretrained(dest)
    write_adapter_metadata(acfg, dest)
    return dest


@pytest.fixture(scope="module")
def adapter_dir(cfg, tmp_path_factory) -> Path:
    """A real PEFT adapter on the tiny model with non-zero LoRA weights and its own prompt."""
    return make_adapter(cfg, tmp_path_factory.mktemp("adapter") / "adapter", 0, ["lora.r=4", ADAPTER_SYSTEM])


@pytest.fixture(scope="module")
def second_adapter(cfg, tmp_path_factory) -> Path:
    """Another adapter with the same prompt setup (so it can share a pass), other weights and rank."""
    return make_adapter(cfg, tmp_path_factory.mktemp("adapter2") / "adapter", 1, ["lora.r=8", ADAPTER_SYSTEM])


def test_prompt_rows_are_length_sorted_and_from_the_split(rows, cfg) -> None:
    from sqltrain.data import resolve_benchmark

    dev = resolve_benchmark(cfg.data).examples("dev")[:6]
    assert sorted(r["index"] for r in rows) == [e.index for e in dev]
    assert [r["prompt_tokens"] for r in rows] == sorted((r["prompt_tokens"] for r in rows), reverse=True)
    assert all("-- Question:" in r["prompt"] and r["prompt"].endswith("assistant\n") for r in rows)


def test_batched_left_padded_decoding_equals_one_by_one(generator, rows) -> None:
    prompts = [r["prompt"] for r in rows]
    assert len({r["prompt_tokens"] for r in rows}) > 1  # padding really happens
    batched, counts = generator.generate(prompts)
    single = [generator.generate([p])[0][0] for p in prompts]
    assert batched == single
    assert len(set(batched)) == len(batched)  # prompt-dependent outputs, so the comparison means something
    assert all(0 < c <= 12 for c in counts)
    generator.tokenizer.padding_side = "right"  # the mistake this guards against changes the outputs
    try:
        assert generator.generate(prompts)[0] != single
    finally:
        generator.tokenizer.padding_side = "left"


def test_call_returns_prediction_columns(generator, rows) -> None:
    batch = {k: [r[k] for r in rows[:3]] for k in rows[0]}
    out = generator(batch)
    assert list(out["index"]) == batch["index"] and list(out["db_id"]) == batch["db_id"]
    assert len(out["sql"]) == len(out["raw"]) == 3 and all(isinstance(s, str) for s in out["sql"])


def test_stopping_criteria_per_row(generator) -> None:
    from sqltrain.generate.engine import make_stopping_criteria

    tok = generator.tokenizer
    prompt = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    import torch

    texts = ["SELECT name FROM singer;", "```sql\n", "SELECT a FROM t\n```", "Here is the query:\n"]
    ids = [prompt + tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(map(len, ids))
    batch = torch.tensor([[tok.pad_token_id] * (width - len(x)) + x for x in ids])
    # the criterion sees the left-padded batch; new tokens start after the prompt
    stop = make_stopping_criteria(tok, 0)
    assert stop(batch, None).tolist() == [True, False, True, False]


def test_adapter_config_and_prompt_come_from_the_adapter(cfg, adapter_dir, tmp_path) -> None:
    from sqltrain.generate.pipeline import generation_config

    other = load_config(None, [*TINY, "lora.r=64", "prompt.system=Something else.", "generate.batch_size=2"])
    gcfg = generation_config(other, adapter_dir)
    assert gcfg.prompt.system.startswith("You translate questions")
    assert gcfg.lora.r == 4 and gcfg.generate.batch_size == 2  # trained sections vs caller's sections
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="missing sqltrain_config.yaml"):
        generation_config(other, tmp_path)


def test_adapter_changes_the_model(cfg, adapter_dir, rows) -> None:
    from sqltrain.generate.engine import SQLGenerator
    from sqltrain.generate.pipeline import generation_config

    base = SQLGenerator(cfg.to_dict())
    tuned = SQLGenerator(generation_config(cfg, adapter_dir).to_dict(), adapter=str(adapter_dir))
    prompts = [r["prompt"] for r in rows[:2]]
    assert tuned.generate(prompts)[0] != base.generate(prompts)[0]


def test_sampled_candidates(generator, rows) -> None:
    """num_candidates > 1 on the hf engine: seeded sampling, first candidate = sql/raw."""
    from sqltrain.config import config_from_dict
    from sqltrain.generate.engine import hf_generation_config

    cfg = config_from_dict({**generator.cfg.to_dict(), "generate": {
        **generator.cfg.generate.model_dump(), "temperature": 1.5, "num_candidates": 3}})
    greedy = (generator.cfg, generator.generation_config)
    generator.cfg = cfg
    generator.generation_config = hf_generation_config(cfg, sorted(generator.eos_ids), generator.tokenizer.pad_token_id)
    try:
        batch = {k: [r[k] for r in rows[:2]] for k in rows[0]}
        out, again = generator(batch), generator(batch)
    finally:
        generator.cfg, generator.generation_config = greedy
    assert out["candidates"] == again["candidates"]  # seeded
    for cands, sql, raw in zip(out["candidates"], out["sql"], out["raw"]):
        assert len(cands) == 3 and (cands[0]["sql"], cands[0]["raw"]) == (sql, raw)
        assert all(c["logprob"] <= 0 for c in cands) and len({c["raw"] for c in cands}) > 1
    assert "candidates" not in generator(batch)  # greedy again: the columns of today


def test_token_logprobs_match_generate_scores(generator, rows) -> None:
    """The teacher-forced scoring of left-padded outputs equals the logits seen while decoding."""
    import torch
    from transformers import GenerationConfig

    tok = generator.tokenizer
    enc = tok([r["prompt"] for r in rows[:3]], return_tensors="pt", padding=True, add_special_tokens=False)
    assert (enc["attention_mask"] == 0).any()  # left padding really happens
    gc = GenerationConfig(do_sample=False, max_new_tokens=6, pad_token_id=tok.pad_token_id, eos_token_id=None,
                          output_logits=True, return_dict_in_generate=True)
    with torch.inference_mode():
        res = generator.model.generate(**enc, generation_config=gc)
    prompt_len = enc["input_ids"].shape[1]
    new = res.sequences[:, prompt_len:]
    expected = torch.stack(res.logits, dim=1).float().log_softmax(-1).gather(-1, new[..., None]).squeeze(-1)
    got = torch.tensor(generator.token_logprobs(enc, res.sequences, prompt_len))
    assert torch.allclose(got, expected, atol=1e-4)


def test_actor_resources() -> None:
    from sqltrain.generate.pipeline import actor_resources

    gpu = lambda n: load_config(None, ["generate.use_gpu=true", f"generate.num_replicas={n}"])  # noqa: E731
    assert actor_resources(gpu(1), {"CPU": 64, "GPU": 8}) == (8, {"num_gpus": 1.0, "num_cpus": 1})
    assert actor_resources(gpu(3), {"CPU": 16, "GPU": 2}) == (4, {"num_gpus": 0.5, "num_cpus": 1})
    notes: list[str] = []
    assert actor_resources(gpu(2), {"CPU": 8}, notes.append) == (2, {"num_cpus": 4})
    assert "no GPU" in notes[0]
    assert actor_resources(load_config(None, []), {"CPU": 2, "GPU": 1}) == (1, {"num_cpus": 2})


def test_cli_adapter_and_split_shorthands() -> None:
    import argparse

    from sqltrain.generate.command import split_overrides

    args = argparse.Namespace(adapter=None, split=None, overrides=["adapter=/a", "split=train", "generate.limit=3"])
    assert split_overrides(args) == (["generate.limit=3"], "/a", "train")
    args = argparse.Namespace(adapter="/flag", split=None, overrides=["adapter=/a"])
    assert split_overrides(args) == ([], "/flag", None)


@pytest.mark.slow
def test_run_generate_on_ray_then_evaluate(cfg, adapter_dir) -> None:
    import ray

    from sqltrain.evaluate.predictions import read_predictions
    from sqltrain.evaluate.runner import run_evaluate
    from sqltrain.generate.pipeline import build_prompt_rows, generation_config, run_generate

    small = load_config(None, [f"run_dir={cfg.run_dir}", *TINY, "generate.limit=6"])
    sampled = load_config(None, [f"run_dir={cfg.run_dir}", *TINY, "generate.limit=3", "generate.temperature=1.0",
                                 "generate.num_candidates=2"])
    try:
        base = run_generate(small, adapter=None, split="dev").predictions
        tuned = run_generate(small, adapter=str(adapter_dir), split="dev").predictions
        cands = run_generate(sampled, split="dev", out=Path(cfg.run_dir) / "predictions" / "sampled.jsonl").predictions
    finally:
        ray.shutdown()
    assert base == Path(small.run_dir) / "predictions" / "base.jsonl"
    assert tuned == Path(small.run_dir) / "predictions" / "finetuned.jsonl"
    lines = read_jsonl(base)
    assert [r["index"] for r in lines] == list(range(6))  # split order, whatever order batches finished
    assert {"index", "id", "db_id", "sql", "raw"} <= set(lines[0])
    assert [p.index for p in read_predictions(base)] == list(range(6))
    meta_base = json.loads(base.with_suffix(".meta.json").read_text())
    meta_tuned = json.loads(tuned.with_suffix(".meta.json").read_text())
    assert meta_base["n"] == 6 and meta_tuned["adapter"] == str(adapter_dir)
    assert meta_base["engine"] == "hf" and meta_base["load_seconds"] > 0 and meta_base["tokens_per_s"] > 0
    assert 0 < meta_base["generate_seconds"] < meta_base["seconds"]
    assert "candidates" not in lines[0]
    sampled_rows = read_jsonl(cands)
    assert [len(r["candidates"]) for r in sampled_rows] == [2, 2, 2]
    assert all(r["sql"] == r["candidates"][0]["sql"] and r["candidates"][0]["logprob"] <= 0 for r in sampled_rows)
    # the fine-tuned prompts are the adapter's (its own system message), not the caller's
    adapter_rows = build_prompt_rows(generation_config(small, adapter_dir), "dev")
    assert meta_tuned["prompt_tokens"] == sum(r["prompt_tokens"] for r in adapter_rows) != meta_base["prompt_tokens"]
    summary = run_evaluate(small, base, Path(small.run_dir) / "eval" / "base", progress=False)
    assert summary["n"] == 6


def test_one_replica_serves_several_adapters_row_by_row(cfg, adapter_dir, second_adapter, rows) -> None:
    """Rows tagged with adapter slots get exactly what a replica holding only that adapter gives."""
    from sqltrain.generate.candidates import SLOT
    from sqltrain.generate.engine import SQLGenerator
    from sqltrain.generate.pipeline import generation_config

    gcfg = generation_config(cfg, adapter_dir).to_dict()
    prompts = [r["prompt"] for r in rows[:3]]
    batch = {"index": [0, 1, 2, 0, 1, 2], "id": list("abcabc"), "db_id": ["d"] * 6, "prompt": prompts * 2,
             "prompt_tokens": [1] * 6, SLOT: [0, 0, 0, 1, 1, 1]}
    both = SQLGenerator(gcfg, adapter=[str(adapter_dir), str(second_adapter)])(batch)["raw"]
    alone = [SQLGenerator(gcfg, adapter=str(a)).generate(prompts)[0] for a in (adapter_dir, second_adapter)]
    assert alone[0] != alone[1]  # the two adapters differ, so a mixed-up row would show
    assert both == alone[0] + alone[1]
    with pytest.raises(ValueError, match="adapter slot 2 out of range"):
        SQLGenerator(gcfg, adapter=str(adapter_dir))({**batch, SLOT: [2] * 6})


def test_adapters_share_a_pass_only_with_the_same_prompt_setup(cfg, adapter_dir, second_adapter) -> None:
    from sqltrain.generate.pipeline import generation_config, pass_groups

    gcfgs = [generation_config(cfg, a) for a in (adapter_dir, second_adapter)] + [cfg, cfg]
    assert pass_groups(gcfgs) == [[0, 1], [2, 3]]  # the base config has another system prompt


@pytest.mark.slow
def test_run_generate_adapters_matches_one_run_per_adapter(cfg, adapter_dir, second_adapter, tmp_path) -> None:
    """Two adapters in one Ray Data pass: each output is what its own run writes."""
    import ray

    from sqltrain.generate.pipeline import run_generate, run_generate_adapters

    small = load_config(None, [f"run_dir={cfg.run_dir}", *TINY, "generate.limit=5"])
    adapters = [str(adapter_dir), str(second_adapter)]
    try:
        together = run_generate_adapters(small, adapters, "dev", [tmp_path / "a.jsonl", tmp_path / "b.jsonl"])
        alone = [run_generate(small, adapter=a, split="dev", out=tmp_path / f"alone-{i}.jsonl")
                 for i, a in enumerate(adapters)]
        with pytest.raises(ValueError, match="one output path per adapter"):
            run_generate_adapters(small, adapters, "dev")
    finally:
        ray.shutdown()
    for shared, own, adapter in zip(together, alone, adapters):
        assert read_jsonl(shared.predictions) == read_jsonl(own.predictions)
        meta = json.loads(shared.meta.read_text())
        assert meta["adapter"] == adapter and meta["n"] == 5 and meta["adapters_in_pass"] == 2
    assert read_jsonl(together[0].predictions) != read_jsonl(together[1].predictions)
