"""`sqltrain export --adapter DIR --format merged|gguf|ollama [--out DIR] [--quant f16|q8_0]`."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="an adapter as merged HF weights, a GGUF file, or an Ollama model",
        description="Merge a trained adapter into its base and write it for other tools: merged (bf16 Hugging "
        "Face dir for transformers/vLLM), gguf (one GGUF file for llama.cpp), ollama (GGUF + Modelfile with "
        "the training prompt).",
    )
    p.add_argument("--adapter", required=True, help="adapter dir written by training (e.g. runs/X/train/adapter)")
    p.add_argument("--format", required=True, choices=("merged", "gguf", "ollama"), help="what to write")
    p.add_argument("--out", help="output dir (default: <adapter dir>-<format> beside the adapter)")
    p.add_argument("--quant", choices=("f16", "q8_0"), help="GGUF tensor type for gguf/ollama (default f16)")
    p.add_argument("--base", help="the base model on this machine (default: the adapter's model.name)")
    p.add_argument("overrides", nargs="*", help="config overrides for this machine, e.g. model.cache_dir=DIR")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from sqltrain.export.run import run_export

    out = run_export(args.adapter, args.format, args.out, args.quant, args.base, args.overrides)
    print(f"exported {args.format}: {out}")
    if args.format == "ollama":
        print(f"serve it: cd {out} && ollama create <name> -f Modelfile")
    return 0
