"""Merge the LoRA weights into the base and save a standard Hugging Face model dir.

The merge runs in fp32 and the result is rounded to bf16 once. A QLoRA adapter (trained and
evaluated on the NF4-quantized base) is merged into the dequantized NF4 weights, so the merged
model computes what `sqltrain generate` evaluated with the adapter, not a slightly different
function of the original bf16 weights.
"""

from __future__ import annotations

from pathlib import Path

from sqltrain.config import Config
from sqltrain.export.source import check_adapter_fits, resolve_base

PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['content'] }}{% if not loop.last %}\n\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}\n{% endif %}"
)
"""For tokenizers without a chat template: what sqltrain.prep.prompts.render_prompt does then
(messages joined by blank lines, then a newline), so chat clients send the training prompt."""


def load_base_fp32(cfg: Config):
    """The base as the adapter saw it in training, in fp32 on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_base(cfg.model)
    if cfg.quantization.method == "none":
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    from sqltrain.model.loading import QUANTIZERS

    nf4 = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, quantization_config=QUANTIZERS[cfg.quantization.method](cfg.quantization))
    return nf4.dequantize(dtype=torch.float32)


def merged_model(cfg: Config, adapter: Path):
    """Base + adapter, merged, in bf16."""
    import torch
    from peft import PeftModel

    base = load_base_fp32(cfg)
    check_adapter_fits(base, adapter, cfg.model.name)
    model = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    model.config.use_cache = True  # training switched the KV cache off; serving wants it
    return model.to(torch.bfloat16)


def export_tokenizer(cfg: Config, dest: Path) -> None:
    """The training tokenizer, with a chat template that renders the training prompt."""
    from sqltrain.model.loading import load_tokenizer

    tok = load_tokenizer(cfg.model)
    if not getattr(tok, "chat_template", None):
        tok.chat_template = PLAIN_CHAT_TEMPLATE
    tok.save_pretrained(dest)


def write_merged(cfg: Config, adapter: Path, dest: Path) -> None:
    """dest/: config.json, model*.safetensors (bf16), generation_config.json, tokenizer files."""
    model = merged_model(cfg, adapter)
    model.save_pretrained(dest)
    export_tokenizer(cfg, dest)
