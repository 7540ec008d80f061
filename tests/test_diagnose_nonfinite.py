"""benchmarks/diagnose_nonfinite.py on CPU: on a tiny LoRA model whose backward turns non-finite
inside one known module, the replay names that module and the layers the gradient poisoned."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import diagnose_nonfinite

torch = pytest.importorskip("torch")


class InfGrad(torch.autograd.Function):
    """Identity forward; the backward returns inf: a gradient that overflows inside a module."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def tiny_lora_model():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, vocab_size=64))
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False))
    return model


def batches():
    ids = torch.randint(0, 64, (2, 12))
    return [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}]


def test_a_finite_step_reports_nothing():
    r = diagnose_nonfinite.one_pass(tiny_lora_model(), batches(), trace=True)
    assert r["n_nonfinite_grads"] == 0 and r["born_in"] is None and r["nonfinite_grads_by_layer"] == {}
    assert r["n_lora_grads"] == 2 * 7 * 2


def test_the_module_where_the_gradient_is_born_and_the_layers_it_poisons():
    model = tiny_lora_model()
    up = diagnose_nonfinite.decoder_layers(model)[1].mlp.up_proj
    up.register_forward_hook(lambda m, args, out: InfGrad.apply(out))
    r = diagnose_nonfinite.one_pass(model, batches(), trace=True)
    assert r["first_nonfinite_layer"] is None  # the forward pass stays finite
    assert r["born_in"].endswith("layers.1.mlp.up_proj")
    # Above the injection (down_proj) and beside it (gate_proj) layer 1 stays finite; below, all is lost.
    assert sorted(r["nonfinite_grads_by_layer"]["1"]) == sorted(
        f"{m}.{ab}" for m in ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj") for ab in "AB")
    assert len(r["nonfinite_grads_by_layer"]["0"]) == 14 and r["n_nonfinite_grads"] == 24
    assert any("up_proj: out ok, in NON-FINITE" in line for line in r["trace"])


def test_a_fresh_lora_is_trained_looking(tmp_path):
    """--config: the run's base model with a new LoRA whose B is drawn, not zero (with B = 0, A's
    gradient is zero and a replay could not poison it)."""
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"name": "random:tiny", "dtype": "fp32", "cache_dir": str(tmp_path / "m")},
                                   "quantization": {"method": "none"}, "lora": {"r": 4}}))
    _, model = diagnose_nonfinite.fresh_lora_model(cfg, std=0.02)
    b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert b and all(p.dtype == torch.bfloat16 and p.requires_grad and p.abs().sum() > 0 for p in b)
    assert 0.01 < float(torch.cat([p.float().flatten() for p in b]).std()) < 0.03
    r = diagnose_nonfinite.one_pass(model, [{"input_ids": torch.randint(0, 1000, (2, 12)),
                                             "attention_mask": torch.ones(2, 12, dtype=torch.long),
                                             "labels": torch.randint(0, 1000, (2, 12))}])
    a = [p for n, p in model.named_parameters() if "lora_A" in n]
    assert r["n_nonfinite_grads"] == 0 and all(p.grad.abs().sum() > 0 for p in a)


def test_padded_replays_a_batch_as_pad_to_multiple_of_would_have_trained_it():
    b = batches()[0]  # 2 x 12
    p = diagnose_nonfinite.padded(b, 8)
    assert p["input_ids"].shape == (2, 16) and torch.equal(p["input_ids"][:, :12], b["input_ids"])
    assert (p["attention_mask"][:, 12:] == 0).all() and (p["labels"][:, 12:] == -100).all()
    assert diagnose_nonfinite.padded(b, 1, extra=1)["input_ids"].shape == (2, 13)
    assert diagnose_nonfinite.padded(b, 4)["input_ids"].shape == (2, 12)  # already a multiple


def test_the_sdpa_sweep_tries_every_backend_and_reports_the_ones_that_cannot_run():
    """On CPU: math (and CPU flash) run the batch with finite gradients; cuDNN has no kernel
    here and is reported as an error, not raised."""
    model = tiny_lora_model()
    for m in model.modules():  # sdpa, as training runs the model
        if hasattr(m, "config"):
            m.config._attn_implementation = "sdpa"
    sweep = diagnose_nonfinite.sdpa_sweep(model, batches())
    assert set(sweep) == {f"only {b}" for b in diagnose_nonfinite.SDPA_BACKENDS} | {"default +1 pad", "default +8 pad"}
    assert sweep["only MATH"]["n_nonfinite_grads"] == 0 and sweep["only MATH"]["seq"] == 12
    assert "error" in sweep["only CUDNN_ATTENTION"]
    assert sweep["default +8 pad"]["seq"] == 20 and sweep["default +8 pad"]["n_nonfinite_grads"] == 0


def test_train_sdpa_cudnn_sets_the_process_flag():
    from sqltrain.config import load_config
    from sqltrain.train.worker import select_attention_kernels

    try:
        select_attention_kernels(load_config(None, ["train.sdpa_cudnn=true"]))
        assert torch.backends.cuda.cudnn_sdp_enabled()
        select_attention_kernels(load_config(None, []))  # the default: off
        assert not torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(True)
