"""vLLM logits processor that ends a sequence when its SQL has ended (imported by vLLM only).

vLLM builds it once per worker (`LLM(logits_processors=[...])`, see vllm_engine.STOP_PROCESSOR)
and calls update_state with each batch change, then apply before sampling each step. The
decision is `SQLStopTracker`'s (generate/stopping.py); this adapter translates vLLM's batch
updates for it and makes end-of-sequence the only possible next token of finished rows.
It acts only on requests whose SamplingParams.extra_args name their EOS id (STOP_KEY).
"""

from __future__ import annotations

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from sqltrain.generate.stopping import SQLStopTracker
from sqltrain.generate.vllm_engine import STOP_KEY


class SQLStopLogitsProcessor(LogitsProcessor):
    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(vllm_config.model_config.tokenizer)
        self.tracker = SQLStopTracker(tokenizer)
        self.device = device

    def is_argmax_invariant(self) -> bool:
        return False  # it changes greedy choices: that is its job

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        added = [(row, out_ids if STOP_KEY in (params.extra_args or {}) else None,
                  (params.extra_args or {}).get(STOP_KEY))
                 for row, params, _prompt_ids, out_ids in batch_update.added]
        moved = [(a, b, d == MoveDirectionality.SWAP) for a, b, d in batch_update.moved]
        self.tracker.update(added=added, removed=batch_update.removed, moved=moved)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        # Checked here, not in update_state: with async scheduling the last sampled ids are
        # filled into the output lists only just before sampling.
        done = self.tracker.finished()
        if done:
            rows = torch.tensor([r for r, _ in done], device=logits.device)
            eos = torch.tensor([e for _, e in done], device=logits.device)
            logits[rows] = float("-inf")
            logits[rows, eos] = 0.0
        return logits
