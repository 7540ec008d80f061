"""One example -> linked schema -> prompt -> token ids, with length management.

`RecordBuilder` holds what is expensive to make and shared by the examples of one process:
the tokenizer, the benchmark's schemas, and one `SchemaLinker` (value index + token costs)
per database. Training records and generation prompts both come from `RecordBuilder.prompt`.

Length management: the SQL target is never truncated. When prompt + target exceed
``prompt.max_seq_len`` the schema is pruned harder (a smaller budget, even with
``linking.prune`` off); when even that cannot make it fit the example is dropped and counted
by reason: ``sql_too_long`` (the target does not fit beside an empty schema) or
``schema_too_long`` (no pruning fits), ``unparsable_sql`` (sqlglot cannot parse the gold SQL).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from sqltrain.config import Config
from sqltrain.linking.gold import GoldParseError, gold_references
from sqltrain.linking.linker import LinkResult, SchemaLinker
from sqltrain.linking.value_index import load_value_index
from sqltrain.prep.explain import explain_sql
from sqltrain.prep.prompts import build_messages, normalize_sql, render_prompt, target_ids
from sqltrain.spider.benchmark import Example, SpiderBenchmark

IGNORE_INDEX = -100
MAX_FIT_ATTEMPTS = 4
"""Harder prunings tried before an example is dropped as too long."""
FIT_SLACK = 8
"""Extra tokens taken off the budget per attempt (the budget prices the schema text alone; inside
the rendered prompt its first and last tokens can merge with the template's)."""
MAX_LINKERS = 256
"""Databases whose linker a process keeps (bounded memory on big benchmarks)."""


@dataclass
class Record:
    """A prepared example, or a dropped one (`dropped` names the reason)."""

    id: str
    db_id: str
    hardness: str
    question: str
    sql: str
    dropped: str | None = None
    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    schema_text: str = ""
    explanation: str = ""
    pruned: bool = False
    pruned_for_length: bool = False
    schema_tokens: int = 0
    full_schema_tokens: int = 0
    gold_tables: int = 0
    kept_tables: int = 0
    gold_columns: int = 0
    kept_columns: int = 0


def alpaca_record(schema_text: str, question: str, sql: str, explanation: str) -> dict:
    """The seed projects' record shape: instruction = schema, input = question, output = SQL."""
    return {"instruction": schema_text, "input": question, "output": sql, "explanation": explanation}


class RecordBuilder:
    def __init__(self, cfg: Config, bench: SpiderBenchmark, tokenizer):
        self.cfg, self.bench, self.tokenizer = cfg, bench, tokenizer
        self._linkers: OrderedDict[str, SchemaLinker] = OrderedDict()

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def linker(self, db_id: str) -> SchemaLinker:
        if db_id in self._linkers:
            self._linkers.move_to_end(db_id)
            return self._linkers[db_id]
        lk = self.cfg.linking
        schema = self.bench.schemas[db_id]
        index = load_value_index(self.bench.db_path(db_id), schema, lk.max_values_per_column, lk.sample_values, lk.cache_dir)
        self._linkers[db_id] = SchemaLinker(schema, index, lk.format, self.count_tokens)
        if len(self._linkers) > MAX_LINKERS:
            self._linkers.popitem(last=False)
        return self._linkers[db_id]

    def default_budget(self) -> int | None:
        return self.cfg.linking.token_budget if self.cfg.linking.prune else None

    def prompt(self, example: Example, budget: int | None) -> tuple[str, list[int], LinkResult]:
        """(prompt text, its token ids, the link) with the schema pruned to `budget`."""
        link = self.linker(example.db_id).link(example.question, budget)
        text = render_prompt(self.tokenizer, build_messages(link.schema_text, example.question, self.cfg.prompt))
        return text, list(self.tokenizer(text, add_special_tokens=False)["input_ids"]), link

    def fit(self, example: Example, room: int) -> tuple[str, list[int], LinkResult, bool] | str:
        """The prompt pruned until it takes at most `room` tokens, or the reason it cannot."""
        budget = self.default_budget()
        for attempt in range(MAX_FIT_ATTEMPTS):
            text, ids, link = self.prompt(example, budget)
            over = len(ids) - room
            if over <= 0:
                return text, ids, link, attempt > 0
            if len(ids) - link.tokens > room:
                return "sql_too_long"  # an empty schema would not fit either
            budget = link.tokens - over - FIT_SLACK * (attempt + 1)
            if budget <= 0:
                break
        return "schema_too_long"

    def record(self, example: Example) -> Record:
        """The training record of one example (or why it was dropped)."""
        try:
            hardness, explanation = example.hardness, explain_sql(example.query)
            gold_tables, gold_columns = gold_references(example.query, self.bench.schemas[example.db_id])
        except (ValueError, GoldParseError):
            return Record(example.id, example.db_id, "unknown", example.question, example.query, dropped="unparsable_sql")
        sql = normalize_sql(example.query)
        rec = Record(example.id, example.db_id, hardness, example.question, sql, explanation=explanation)
        target = target_ids(self.tokenizer, example.query)
        fitted = self.fit(example, self.cfg.prompt.max_seq_len - len(target))
        if isinstance(fitted, str):
            rec.dropped = fitted
            return rec
        _, ids, link, rec.pruned_for_length = fitted
        rec.input_ids = ids + target
        rec.labels = [IGNORE_INDEX] * len(ids) + target
        rec.schema_text, rec.pruned = link.schema_text, link.pruned
        rec.schema_tokens, rec.full_schema_tokens = link.tokens, link.full_tokens
        rec.gold_tables, rec.kept_tables = len(gold_tables), sum(t in link.selection for t in gold_tables)
        rec.gold_columns = len(gold_columns)
        rec.kept_columns = sum(c in link.selection.get(t, ()) for t, c in gold_columns)
        return rec

    def generation_prompt(self, example: Example) -> tuple[str, dict]:
        """The generation prompt of one example (schema linked, serialized, chat-rendered).

        The same linking and rendering as the training records; the schema is pruned harder
        only if the prompt alone exceeds ``prompt.max_seq_len``. `info` carries the prompt's
        token count and what linking kept.
        """
        fitted = self.fit(example, self.cfg.prompt.max_seq_len)
        if isinstance(fitted, str):  # cannot fit: give the smallest prompt linking can make
            text, ids, link = self.prompt(example, 1)
            pruned_for_length = True
        else:
            text, ids, link, pruned_for_length = fitted
        info = {
            "prompt_tokens": len(ids),
            "pruned": link.pruned,
            "pruned_for_length": pruned_for_length,
            "schema_tokens": link.tokens,
            "full_schema_tokens": link.full_tokens,
            "tables": sorted(link.selection),
            "matched_values": {f"{t}.{c}": v for (t, c), v in link.matches.items()},
        }
        return text, info
