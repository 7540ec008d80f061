"""The adapter to export and its base: read the adapter dir, find the base, check they fit."""

from __future__ import annotations

from pathlib import Path

import yaml

from sqltrain.config import Config, ConfigError, ModelConfig
from sqltrain.model.loading import RANDOM_PREFIX, SMOLLM2, ModelSourceError, resolve_model_source, smollm2_gguf
from sqltrain.train.checkpoints import CONFIG_FILE

ADAPTER_WEIGHTS = "adapter_model.safetensors"


class ExportError(ValueError):
    """The adapter cannot be exported as asked; the message names the file or option and the fix."""


def read_adapter(adapter: Path, cfg: Config, base: str | None) -> Config:
    """cfg with the adapter's training sections and prompt (as `sqltrain generate` reads them);
    `base` replaces model.name (the base's path on this machine, when it differs)."""
    from sqltrain.generate.pipeline import generation_config

    if not adapter.is_dir():
        raise ExportError(f"--adapter {adapter}: no such directory "
                          "(an adapter dir is e.g. runs/quickstart/train/adapter)")
    if not (adapter / ADAPTER_WEIGHTS).exists():
        raise ExportError(f"--adapter {adapter}: missing {ADAPTER_WEIGHTS} (expected a `sqltrain train` adapter)")
    try:
        trained = generation_config(cfg, adapter)
        run_dir = (yaml.safe_load((adapter / CONFIG_FILE).read_text()) or {}).get("run_dir", trained.run_dir)
    except ConfigError as e:
        raise ExportError(str(e)) from None
    trained = trained.model_copy(update={"run_dir": run_dir})  # names the exported model
    if base is not None:
        trained = trained.model_copy(update={"model": trained.model.model_copy(update={"name": base})})
    return trained


def resolve_base(model_cfg: ModelConfig) -> str:
    """The base as a directory from_pretrained reads (a GGUF base is dequantized once, cached)."""
    try:
        return resolve_model_source(model_cfg).path
    except ModelSourceError as e:
        raise ExportError(f"{e} (the adapter's base; pass --base with its path on this machine)") from None


def tokenizer_gguf(model_cfg: ModelConfig) -> Path | None:
    """The GGUF file the tokenizer came from (its llama.cpp tokenizer metadata is reused), or None
    for a Hugging Face tokenizer. Mirrors model.loading.resolve_tokenizer_source."""
    name = model_cfg.tokenizer or model_cfg.name
    if name == SMOLLM2 or (model_cfg.tokenizer is None and name.startswith(RANDOM_PREFIX)):
        return smollm2_gguf()
    return Path(name).expanduser() if name.endswith(".gguf") else None


def check_adapter_fits(model, adapter: Path, base_name: str) -> None:
    """Every LoRA matrix of the adapter must sit on a linear layer of the base with its shape;
    otherwise the adapter was trained on another base (PEFT would fail deep in a state dict)."""
    from safetensors import safe_open

    modules = dict(model.named_modules())
    hint = "the adapter was trained on another base (pass --base with the one it was trained on)"
    with safe_open(str(adapter / ADAPTER_WEIGHTS), framework="pt") as f:
        for key in f.keys():
            path, _, part = key.partition(".lora_")
            if not part:
                continue
            name = path.removeprefix("base_model.model.")
            module = modules.get(name)
            if module is None or not hasattr(module, "in_features"):
                raise ExportError(f"{adapter}: base model {base_name!r} has no linear layer {name}: {hint}")
            shape = f.get_slice(key).get_shape()
            fits = shape[1] == module.in_features if part.startswith("A") else shape[0] == module.out_features
            if not fits:
                raise ExportError(f"{adapter}: {key} has shape {list(shape)} but {name} of base model {base_name!r} is "
                                  f"{module.out_features}x{module.in_features}: {hint}")
