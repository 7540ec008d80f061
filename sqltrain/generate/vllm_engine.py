"""The vllm engine: one vLLM replica (a Ray Data callable class, like the hf `SQLGenerator`).

What it runs: the base model's bf16 weights (`resolve_model_source`: a GGUF source is the
dequantized safetensors dir in model.cache_dir) and, with an adapter, the PEFT dir served by
vLLM's LoRA support (no merge). Same contract as the hf engine: the rendered prompts go in
as token ids (encoded like the hf engine, without special tokens, since the chat template
already holds them), greedy by default, and a sequence stops at the same token as on the hf
engine (a logits processor, or the same rule applied after decoding with
generate.vllm_stop=truncate; see generate/stopping.py); the same prediction columns come out.

Inside a Ray actor the engine runs in the actor's own process (VLLM_ENABLE_V1_MULTIPROCESSING=0,
executor "uni") when it has one GPU: no EngineCore process spawned from the actor, no IPC;
with tensor_parallel_size > 1 vLLM's "mp" executor starts one worker per GPU the actor holds.

Everything vLLM is asked for is built by the pure functions below from plain values, which
the CPU tests check; only `VLLMGenerator` imports vllm.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

from sqltrain.config import ConfigError, GenerateConfig, config_from_dict
from sqltrain.generate.candidates import Completion, adapter_list, candidates, prediction_columns, row_slots
from sqltrain.generate.stopping import stop_length

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The max_lora_rank values vLLM 0.25 accepts (vllm.config.lora.MaxLoRARanks)."""
STOP_PROCESSOR = "sqltrain.generate.vllm_logits:SQLStopLogitsProcessor"
"""Loaded by name so that vLLM's worker processes (tensor parallel) can import it too."""
STOP_KEY = "sqltrain_stop_eos"
"""SamplingParams.extra_args key: the request is stopped by the processor, with this EOS id."""
ADAPTER_NAME = "sqltrain-adapter"


def vllm_environment(flashinfer_installed: bool) -> dict[str, str]:
    """Environment vLLM must see before it is imported in a replica (setdefault: a value the
    user exported wins)."""
    env = {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # engine core in the actor's process
        "VLLM_NO_USAGE_STATS": "1",  # no usage-report thread: GPU hosts may have no network
        "DO_NOT_TRACK": "1",
    }
    if not flashinfer_installed:
        # vLLM's sampler imports flashinfer when this is on (its default) and fails without it;
        # greedy decoding never uses it, and sampling has a native top-p path.
        env["VLLM_USE_FLASHINFER_SAMPLER"] = "0"
    return env


def adapter_rank(adapter: str | os.PathLike) -> int:
    """The largest LoRA rank in a PEFT adapter dir's adapter_config.json."""
    path = Path(adapter) / "adapter_config.json"
    try:
        acfg = json.loads(path.read_text())
        return max([int(acfg["r"]), *(int(r) for r in (acfg.get("rank_pattern") or {}).values())])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read the LoRA rank r ({e})") from None


def vllm_lora_rank(r: int) -> int:
    """The smallest max_lora_rank vLLM accepts that holds rank r."""
    for allowed in VLLM_LORA_RANKS:
        if r <= allowed:
            return allowed
    raise ConfigError(f"LoRA rank {r} is above vLLM's largest max_lora_rank {VLLM_LORA_RANKS[-1]}; "
                      "use generate.engine=hf")


CUDAGRAPH_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 192, 256, 320, 384, 448, 512]
"""Decode batch sizes captured under generate.vllm_compile=cudagraphs (a decode step of n
sequences runs the graph of the next size up). vLLM's own list has 51 sizes, each captured
twice with an adapter (with and without LoRA): 102 graphs, 9-13 s of an H100 replica's start
(2026-12-07). A padded row costs a 0.5B decode step little next to reading the weights."""


def compile_kwargs(mode: str) -> dict[str, Any]:
    """LLM arguments for generate.vllm_compile. auto is resolved by generate_rows, which knows the
    job's size; an engine started without it (auto left) starts eager, the fastest start."""
    if mode in ("eager", "auto"):
        return {"enforce_eager": True}
    if mode == "cudagraphs":  # full CUDA graphs of decode steps, captured from the uncompiled model
        # one graph per size, with the LoRA kernels in it (every request of a replica serves an
        # adapter when it has any, so the graphs without LoRA that vLLM also captures would never run)
        return {"compilation_config": {"mode": "NONE", "cudagraph_mode": "FULL_DECODE_ONLY",
                                       "cudagraph_capture_sizes": CUDAGRAPH_SIZES,
                                       "cudagraph_specialize_lora": False}}
    return {}  # full: vLLM's default (torch.compile + CUDA graphs)


MAX_LORAS = 8
"""Adapters one vLLM batch may mix (max_loras); a replica holding more schedules them in turn.
Each slot costs max_lora_rank x (in + out) bf16 weights per LoRA layer: ~50 MB at r=32 on
Qwen2.5-Coder-0.5B."""


def llm_kwargs(gen: GenerateConfig, model: str, tokenizer: str, lora_rank: int | None,
               gpu_share: float, adapters: int = 1) -> dict[str, Any]:
    """Arguments of vllm.LLM for one replica holding `gpu_share` of each of its GPUs (and,
    with lora_rank, `adapters` adapters of at most that rank)."""
    tp = gen.tensor_parallel_size
    kwargs: dict[str, Any] = dict(
        model=model, tokenizer=tokenizer, dtype="bfloat16", seed=gen.seed, tensor_parallel_size=tp,
        distributed_executor_backend="uni" if tp == 1 else "mp",
        gpu_memory_utilization=round(gen.gpu_memory_utilization * min(1.0, gpu_share), 4),
        generation_config="vllm",  # only our SamplingParams count, not generation_config.json defaults
        **compile_kwargs(gen.vllm_compile),
    )
    if gen.vllm_stop == "logits":
        kwargs["logits_processors"] = [STOP_PROCESSOR]
    if lora_rank is not None:
        kwargs.update(enable_lora=True, max_lora_rank=vllm_lora_rank(lora_rank), max_loras=min(adapters, MAX_LORAS))
    return kwargs


def sampling_kwargs(gen: GenerateConfig, stop_ids: set[int], eos_id: int) -> dict[str, Any]:
    """Arguments of vllm.SamplingParams: the hf engine's decoding, stopping and candidates."""
    kwargs: dict[str, Any] = dict(
        n=gen.num_candidates, max_tokens=gen.max_new_tokens, stop_token_ids=sorted(stop_ids),
        skip_special_tokens=True, temperature=gen.temperature, top_p=gen.top_p if gen.temperature > 0 else 1.0,
    )
    if gen.vllm_stop == "logits":
        kwargs["extra_args"] = {STOP_KEY: eos_id}  # the processor acts on requests that name their EOS
    if gen.temperature > 0:
        kwargs["seed"] = gen.seed  # per request (vLLM gives candidate i seed + i)
    if gen.num_candidates > 1:
        kwargs["logprobs"] = 0  # the sampled token's log-probability at each step
    return kwargs


def prompt_inputs(tokenizer, prompts: list[str]) -> list[dict[str, list[int]]]:
    """Prompts as token ids, encoded as the hf engine encodes them: the rendered chat template
    already holds its special tokens, so none are added (vLLM would add a BOS to text)."""
    enc = tokenizer(list(prompts), add_special_tokens=False)
    return [{"prompt_token_ids": list(ids)} for ids in enc["input_ids"]]


def model_stop_ids(model_dir: str, tokenizer) -> set[int]:
    """End-of-sequence ids the hf engine stops at: the model's generation config (or its
    config.json) and the tokenizer's."""
    from transformers import AutoConfig, GenerationConfig

    try:
        gen = GenerationConfig.from_pretrained(model_dir)
    except OSError:
        gen = GenerationConfig.from_model_config(AutoConfig.from_pretrained(model_dir))
    eos = gen.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return ids | {tokenizer.eos_token_id}


def lora_requests(adapters: list[str]) -> list[tuple[str, int, str]]:
    """vllm LoRARequest arguments (name, id, path) per adapter slot: ids count from 1 (0 is
    vLLM's "no adapter"), names are unique per slot."""
    return [(f"{ADAPTER_NAME}-{i}", i + 1, path) for i, path in enumerate(adapters)]


def completion_of(output, cut_with=None) -> Completion:
    """(text, token ids, per-token log-probabilities) of a vllm CompletionOutput; `cut_with`
    (a tokenizer) cuts it where the stop rule would have ended it (generate.vllm_stop=truncate)."""
    ids = list(output.token_ids)
    lps = None if output.logprobs is None else [pos[t].logprob for t, pos in zip(ids, output.logprobs)]
    keep = stop_length(cut_with, ids) if cut_with is not None else None
    if keep is None:
        return output.text, ids, lps
    return cut_with.decode(ids[:keep], skip_special_tokens=True), ids[:keep], None if lps is None else lps[:keep]


class VLLMGenerator:
    """A vLLM replica: prompts in, SQL out (Ray Data callable class or plain object).

    cfg_dict, adapter: as for SQLGenerator (one adapter dir or several). gpu_share: the fraction
    of each of its GPUs this replica holds (0.5 when two replicas share one), which scales its
    memory budget.
    """

    engine = "vllm"

    def __init__(self, cfg_dict: dict[str, Any], adapter: str | None = None, gpu_share: float = 1.0):
        t0 = time.perf_counter()
        for key, value in vllm_environment(importlib.util.find_spec("flashinfer") is not None).items():
            os.environ.setdefault(key, value)
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest

        from sqltrain.model.loading import load_tokenizer, resolve_model_source

        t1 = time.perf_counter()
        self.cfg = config_from_dict(cfg_dict)
        resolved = resolve_model_source(self.cfg.model)
        self.tokenizer = load_tokenizer(self.cfg.model)
        self.stop_ids = model_stop_ids(resolved.path, self.tokenizer)
        self.adapters = adapter_list(adapter)
        rank = max(adapter_rank(a) for a in self.adapters) if self.adapters else None
        t2 = time.perf_counter()
        self.llm = LLM(**llm_kwargs(self.cfg.generate, resolved.path, resolved.tokenizer, rank, gpu_share,
                                    adapters=len(self.adapters)))
        # where a replica's start goes (the stage's load_seconds is their sum, plus the actor's own start)
        print(f"[sqltrain] vllm replica start: import {t1 - t0:.1f} s, model source + tokenizer {t2 - t1:.1f} s, "
              f"engine {time.perf_counter() - t2:.1f} s", flush=True)
        self.params = SamplingParams(**sampling_kwargs(self.cfg.generate, self.stop_ids, self.tokenizer.eos_token_id))
        self.loras = [LoRARequest(*request) for request in lora_requests(self.adapters)]

    def completions(self, prompts: list[str], slots: list[int] | None = None) -> tuple[list[list[Completion]], list[int]]:
        """Per prompt: its num_candidates completions, and the new tokens generated for it;
        `slots`: each prompt's adapter (vLLM mixes adapters within a batch)."""
        loras = [self.loras[s] for s in slots or [0] * len(prompts)] if self.loras else None
        outs = self.llm.generate(prompt_inputs(self.tokenizer, prompts), self.params, use_tqdm=False,
                                 lora_request=loras)
        cut_with = self.tokenizer if self.cfg.generate.vllm_stop == "truncate" else None
        per_prompt = [[completion_of(o, cut_with) for o in sorted(r.outputs, key=lambda o: o.index)] for r in outs]
        decoded = [sum(len(o.token_ids) for o in r.outputs) for r in outs]  # the work done, cut or not
        return per_prompt, decoded

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Ray Data batch (columns index, id, db_id, prompt, ...) -> predictions columns."""
        per_prompt, counts = self.completions([str(p) for p in batch["prompt"]], row_slots(batch, self.adapters))
        stop = self.stop_ids | {self.tokenizer.pad_token_id}
        return prediction_columns(batch, [candidates(c, stop) for c in per_prompt], counts)
