"""`run_export`: one adapter dir in, one export dir out (written whole or not at all)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

from sqltrain.config import Config, load_config
from sqltrain.export.source import ExportError, read_adapter, resolve_base, tokenizer_gguf
from sqltrain.io import atomic_dir, atomic_write_json

FORMATS = ("merged", "gguf", "ollama")
DEFAULT_QUANT = "f16"
MERGED_TMP = ".merged"
"""The merged model a GGUF is written from, inside the output's temp dir (removed after)."""


def _readable(tmp: Path) -> None:
    """Usual permissions (umask) for the output: temp dirs and files are created owner-only, and
    a server running as another user (vLLM, Ollama's daemon) must read the export."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    for f in tmp.rglob("*"):
        f.chmod((0o777 if f.is_dir() else 0o666) & ~umask)


def default_out(adapter: Path, fmt: str) -> Path:
    """Beside the adapter: runs/x/train/adapter -> runs/x/train/adapter-<format>."""
    return adapter.parent / f"{adapter.name}-{fmt}"


def _merged(cfg: Config, adapter: Path, tmp: Path, quant: str) -> list[str]:
    from sqltrain.export.merge import write_merged

    write_merged(cfg, adapter, tmp)
    return sorted(p.name for p in tmp.iterdir())


def _gguf(cfg: Config, adapter: Path, tmp: Path, quant: str) -> list[str]:
    from sqltrain.export.merge import write_merged
    from sqltrain.export.to_gguf import write_gguf

    merged = tmp / MERGED_TMP
    write_merged(cfg, adapter, merged)
    name = f"{Path(cfg.run_dir).name}-{quant}.gguf"
    write_gguf(merged, tmp / name, quant, Path(cfg.run_dir).name, tokenizer_gguf(cfg.model))
    shutil.rmtree(merged)
    return [name]


def _ollama(cfg: Config, adapter: Path, tmp: Path, quant: str) -> list[str]:
    from transformers import GenerationConfig

    from sqltrain.export.ollama import modelfile, ollama_template, render_template, stop_tokens
    from sqltrain.model.loading import load_tokenizer
    from sqltrain.prep.prompts import build_messages, render_prompt

    [name] = _gguf(cfg, adapter, tmp, quant)
    tok = load_tokenizer(cfg.model)
    template = ollama_template(tok)
    # The export's own check: Ollama's rendering of a sample prompt is the training prompt.
    user = cfg.prompt.user_template.format(schema="CREATE TABLE t (a INT)", question="How many rows?")
    expected = render_prompt(tok, build_messages("CREATE TABLE t (a INT)", "How many rows?", cfg.prompt))
    if render_template(template, cfg.prompt.system, user) != expected:
        raise ExportError("the Ollama template does not reproduce the training prompt; use --format gguf")
    try:
        gen = GenerationConfig.from_pretrained(resolve_base(cfg.model))
    except OSError:
        gen = None
    num_ctx = cfg.prompt.max_seq_len + cfg.generate.max_new_tokens
    text = modelfile(name, template, cfg.prompt, stop_tokens(tok, gen), num_ctx)
    (tmp / "Modelfile").write_text(text)
    return [name, "Modelfile"]


EXPORTERS: dict[str, Callable[[Config, Path, Path, str], list[str]]] = {
    "merged": _merged, "gguf": _gguf, "ollama": _ollama,
}


def _check_architecture(cfg: Config) -> None:
    """GGUF formats: refuse an unsupported base before the merge, not after it."""
    from sqltrain.export.to_gguf import gguf_arch

    path = Path(resolve_base(cfg.model))
    if (path / "config.json").exists():
        gguf_arch(json.loads((path / "config.json").read_text()), cfg.model.name)


def run_export(adapter: str | Path, fmt: str, out: str | Path | None = None, quant: str | None = None,
               base: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Path:
    """Export an adapter dir as `fmt`; returns the output dir (default: beside the adapter).

    overrides: config overrides for what is local to this machine (e.g. model.cache_dir).
    """
    if fmt not in EXPORTERS:
        raise ExportError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    if fmt == "merged" and quant is not None:
        raise ExportError("--quant applies to --format gguf and ollama (merged weights are bf16)")
    adapter = Path(adapter).absolute()
    cfg = read_adapter(adapter, load_config(None, overrides), base)
    if fmt != "merged":
        _check_architecture(cfg)
    quant = quant or DEFAULT_QUANT
    dest = Path(out) if out else default_out(adapter, fmt)
    merged_into = "dequantized NF4 base" if cfg.quantization.method == "nf4" else "base"
    with atomic_dir(dest) as tmp:
        files = EXPORTERS[fmt](cfg, adapter, tmp, quant)
        atomic_write_json(tmp / "sqltrain_export.json", {
            "format": fmt, "quant": None if fmt == "merged" else quant, "adapter": str(adapter),
            "base": cfg.model.name, "merged_into": merged_into, "files": files,
            "prompt": cfg.prompt.model_dump(mode="json"),
        })
        _readable(tmp)
    return dest
