"""Engine outputs -> prediction columns, the same for every engine.

An engine hands back, per prompt, its completions in order: (text, token ids, per-token
log-probabilities or None). A prediction's `sql`/`raw` come from the first completion; with
several (generate.num_candidates > 1) the row also carries every one as a candidate
{sql, raw, logprob}, logprob being the sum of the answer tokens' log-probabilities under the
model's raw distribution (before temperature/top-p), the end-of-sequence token excluded:
that token may have been forced by the stop rule, so its probability says nothing about
the answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqltrain.generate.extract import extract_sql

Completion = tuple[str, Sequence[int], Sequence[float] | None]
"""(text, token ids, per-token log-probabilities or None)."""

SLOT = "adapter_slot"
"""Row column naming which of a replica's adapters generates for the row (several adapters in
one pass: the driver's `run_generate_adapters`); absent when the replica has one or none."""


def adapter_list(adapter: str | Sequence[str] | None) -> list[str]:
    """An engine's adapters: none, one dir, or several (slot i = the i-th)."""
    if adapter is None:
        return []
    return [adapter] if isinstance(adapter, str) else [str(a) for a in adapter]


def row_slots(batch: dict[str, Any], adapters: Sequence[str]) -> list[int]:
    """Each row's adapter slot (0 for every row unless the batch names them)."""
    n = len(batch["prompt"])
    if SLOT not in batch:
        return [0] * n
    slots = [int(s) for s in batch[SLOT]]
    bad = [s for s in slots if not 0 <= s < max(1, len(adapters))]
    if bad:
        raise ValueError(f"adapter slot {bad[0]} out of range: the replica holds {len(adapters)} adapter(s)")
    return slots


def answer_logprob(token_ids: Sequence[int], token_logprobs: Sequence[float], stop_ids: Iterable[int]) -> float:
    """Sum of the log-probabilities of the tokens before the first stop (EOS/pad) token."""
    stop = set(stop_ids)
    total = 0.0
    for tok, lp in zip(token_ids, token_logprobs, strict=True):
        if tok in stop:
            break
        total += float(lp)
    return total


def candidates(completions: Sequence[Completion], stop_ids: Iterable[int]) -> list[dict[str, Any]]:
    """One {sql, raw, logprob} per completion, in the engine's order."""
    stop = set(stop_ids)
    return [
        {"sql": extract_sql(text), "raw": text,
         "logprob": None if lps is None else round(answer_logprob(ids, lps, stop), 4)}
        for text, ids, lps in completions
    ]


def prediction_columns(batch: dict[str, Any], per_prompt: Sequence[list[dict[str, Any]]],
                       new_tokens: Sequence[int]) -> dict[str, Any]:
    """Ray Data output columns for a batch: ids, the first candidate's sql/raw, token counts,
    and the `candidates` column when there is more than one per prompt."""
    out = {
        "index": batch["index"], "id": batch["id"], "db_id": batch["db_id"],
        "sql": [c[0]["sql"] for c in per_prompt], "raw": [c[0]["raw"] for c in per_prompt],
        "prompt_tokens": batch["prompt_tokens"], "new_tokens": list(new_tokens),
    }
    if any(len(c) > 1 for c in per_prompt):
        out["candidates"] = list(per_prompt)
    if SLOT in batch:
        out[SLOT] = batch[SLOT]
    return out
