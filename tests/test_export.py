"""`sqltrain export` on a real small model: SmolLM2-135M (llama) with a LoRA adapter trained here
for a few steps on mini-benchmark records, saved as `sqltrain train` saves adapters.

- merged: its logits equal base + adapter (unmerged) within bf16 rounding of the merged weights;
- gguf: the file reads back through transformers' GGUF loader and writes the same greedy SQL as
  the merged model on 20 mini-benchmark dev prompts (f16), and nearly the same logits (q8_0);
- ollama: the Modelfile's TEMPLATE and SYSTEM render the exact training prompt text;
- bad inputs: one line on stderr, exit code 2, nothing written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from sqltrain.cli import main
from sqltrain.config import load_config
from sqltrain.export.run import run_export

REPO = Path(__file__).resolve().parents[1]
N_PROMPTS = 10
MAX_NEW_TOKENS = 48


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "model-cache"  # shared with test_model and test_train
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def cfg(tmp_path_factory, model_cache):
    """The quickstart config (SmolLM2-135M, LoRA on all linear layers, no quantization)."""
    run = tmp_path_factory.mktemp("export") / "quick"
    overrides = [f"run_dir={run}", f"model.cache_dir={model_cache}", "lora.r=8"]
    return load_config(REPO / "configs" / "quickstart.yaml", overrides)


def local(cfg) -> list[str]:
    return [f"model.cache_dir={cfg.model.cache_dir}"]


def pad_right(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    return ids, (torch.arange(width)[None, :] < torch.tensor([len(r) for r in rows])[:, None]).long()


@pytest.fixture(scope="module")
def adapter(cfg) -> Path:
    """A LoRA adapter trained for 3 AdamW steps on real training records (prompt masked), saved
    like training saves it: the PEFT dir + sqltrain_config.yaml + prompt.json."""
    from sqltrain.data import resolve_benchmark
    from sqltrain.model.loading import attach_lora, load_base_model, load_tokenizer
    from sqltrain.prep.records import RecordBuilder
    from sqltrain.train.checkpoints import write_adapter_metadata

    tok = load_tokenizer(cfg.model)
    bench = resolve_benchmark(cfg.data)
    builder = RecordBuilder(cfg, bench, tok)
    records = sorted((r for r in map(builder.record, bench.examples("train")[:16]) if not r.dropped),
                     key=lambda r: len(r.input_ids))[:6]
    torch.manual_seed(0)
    model = attach_lora(load_base_model(cfg), cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    for step in range(3):
        batch = records[2 * step: 2 * step + 2]
        ids, mask = pad_right([r.input_ids for r in batch], tok.pad_token_id)
        labels, _ = pad_right([r.labels for r in batch], -100)
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    dest = Path(cfg.run_dir) / "train" / "adapter"
    model.save_pretrained(dest)
    write_adapter_metadata(cfg, dest)
    return dest


@pytest.fixture(scope="module")
def merged(adapter, cfg) -> Path:
    return run_export(adapter, "merged", overrides=local(cfg))


@pytest.fixture(scope="module")
def prompts(cfg) -> list[str]:
    """20 mini-benchmark dev prompts, as `sqltrain generate` builds them."""
    from sqltrain.generate.pipeline import build_prompt_rows

    small = cfg.model_copy(update={"generate": cfg.generate.model_copy(update={"limit": N_PROMPTS})})
    return [r["prompt"] for r in build_prompt_rows(small, "dev")]


def load_fp32(path: Path, gguf_file: str | None = None):
    from transformers import AutoModelForCausalLM

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs).eval()


def greedy_sql(model, tok, prompts: list[str]) -> list[str]:
    """Greedy completions (batched, left-padded, stopped as `sqltrain generate` stops), as SQL."""
    from sqltrain.generate.engine import make_stopping_criteria
    from sqltrain.generate.extract import extract_sql

    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    n = enc["input_ids"].shape[1]
    with torch.inference_mode():
        gen = model.generate(**enc, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, pad_token_id=tok.pad_token_id,
                             stopping_criteria=[make_stopping_criteria(tok, n)])
    return [extract_sql(t) for t in tok.batch_decode(gen[:, n:], skip_special_tokens=True)]


def logits(model, tok, texts: list[str]) -> torch.Tensor:
    tok.padding_side = "right"
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        return model(**enc).logits * enc["attention_mask"][..., None]


# --- merged ---------------------------------------------------------------------------------


@pytest.mark.slow  # trains the module's adapter or converts a model: minutes on 2 CPU cores
def test_merged_logits_equal_base_plus_adapter(adapter, merged, cfg, prompts):
    from peft import PeftModel
    from transformers import AutoTokenizer

    from sqltrain.model.loading import load_base_model

    assert merged == adapter.parent / "adapter-merged"
    tok = AutoTokenizer.from_pretrained(merged)
    texts = prompts[:3]
    base = load_base_model(cfg).eval()  # fp32 on CPU, as the adapter was trained
    before = logits(base, tok, texts)
    reference = logits(PeftModel.from_pretrained(base, str(adapter)).eval(), tok, texts)
    after = logits(load_fp32(merged), tok, texts)
    assert (reference - before).abs().max() > 5.0  # the adapter changes the model a lot (measured ~13)...
    # ...and the merged model is base + adapter up to rounding its weights to bf16 (measured: max
    # 0.27, mean 0.026 over ~600 positions): the top token changes only where two were tied.
    assert (after - reference).abs().max() < 0.5
    top2 = reference.topk(2, dim=-1).values
    clear = top2[..., 0] - top2[..., 1] > 1.0
    assert clear.sum() > 100 and torch.equal(after.argmax(-1)[clear], reference.argmax(-1)[clear])
    config = json.loads((merged / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and "quantization_config" not in config and config["use_cache"] is True
    assert json.loads((merged / "sqltrain_export.json").read_text())["prompt"]["system"] == cfg.prompt.system


@pytest.mark.slow  # trains the module's adapter or converts a model: minutes on 2 CPU cores
def test_merged_tokenizer_renders_the_training_prompt(merged, cfg):
    from transformers import AutoTokenizer

    from sqltrain.model.loading import load_tokenizer
    from sqltrain.prep.prompts import build_messages, render_prompt

    messages = build_messages("CREATE TABLE singer (id INT, name TEXT)", "How many singers are there?", cfg.prompt)
    exported = AutoTokenizer.from_pretrained(merged)
    assert exported.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == \
        render_prompt(load_tokenizer(cfg.model), messages)


# --- gguf -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gguf_f16(merged, cfg, tmp_path_factory) -> Path:
    """The GGUF step of `--format gguf`, on the merged dir above (the merge is not repeated)."""
    from sqltrain.export.source import tokenizer_gguf
    from sqltrain.export.to_gguf import write_gguf

    dest = tmp_path_factory.mktemp("gguf") / "quick-f16.gguf"
    write_gguf(merged, dest, "f16", "quick", tokenizer_gguf(cfg.model))
    return dest


@pytest.mark.slow  # trains the module's adapter or converts a model: minutes on 2 CPU cores
def test_gguf_reads_back_and_writes_the_same_greedy_sql(gguf_f16, merged, prompts):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(merged)
    gguf_tok = AutoTokenizer.from_pretrained(gguf_f16.parent, gguf_file=gguf_f16.name)
    assert [gguf_tok(p, add_special_tokens=False)["input_ids"] for p in prompts] == \
        [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    want = greedy_sql(load_fp32(merged), tok, prompts)
    got = greedy_sql(load_fp32(gguf_f16.parent, gguf_f16.name), tok, prompts)
    assert len(prompts) == N_PROMPTS and sum(bool(s) for s in want) >= N_PROMPTS // 2
    assert got == want


@pytest.mark.slow  # trains the module's adapter or converts a model: minutes on 2 CPU cores
def test_llama_cpp_runs_the_gguf_like_transformers_runs_the_merged_model(gguf_f16, merged, prompts):
    """llama.cpp itself (llama-cpp-python; not in `.[dev]`: a long C++ build) loads the file,
    tokenizes the prompts as the training tokenizer does and decodes the same greedy SQL."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from transformers import AutoTokenizer

    from sqltrain.generate.extract import extract_sql

    tok = AutoTokenizer.from_pretrained(merged)
    llm = llama_cpp.Llama(model_path=str(gguf_f16), n_ctx=1024, n_threads=2, verbose=False)
    for p in prompts:
        assert llm.tokenize(p.encode(), add_bos=False, special=True) == tok(p, add_special_tokens=False)["input_ids"]
    got = [extract_sql(llm.create_completion(p, max_tokens=MAX_NEW_TOKENS, temperature=0.0, top_k=1,
                                             stop=[tok.eos_token])["choices"][0]["text"]) for p in prompts]
    assert got == greedy_sql(load_fp32(merged), tok, prompts)


@pytest.mark.slow  # trains the module's adapter or converts a model: minutes on 2 CPU cores
def test_gguf_metadata_is_what_llama_cpp_reads(gguf_f16, merged):
    from gguf import GGUFReader

    from sqltrain.model.loading import smollm2_gguf

    ours, source = GGUFReader(gguf_f16), GGUFReader(smollm2_gguf())
    for key in ("general.architecture", "llama.block_count", "llama.embedding_length", "llama.attention.head_count",
                "llama.attention.head_count_kv", "llama.rope.freq_base", "llama.rope.dimension_count",
                "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.eos_token_id", "tokenizer.chat_template"):
        assert ours.fields[key].contents() == source.fields[key].contents(), key
    assert ours.fields["tokenizer.ggml.tokens"].contents() == source.fields["tokenizer.ggml.tokens"].contents()
    types = {t.name: t.tensor_type.name for t in ours.tensors}
    assert types["token_embd.weight"] == "F16" and types["blk.0.attn_norm.weight"] == "F32"
    assert "output.weight" not in types  # tied embeddings, as llama.cpp writes them
    assert len(types) == len(source.tensors)


@pytest.mark.slow  # trains the module's adapter or converts a model: minutes on 2 CPU cores
def test_gguf_tokenizer_from_hugging_face_files_matches_llama_cpp(merged, tmp_path):
    """Without a source GGUF the tokenizer is built from tokenizer.json; on SmolLM2 it equals what
    llama.cpp's converter wrote (except the pre-tokenizer name, which only llama.cpp's table knows)."""
    import gguf

    from sqltrain.export.to_gguf import hf_tokenizer
    from sqltrain.model.loading import smollm2_gguf

    writer = gguf.GGUFWriter(str(tmp_path / "tok.gguf"), "llama")
    hf_tokenizer(writer, merged, 49152)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    ours, source = gguf.GGUFReader(tmp_path / "tok.gguf"), gguf.GGUFReader(smollm2_gguf())
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.merges",
                "tokenizer.ggml.eos_token_id", "tokenizer.ggml.bos_token_id", "tokenizer.chat_template"):
        assert ours.fields[key].contents() == source.fields[key].contents(), key


# --- ollama (the whole CLI path: merge, GGUF q8_0, Modelfile) ---------------------------------


@pytest.fixture(scope="module")
def ollama_dir(adapter, cfg) -> Path:
    assert main(["export", "--adapter", str(adapter), "--format", "ollama", "--quant", "q8_0", *local(cfg)]) == 0
    return adapter.parent / "adapter-ollama"


def modelfile_block(text: str, command: str) -> str:
    return re.search(rf'^{command} """(.*?)"""$', text, re.M | re.S).group(1)


@pytest.mark.slow  # trains the module's adapter or converts a model: minutes on 2 CPU cores
def test_ollama_modelfile_renders_the_training_prompt(ollama_dir, cfg, prompts):
    from sqltrain.data import resolve_benchmark
    from sqltrain.model.loading import load_tokenizer
    from sqltrain.prep.records import RecordBuilder

    text = (ollama_dir / "Modelfile").read_text()
    gguf_name = re.search(r"^FROM \./(\S+)$", text, re.M).group(1)
    assert (ollama_dir / gguf_name).is_file() and gguf_name.endswith("-q8_0.gguf")
    template, system = modelfile_block(text, "TEMPLATE"), modelfile_block(text, "SYSTEM")
    assert system == cfg.prompt.system
    assert set(re.findall(r"\{\{.*?\}\}", template)) == {"{{ .System }}", "{{ .Prompt }}"}
    assert 'PARAMETER stop "<|im_end|>"' in text and "PARAMETER temperature 0" in text
    bench = resolve_benchmark(cfg.data)
    builder = RecordBuilder(cfg, bench, load_tokenizer(cfg.model))
    for ex in bench.examples("dev")[:N_PROMPTS]:
        prompt, info = builder.generation_prompt(ex)
        link = builder.linker(ex.db_id).link(ex.question, builder.default_budget())
        assert not info["pruned_for_length"] and prompt in prompts
        user = cfg.prompt.user_template.format(schema=link.schema_text, question=ex.question)
        # Go's text/template with these two fields: each action is replaced by the field's value
        assert template.replace("{{ .System }}", system).replace("{{ .Prompt }}", user) == prompt


@pytest.mark.slow  # trains the module's adapter or converts a model: minutes on 2 CPU cores
def test_ollama_q8_0_gguf_is_half_the_size_and_nearly_the_same_model(ollama_dir, gguf_f16, merged, prompts):
    from transformers import AutoTokenizer

    [q8] = ollama_dir.glob("*.gguf")
    assert q8.stat().st_size < 0.6 * gguf_f16.stat().st_size
    tok = AutoTokenizer.from_pretrained(merged)
    want = logits(load_fp32(merged), tok, prompts[:2])
    got = logits(load_fp32(ollama_dir, q8.name), tok, prompts[:2])
    top2 = want.topk(2, dim=-1).values
    clear = top2[..., 0] - top2[..., 1] > 2.0  # q8_0 moves logits more than bf16 rounding (max ~1)
    assert clear.sum() > 100 and torch.equal(got.argmax(-1)[clear], want.argmax(-1)[clear])
    export = json.loads((ollama_dir / "sqltrain_export.json").read_text())
    assert export["format"] == "ollama" and export["quant"] == "q8_0" and export["files"] == [q8.name, "Modelfile"]


# --- QLoRA adapters, and bad inputs (the tiny random llama: seconds) --------------------------------


def tiny_adapter(dest: Path, cache: Path, *overrides: str) -> Path:
    from sqltrain.model.loading import attach_lora, load_base_model
    from sqltrain.train.checkpoints import write_adapter_metadata

    acfg = load_config(None, [f"run_dir={dest.parent}", f"model.cache_dir={cache}", "model.name=random:tiny",
                              "model.gradient_checkpointing=false", "lora.r=4", *overrides])
    torch.manual_seed(0)  # LoRA A's init and B's draw: the same adapter whatever ran before
    model = attach_lora(load_base_model(acfg), acfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # PEFT starts B at zero: the adapter would be a no-op
                p.normal_(std=0.05)
    model.save_pretrained(dest)
    write_adapter_metadata(acfg, dest)
    return dest


@pytest.mark.slow  # quantizes, trains and merges: 9 s of the inner loop's minute
def test_qlora_adapter_merges_into_the_dequantized_nf4_base(model_cache, tmp_path):
    """The merged model computes what the adapter computed on the NF4 base it was trained and
    evaluated on (not on the original weights, which the NF4 rounding moved)."""
    from peft import PeftModel

    from sqltrain.model.loading import load_base_model

    nf4 = ("quantization.method=nf4", "quantization.compute_dtype=fp32")
    adapter = tiny_adapter(tmp_path / "adapter", model_cache, *nf4)
    out = run_export(adapter, "merged", tmp_path / "merged", overrides=[f"model.cache_dir={model_cache}"])
    base = [f"model.cache_dir={model_cache}", "model.name=random:tiny"]
    ids = torch.tensor([[1, 504, 3000, 42, 7, 99, 1200, 5]])
    with torch.no_grad():
        reference = PeftModel.from_pretrained(load_base_model(load_config(None, [*base, *nf4])), str(adapter))(ids).logits
        unquantized = load_base_model(load_config(None, [*base, "quantization.method=none"]))
        plain = PeftModel.from_pretrained(unquantized, str(adapter))(ids).logits
        merged = load_fp32(out)(ids).logits
    assert (merged - reference).abs().max() < 0.1 * (plain - reference).abs().max()
    assert json.loads((out / "sqltrain_export.json").read_text())["merged_into"] == "dequantized NF4 base"


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """Exit code and the error line (libraries may print progress bars to stderr before it)."""
    code = main(["export", *argv])
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("sqltrain export: ")]
    assert len(errors) == (1 if code else 0)
    return code, errors[0] if errors else ""


def test_missing_adapter_is_one_line_exit_2(tmp_path, capsys):
    code, err = run_cli(capsys, "--adapter", str(tmp_path / "nope"), "--format", "merged")
    assert code == 2 and "no such directory" in err


@pytest.mark.slow  # dequantizes the SmolLM2 GGUF base to read its shapes: 15 s
def test_adapter_of_another_base_is_refused_before_writing(model_cache, tmp_path, capsys):
    adapter = tiny_adapter(tmp_path / "adapter", model_cache, "quantization.method=none")
    out = tmp_path / "out"
    code, err = run_cli(capsys, "--adapter", str(adapter), "--format", "merged", "--out", str(out),
                        "--base", "smollm2-135m", f"model.cache_dir={model_cache}")
    assert code == 2 and "trained on another base" in err
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_unsupported_architecture_is_refused_for_gguf(model_cache, tmp_path, capsys):
    from transformers import AutoConfig, AutoModelForCausalLM

    gpt2 = tmp_path / "gpt2"
    AutoModelForCausalLM.from_config(AutoConfig.for_model("gpt2", n_layer=1, n_embd=32, n_head=2)).save_pretrained(gpt2)
    adapter = tiny_adapter(tmp_path / "adapter", model_cache, "quantization.method=none")
    code, err = run_cli(capsys, "--adapter", str(adapter), "--format", "gguf", "--base", str(gpt2),
                        f"model.cache_dir={model_cache}")
    assert code == 2 and "GPT2LMHeadModel has no GGUF export" in err and "--format merged" in err


def test_quant_is_refused_for_merged(tmp_path, capsys):
    code, err = run_cli(capsys, "--adapter", str(tmp_path), "--format", "merged", "--quant", "q8_0")
    assert code == 2 and "--quant applies to --format gguf and ollama" in err


@pytest.mark.slow  # trains the module's adapter or converts a model: minutes on 2 CPU cores
def test_qwen2_gguf_reads_back_with_biases_and_an_untied_head(model_cache, tmp_path):
    """The qwen2 family (the GPU recipe's Qwen2.5-Coder): attention biases, no q/k permutation,
    an untied lm_head as output.weight, and the tokenizer built from Hugging Face files."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from sqltrain.export.to_gguf import write_gguf
    from sqltrain.model.loading import load_tokenizer

    torch.manual_seed(0)
    config = AutoConfig.for_model("qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, vocab_size=49152,
                                  max_position_embeddings=512, tie_word_embeddings=False)
    model = AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(std=0.5)  # zero-initialised: a misplaced bias would go unnoticed
    model.save_pretrained(tmp_path)
    load_tokenizer(load_config(None, [f"model.cache_dir={model_cache}"]).model).save_pretrained(tmp_path)
    write_gguf(tmp_path, tmp_path / "qwen.gguf", "f16", "tiny-qwen2", None)
    ids = torch.tensor([[1, 504, 3000, 42, 7, 99, 1200, 5]])
    with torch.no_grad():
        want = model.float()(ids).logits
        got = load_fp32(tmp_path, "qwen.gguf")(ids).logits
    assert (got - want).abs().max() < 1e-3


@pytest.mark.slow  # trains the module's adapter or converts a model: minutes on 2 CPU cores
def test_export_is_readable_by_other_users(merged):
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(merged.stat().st_mode) == 0o777 & ~umask
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask for f in merged.iterdir())
