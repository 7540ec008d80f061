"""Model loading: sources (preset, GGUF, dir, errors), tokenizer, NF4 on CPU, LoRA."""

from __future__ import annotations

import pytest
import torch

from sqltrain.config import load_config
from sqltrain.model.loading import (
    PRESETS,
    ModelSourceError,
    attach_lora,
    load_base_model,
    load_tokenizer,
    preset_config,
    resolve_model_source,
    smollm2_gguf,
)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    """One model cache per test session (shared with test_train): GGUF work happens once."""
    path = tmp_path_factory.getbasetemp() / "model-cache"
    path.mkdir(exist_ok=True)
    return path


def cfg_for(cache, *overrides):
    return load_config(None, [f"model.cache_dir={cache}", *overrides])


def test_preset_shapes_match_published_sizes():
    sizes = {}
    for preset in PRESETS:
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(preset_config(preset))
        sizes[preset] = sum(p.numel() for p in model.parameters())
    assert sizes["llama3-8b"] == 8_030_261_248
    assert 1.50e9 < sizes["qwen2.5-1.5b"] < 1.56e9
    assert 0.49e9 < sizes["qwen2.5-0.5b"] < 0.50e9
    assert 134e6 < sizes["smollm2-135m"] < 135e6
    assert sizes["tiny"] < 4e6


@pytest.mark.parametrize(
    "name, message",
    [
        ("random:llama-9000", "unknown random-init preset 'llama-9000'"),
        ("/nonexistent/model.gguf", "GGUF file not found"),
        ("/nonexistent/model-dir", "no such model directory"),
    ],
)
def test_unknown_sources_fail_with_the_field_named(model_cache, name, message):
    with pytest.raises(ModelSourceError, match="model.name") as err:
        resolve_model_source(cfg_for(model_cache, f"model.name={name}").model)
    assert message in str(err.value)


def test_directory_without_config_is_rejected(model_cache, tmp_path):
    with pytest.raises(ModelSourceError, match="without config.json"):
        resolve_model_source(cfg_for(model_cache, f"model.name={tmp_path}").model)


@pytest.mark.slow
def test_random_preset_is_materialised_once_with_a_tokenizer(model_cache):
    cfg = cfg_for(model_cache, "model.name=random:tiny")
    first = resolve_model_source(cfg.model)
    assert first.kind == "random" and (model_cache / first.path).joinpath("config.json").exists()
    assert resolve_model_source(cfg.model) == first  # cached: same dirs
    tok = load_tokenizer(cfg.model)
    assert tok.pad_token is not None and len(tok) <= PRESETS["tiny"][1]["vocab_size"]
    a = load_base_model(cfg_for(model_cache, "model.name=random:tiny", "quantization.method=none"))
    b = load_base_model(cfg_for(model_cache, "model.name=random:tiny", "quantization.method=none"))
    assert torch.equal(a.model.embed_tokens.weight, b.model.embed_tokens.weight)  # same weights everywhere


@pytest.mark.slow
def test_gguf_is_dequantized_into_a_loadable_safetensors_dir(model_cache):
    from gguf import GGUFReader
    from gguf.quants import dequantize

    cfg = cfg_for(model_cache, "model.name=smollm2-135m", "quantization.method=none", "model.dtype=fp32")
    resolved = resolve_model_source(cfg.model)
    assert resolved.kind == "gguf" and list((model_cache / resolved.path).glob("*.safetensors"))
    ours = load_base_model(cfg)
    # The weights equal the GGUF's own dequantization (Q8_0 embeddings, Q4_1 layers), up to bf16.
    tensors = {t.name: t for t in GGUFReader(smollm2_gguf()).tensors}
    for gguf_name, param in [("token_embd.weight", ours.model.embed_tokens.weight),
                             ("blk.0.ffn_down.weight", ours.model.layers[0].mlp.down_proj.weight)]:
        t = tensors[gguf_name]
        reference = torch.from_numpy(dequantize(t.data, t.tensor_type))
        assert torch.allclose(param.detach(), reference, rtol=1 / 128, atol=1e-3), gguf_name
    ids = load_tokenizer(cfg.model)("SELECT name FROM singer WHERE age > 30", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = ours(ids).logits
    assert torch.isfinite(logits).all() and ours.lm_head.weight.data_ptr() == ours.model.embed_tokens.weight.data_ptr()


def test_nf4_on_cpu_quantizes_and_trains_lora(model_cache):
    from bitsandbytes.nn import Linear4bit

    cfg = cfg_for(model_cache, "model.name=random:tiny", "quantization.method=nf4", "quantization.compute_dtype=fp32")
    model = load_base_model(cfg)
    q_proj = model.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, Linear4bit)
    assert q_proj.weight.dtype == torch.bfloat16  # quant_storage=bf16 (ZeRO-3 can partition it)
    assert q_proj.weight.quant_state.quant_type == "nf4"
    peft_model = attach_lora(model, cfg)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    ids = torch.randint(0, 1000, (2, 12))
    loss = peft_model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in peft_model.parameters() if p.requires_grad)


def test_attach_lora_follows_the_config(model_cache):
    cfg = cfg_for(model_cache, "model.name=random:tiny", "quantization.method=none", "lora.r=4",
                  "lora.target_modules=[q_proj, v_proj]", "model.gradient_checkpointing=true")
    model = attach_lora(load_base_model(cfg), cfg)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert {n.split(".")[-4] for n in names} == {"q_proj", "v_proj"}
    assert model.base_model.model.model.layers[0].self_attn.q_proj.lora_A["default"].weight.shape[0] == 4
    assert model.base_model.model.is_activation_checkpointing


@pytest.mark.slow
def test_regional_compile_keeps_adapter_names_and_outputs(model_cache):
    """The worker compiles blocks in place (accelerate's compile_regions_deepspeed) after
    deepspeed.initialize; checkpoints and PEFT adapters must see the same parameter names."""
    from accelerate.utils import compile_regions_deepspeed
    from peft import get_peft_model_state_dict

    cfg = cfg_for(model_cache, "model.name=random:tiny", "quantization.method=none", "lora.dropout=0.0")
    model = attach_lora(load_base_model(cfg), cfg).eval()
    ids = torch.randint(1, 100, (2, 12))
    with torch.no_grad():
        before_logits = model(input_ids=ids).logits
    before_keys = sorted(get_peft_model_state_dict(model))
    compile_regions_deepspeed(model, backend="eager")  # eager backend: no C++ toolchain needed in CI
    assert model.base_model.model.model.layers[0]._compiled_call_impl is not None
    with torch.no_grad():
        after_logits = model(input_ids=ids).logits
    assert sorted(get_peft_model_state_dict(model)) == before_keys
    assert torch.allclose(before_logits, after_logits, atol=1e-5)


def test_relative_model_paths_become_absolute_for_ray_workers(tmp_path, monkeypatch, model_cache):
    from sqltrain.model.loading import with_absolute_paths

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.gguf").write_bytes(b"")
    out = with_absolute_paths(cfg_for(model_cache, "model.name=m.gguf", "model.tokenizer=smollm2-135m").model)
    assert out.name == str(tmp_path / "m.gguf") and out.tokenizer == "smollm2-135m"
    assert with_absolute_paths(cfg_for(model_cache, "model.name=random:tiny").model).name == "random:tiny"
