"""A merged Hugging Face model dir -> one GGUF file, written with the `gguf` library.

The `gguf` package is llama.cpp's own Python writer: its GGUFWriter lays out the file, its tensor
name maps give each Hugging Face tensor its llama.cpp name, its quants module does q8_0. What is
left to this module is what llama.cpp's converter decides per architecture:

- hyperparameters as `<arch>.*` keys;
- the tokenizer: copied verbatim from the GGUF the base came from (the tokens, merges,
  pre-tokenizer name and chat template llama.cpp's converter wrote), else built from the Hugging
  Face tokenizer files with the library's BpeVocab/SpecialVocab;
- llama's q/k projections permuted: llama.cpp's llama graph rotates interleaved pairs, Hugging
  Face rotates halves (transformers' GGUF loader undoes exactly this permutation);
- types: 1-D tensors (norms, biases) f32; matrices f16, or q8_0 (blocks of 32 along a row; rows
  that do not divide stay f16).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sqltrain.export.source import ExportError

ARCHITECTURES = {"LlamaForCausalLM": "LLAMA", "Qwen2ForCausalLM": "QWEN2"}
"""Hugging Face architecture -> gguf.MODEL_ARCH member: the families sqltrain trains (and that
transformers' GGUF loader reads back)."""
PERMUTE_QK = {"LlamaForCausalLM"}
QUANTS = ("f16", "q8_0")
F16_MAX = 65504.0


def gguf_arch(config: dict, source: str):
    """The gguf.MODEL_ARCH of a model config, or an ExportError naming what is unsupported."""
    import gguf

    arch = (config.get("architectures") or ["?"])[0]
    if arch not in ARCHITECTURES:
        raise ExportError(f"{source}: architecture {arch} has no GGUF export here (supported: "
                          f"{', '.join(ARCHITECTURES)}); --format merged works for any architecture")
    rope = config.get("rope_scaling") or config.get("rope_parameters") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise ExportError(f"{source}: rope scaling {rope.get('rope_type') or rope.get('type')!r} has no GGUF export "
                          "here; --format merged keeps it")
    return getattr(gguf.MODEL_ARCH, ARCHITECTURES[arch])


def _rope_theta(config: dict) -> float:
    return float(config.get("rope_theta") or (config.get("rope_parameters") or {})["rope_theta"])


def add_hparams(writer, config: dict, name: str, quant: str) -> None:
    import gguf

    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    writer.add_name(name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config["hidden_size"] // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_vocab_size(config["vocab_size"])
    file_type = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant]
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def copy_tokenizer(writer, source: Path) -> None:
    """Every tokenizer.* key of the source GGUF, with its types."""
    import gguf

    reader = gguf.GGUFReader(source)
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, field.contents(), gguf.GGUFValueType.ARRAY, sub_type=field.types[-1])
        else:
            writer.add_key_value(key, field.contents(), field.types[0])


def hf_tokenizer(writer, tokenizer_dir: Path, vocab_size: int) -> None:
    """A byte-level BPE tokenizer's tokens, merges, special ids and chat template.

    llama.cpp also wants the name of the pre-tokenizer (tokenizer.ggml.pre), which its converter
    recognises by hashing sample encodings; without it llama.cpp uses its default split.
    """
    import gguf

    try:
        vocab = gguf.vocab.BpeVocab(tokenizer_dir)
    except FileNotFoundError:
        raise ExportError(f"{tokenizer_dir}: GGUF export handles byte-level BPE tokenizers (tokenizer.json); "
                          "this one is not") from None
    tokens, types = [], []
    for text, _score, kind in vocab.all_tokens():
        tokens.append(text)
        types.append(kind)
    for i in range(len(tokens), vocab_size):  # the model's embedding rows beyond the tokenizer
        tokens.append(f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED)
    writer.add_tokenizer_model(vocab.tokenizer_model)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(tokenizer_dir, load_merges=True, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)


def interleave_rope(weight: np.ndarray, n_head: int) -> np.ndarray:
    """q/k rows of each head from [first halves | second halves] to interleaved pairs."""
    half = weight.shape[0] // n_head // 2
    return weight.reshape(n_head, 2, half, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def encode(data: np.ndarray, quant: str, name: str):
    """(array, raw_dtype) as GGUFWriter.add_tensor takes them."""
    import gguf

    if data.ndim == 1:
        return data.astype(np.float32), None
    if quant == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        q8 = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(data.astype(np.float32), q8), q8
    if np.abs(data).max() > F16_MAX:
        raise ExportError(f"tensor {name} holds values beyond the f16 range; this model cannot be exported as f16")
    return data.astype(np.float16), None


def add_tensors(writer, model_dir: Path, config: dict, arch, quant: str) -> None:
    import gguf
    from safetensors import safe_open

    names = gguf.get_tensor_name_map(arch, config["num_hidden_layers"])
    heads = {"q_proj.weight": config["num_attention_heads"],
             "k_proj.weight": config.get("num_key_value_heads") or config["num_attention_heads"]}
    permute = config["architectures"][0] in PERMUTE_QK
    for file in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                if key == "lm_head.weight" and config.get("tie_word_embeddings"):
                    continue  # tied: llama.cpp uses token_embd when there is no output tensor
                gguf_name = names.get_name(key, try_suffixes=(".weight", ".bias"))
                if gguf_name is None:
                    raise ExportError(f"{file}: tensor {key} has no GGUF name for {arch.name.lower()}")
                data = f.get_tensor(key).float().numpy()
                suffix = ".".join(key.split(".")[-2:])
                if permute and suffix in heads:
                    data = interleave_rope(data, heads[suffix])
                array, raw_dtype = encode(data, quant, key)
                writer.add_tensor(gguf_name, array, raw_dtype=raw_dtype)


def write_gguf(model_dir: Path, dest: Path, quant: str, name: str, tokenizer_source: Path | None) -> None:
    """model_dir (a merged HF dir with tokenizer files) -> dest, one GGUF file."""
    import gguf

    config = json.loads((model_dir / "config.json").read_text())
    arch = gguf_arch(config, str(model_dir))
    writer = gguf.GGUFWriter(str(dest), gguf.MODEL_ARCH_NAMES[arch], use_temp_file=True)
    add_hparams(writer, config, name, quant)
    if tokenizer_source is not None:
        copy_tokenizer(writer, tokenizer_source)
    else:
        hf_tokenizer(writer, model_dir, config["vocab_size"])
    add_tensors(writer, model_dir, config, arch, quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
