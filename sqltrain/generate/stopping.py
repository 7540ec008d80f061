"""Stop a sequence once its text holds a finished answer, for engines without Python stopping criteria.

The hf engine asks `sql_complete` after every token that can end an answer (a transformers
StoppingCriteria). vLLM has no such hook, and no stop string is safe: ';' also occurs inside
string literals, a model may open with "```sql" or with "Here is the query:\\n\\n". So the vLLM
engine runs a logits processor (generate/vllm_logits.py) that, before each step, asks the same
question of each running sequence and forces end-of-sequence on those that are done: the text
then ends at the same token as on the hf engine. `SQLStopTracker` is that processor's logic on
plain values (batch rows, growing token-id lists), so it is tested without vLLM.
With generate.vllm_stop=truncate the same rule is applied after decoding instead
(`stop_length`): vLLM decodes without the processor and each output is cut where it would have
stopped, which gives the same text (the tokens before the cut do not depend on it).
"""

from __future__ import annotations

from functools import lru_cache

from sqltrain.generate.extract import sql_complete

# Characters that can end an answer; only tokens containing one trigger the (costly) text check.
END_CHARS = (";", "`", "\n")


@lru_cache(maxsize=4)
def ending_token_ids(tokenizer) -> frozenset[int]:
    """Token ids whose text contains a character that can end an answer."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return frozenset(i for i, t in enumerate(texts) if any(c in t for c in END_CHARS))


class SQLStopTracker:
    """Which rows of a running batch hold a finished answer, and the token each must end with.

    Rows are batch positions (as vLLM numbers them); each tracked row keeps a reference to its
    request's output token ids, a list the engine appends to (-1 marks a token not yet known).
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ending = ending_token_ids(tokenizer)
        self.rows: dict[int, tuple[list[int], int]] = {}  # row -> (output ids, end-of-sequence id)
        self.checked: dict[int, int] = {}  # row -> output length when last found unfinished

    def update(self, added=(), removed=(), moved=()) -> None:
        """Apply a batch change, in the engine's order: removed, then added, then moved.

        added: (row, output_ids or None when the request is not ours, eos_id);
        moved: (from_row, to_row, swap) where swap=False is a one-way move."""
        for row in removed:
            self._pop(row)
        for row, output_ids, eos_id in added:
            self._pop(row)
            if output_ids is not None:
                self.rows[row] = (output_ids, eos_id)
        for a, b, swap in moved:
            entry_a, entry_b = self._pop(a), self._pop(b)
            if entry_a is not None:
                self.rows[b] = entry_a
            if swap and entry_b is not None:
                self.rows[a] = entry_b

    def _pop(self, row: int):
        self.checked.pop(row, None)
        return self.rows.pop(row, None)

    def finished(self) -> list[tuple[int, int]]:
        """(row, eos_id) for every row whose text so far is a finished answer."""
        done = []
        for row, (ids, eos_id) in self.rows.items():
            n = len(ids)
            if not n or ids[-1] not in self.ending or self.checked.get(row) == n:
                continue
            if sql_complete(self.tokenizer.decode(ids, skip_special_tokens=True)):
                done.append((row, eos_id))
            else:
                self.checked[row] = n
        return done


def stop_length(tokenizer, ids: list[int], ending: frozenset[int] | None = None) -> int | None:
    """How many of a finished output's tokens the tracker would have let through: the shortest
    prefix that ends in an ending token and whose text is a finished answer; None if none is."""
    ending = ending_token_ids(tokenizer) if ending is None else ending
    for n, token in enumerate(ids, start=1):
        if token in ending and sql_complete(tokenizer.decode(ids[:n], skip_special_tokens=True)):
            return n
    return None
