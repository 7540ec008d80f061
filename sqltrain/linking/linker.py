"""Schema linking: rank tables and columns for a question and prune the schema to a budget.

Evidence is lexical and value based:
- the question's content words (light stemming, joined bigrams so "high schooler" meets
  "Highschooler", comparatives such as "oldest" -> age) against table and column names,
  original and natural; words that name things in many tables ("name", "id") count less;
- question n-grams found among the database's text values (`ValueIndex.match`); matched
  values are shown to the model whenever their column is.

Pruning happens only when the whole schema exceeds the token budget. It then adds, in this
order and while they fit:
1. each table with evidence, best first, with its primary key and evidence columns
   (their sample values too), joined to the tables already kept by its shortest
   foreign-key path (path tables, and the FK columns between kept tables, come along);
   when the path does not fit, the table alone;
2. the other columns of kept tables, best table first, in schema order, without samples;
3. further tables, best first, joined the same way, with the columns that fit (even a
   table reduced to its keys shows the join path);
4. the sample values of the shown columns that lack them.
Everything is deterministic: ties break by schema order.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sqltrain.linking.serialize import SchemaRenderer, full_selection, ident, matched_text
from sqltrain.linking.value_index import ValueIndex, sql_literal
from sqltrain.linking.words import content_stems, implied_stems, name_words, words
from sqltrain.spider.schema import Schema, Table

TokenCounter = Callable[[list[str]], list[int]]
"""Token counts of a batch of texts (a tokenizer without special tokens)."""

MAX_MATCHED_VALUES = 3
"""Matched values shown per column."""
EVIDENCE = 0.5
"""Column score from which a column counts as mentioned by the question."""
VALUE_MATCH = 1.5
"""Score a value match adds to its column (and so to its table)."""
TABLE_NAME_WEIGHT = 2.0
"""A table named in the question outranks one whose column is."""


@dataclass(frozen=True)
class LinkResult:
    schema_text: str
    selection: dict[str, frozenset[str]]
    """table -> shown columns (every table and column when not pruned)."""
    matches: dict[tuple[str, str], list[str]]
    """(table, column) -> matched values (SQL literals) shown to the model."""
    pruned: bool
    tokens: int
    """Tokens of schema_text, summed over its pieces (a close estimate: the prompt's exact
    length is measured where it matters, on the rendered prompt)."""
    full_tokens: int
    """Tokens of the whole schema with the same matched values (estimated the same way)."""


@dataclass(frozen=True)
class _Costs:
    head: dict[str, int]
    column: dict[tuple[str, str], int]
    """A column without its sample values."""
    samples: dict[tuple[str, str], int]
    """What the sample-value comment adds to a column (0 in the compact format)."""
    fk: dict[tuple[str, str], int]
    """(table, column) of the referencing side -> tokens of the FK mark or line."""


class _Builder:
    """A selection under construction with its running token cost."""

    def __init__(self, linker: "SchemaLinker", match_cost: dict[tuple[str, str], int]):
        self.linker, self.match_cost = linker, match_cost
        self.shown: dict[str, set[str]] = {}
        self.annotated: set[tuple[str, str]] = set()
        self.cost = 0

    def copy(self) -> "_Builder":
        other = _Builder(self.linker, self.match_cost)
        other.shown = {t: set(cs) for t, cs in self.shown.items()}
        other.annotated = set(self.annotated)
        other.cost = self.cost
        return other

    def add_table(self, table: str) -> None:
        if table not in self.shown:
            self.shown[table] = set()
            self.cost += self.linker.costs.head[table]
            for pk in self.linker.tables[table].primary_keys:
                self.add_column(table, pk)

    def add_column(self, table: str, column: str) -> None:
        self.add_table(table)
        if column in self.shown[table]:
            return
        self.shown[table].add(column)
        key = (table, column)
        self.cost += self.linker.costs.column[key] + self.match_cost.get(key, 0)
        for fk in self.linker.fks_of.get(key, ()):
            ref = (fk.table, fk.column)
            other = (fk.ref_table, fk.ref_column) if ref == key else ref
            if other[1] in self.shown.get(other[0], ()):
                self.cost += self.linker.costs.fk[ref]

    def annotate(self, table: str, column: str) -> None:
        self.add_column(table, column)
        if (table, column) not in self.annotated:
            self.annotated.add((table, column))
            self.cost += self.linker.costs.samples[(table, column)]

    def join(self, table: str) -> None:
        """Add `table`, the FK path joining it to the kept tables, and the FK columns of both."""
        path = self.linker.fk_path(table, set(self.shown)) if self.shown else [table]
        for t in path:
            self.add_table(t)
        for t in path:
            for n in self.linker.neighbors[t]:
                if n in self.shown:
                    for fk in self.linker.fk_edges[(t, n)]:
                        self.add_column(fk.table, fk.column)
                        self.add_column(fk.ref_table, fk.ref_column)

    def try_add(self, step: Callable[["_Builder"], None], budget: int) -> "_Builder | None":
        trial = self.copy()
        step(trial)
        return trial if trial.cost <= budget else None


def _joined_bigrams(tokens: list[str]) -> set[str]:
    return {a + b for a, b in zip(tokens, tokens[1:])}


class SchemaLinker:
    """Links questions to one database; build once per (database, format, tokenizer)."""

    def __init__(self, schema: Schema, index: ValueIndex | None, fmt: str, count_tokens: TokenCounter):
        self.schema, self.index, self.fmt, self.count = schema, index, fmt, count_tokens
        self.tables: dict[str, Table] = {t.name: t for t in schema.tables}
        self.position = {t.name: i for i, t in enumerate(schema.tables)}
        self.renderer = SchemaRenderer(schema, fmt, index)
        self._index_names()
        self._index_fks()
        self.costs = self._measure_costs()
        self.base_tokens = count_tokens([self.renderer.render()])[0]
        # Pieces tokenized apart cost a little more than the joined text (merges across
        # newlines); scale piece sums to the whole schema's exact count.
        whole = sum(self.costs.head.values()) + sum(self.costs.column.values()) + sum(self.costs.samples.values())
        whole += sum(self.costs.fk.values())
        self.scale = self.base_tokens / whole if whole else 1.0
        self._text_costs: dict[str, int] = {}  # match comments seen before (questions repeat values)

    def _index_names(self) -> None:
        def stems(name: str, natural: str) -> frozenset[str]:
            return frozenset(content_stems(name_words(name)) | content_stems(words(natural)))

        self.table_stems = {t.name: stems(t.name, t.natural_name) for t in self.schema.tables}
        self.column_stems = {(t.name, c.name): stems(c.name, c.natural_name) for t in self.schema.tables for c in t.columns}
        spread: dict[str, set[str]] = {}
        for (t, _), st in self.column_stems.items():
            for s in st | self.table_stems[t]:
                spread.setdefault(s, set()).add(t)
        # A word that names things in many tables says little about which table is meant.
        self.weight = {s: 1.0 / len(ts) ** 0.5 for s, ts in spread.items()}

    def _index_fks(self) -> None:
        self.fks_of: dict[tuple[str, str], list] = {}
        self.fk_edges: dict[tuple[str, str], list] = {}
        for fk in self.schema.foreign_keys:
            if fk.table not in self.tables or fk.ref_table not in self.tables:
                continue
            self.fks_of.setdefault((fk.table, fk.column), []).append(fk)
            self.fks_of.setdefault((fk.ref_table, fk.ref_column), []).append(fk)
            if fk.table == fk.ref_table:
                continue  # a self-reference joins nothing new
            self.fk_edges.setdefault((fk.table, fk.ref_table), []).append(fk)
            self.fk_edges.setdefault((fk.ref_table, fk.table), []).append(fk)
        self.neighbors: dict[str, list[str]] = {t: [] for t in self.tables}
        for a, b in self.fk_edges:
            self.neighbors[a].append(b)
        for t in self.neighbors:
            self.neighbors[t].sort(key=self.position.__getitem__)

    def _measure_costs(self) -> _Costs:
        r, ddl = self.renderer, self.fmt == "ddl"
        texts: dict[str, dict] = {"head": {}, "column": {}, "samples": {}, "fk": {}}
        for t in self.schema.tables:
            texts["head"][t.name] = f"CREATE TABLE {ident(t.name)} (\n);\n\n" if ddl else f"{ident(t.name)}()\n"
            for c in t.columns:
                key = (t.name, c.name)
                texts["column"][key] = f"  {r.definition[key]},\n" if ddl else r.definition[key] + ", "
                comment = r.comment(key, []) if ddl else ""
                texts["samples"][key] = f" -- {comment}" if comment else ""
        for table, fks in r.fks.items():
            for col, ref_t, ref_c in fks:
                texts["fk"][(table, col)] = f"  {r.fk_text(col, ref_t, ref_c)},\n" if ddl else r.fk_text(col, ref_t, ref_c)
        flat = [text for part in texts.values() for text in part.values()]
        counts = iter(self.count(flat) if flat else [])
        return _Costs(**{name: {k: next(counts) for k in part} for name, part in texts.items()})

    def fk_path(self, table: str, kept: set[str]) -> list[str]:
        """Shortest FK path from a kept table to `table` (just [table] when adjacent or unreachable)."""
        if table in kept or any(n in kept for n in self.neighbors[table]):
            return [table]
        prev: dict[str, str | None] = {table: None}
        queue = deque([table])
        while queue:
            cur = queue.popleft()
            for n in self.neighbors[cur]:
                if n in prev:
                    continue
                prev[n] = cur
                if n in kept:
                    path = [n]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    return path
                queue.append(n)
        return [table]

    # -- scoring --------------------------------------------------------------------------
    def _overlap(self, stems: frozenset[str], question: set[str]) -> float:
        if not stems:
            return 0.0
        # fsum: exact, so the set's (hash-seeded) iteration order cannot change a score or a tie.
        hit = math.fsum(self.weight.get(s, 1.0) for s in stems & question)
        return hit / math.fsum(self.weight.get(s, 1.0) for s in stems)

    def matched_values(self, question: str) -> dict[tuple[str, str], list[str]]:
        """(table, column) -> database values the question spells out, as SQL literals."""
        matches: dict[tuple[str, str], list[str]] = {}
        for m in self.index.match(question) if self.index else ():
            shown = matches.setdefault((m.table, m.column), [])
            lit = sql_literal(m.value)
            if len(shown) < MAX_MATCHED_VALUES and lit not in shown:
                shown.append(lit)
        return matches

    def score(self, question: str, matches: dict[tuple[str, str], list[str]]):
        """(table scores, column scores) for a question and its value matches."""
        toks = words(question)
        q = content_stems(toks) | _joined_bigrams(toks) | implied_stems(toks)
        col_scores = {k: self._overlap(st, q) + (VALUE_MATCH if k in matches else 0.0) for k, st in self.column_stems.items()}
        table_scores = {
            t.name: TABLE_NAME_WEIGHT * self._overlap(self.table_stems[t.name], q)
            + max((col_scores[(t.name, c.name)] for c in t.columns), default=0.0)
            for t in self.schema.tables
        }
        return table_scores, col_scores

    def match_costs(self, matches: dict[tuple[str, str], list[str]]) -> dict[tuple[str, str], int]:
        """Extra tokens the matched values add to their columns."""
        texts = {k: matched_text(self.fmt, v) + ("; " if self.fmt == "ddl" else "") for k, v in matches.items()}
        missing = [t for t in texts.values() if t not in self._text_costs]
        if missing:
            self._text_costs.update(zip(missing, self.count(missing)))
        return {k: self._text_costs[t] for k, t in texts.items()}

    # -- selection ------------------------------------------------------------------------
    def select(self, table_scores: dict[str, float], col_scores: dict[tuple[str, str], float],
               match_cost: dict[tuple[str, str], int], budget: int) -> _Builder:
        """Steps 1-4 of the module docstring."""
        ranked = sorted(self.tables, key=lambda t: (-table_scores[t], self.position[t]))
        rank = {t: i for i, t in enumerate(ranked)}
        b = _Builder(self, match_cost)
        evidence = [(t, c.name) for t in ranked for c in self.tables[t].columns if col_scores[(t, c.name)] >= EVIDENCE]
        for t in (t for t in ranked if table_scores[t] > 0):
            b = self._try_core(b, t, [c for tt, c in evidence if tt == t], budget)
        if not b.shown:
            b.add_table(ranked[0])  # the best guess, even over budget: length management decides
        for t in sorted(b.shown, key=rank.__getitem__):
            self._fill(b, t, budget)
        for t in (t for t in ranked if t not in b.shown):
            b = b.try_add(lambda tr, t=t: tr.join(t), budget) or b
            if t in b.shown:
                self._fill(b, t, budget)
        others = [(t, c.name) for t in sorted(b.shown, key=rank.__getitem__) for c in self.tables[t].columns]
        for t, c in evidence + others:
            if c in b.shown.get(t, ()) and (t, c) not in b.annotated and b.cost + self.costs.samples[(t, c)] <= budget:
                b.annotate(t, c)
        return b

    def _try_core(self, b: _Builder, table: str, evidence: list[str], budget: int) -> _Builder:
        """b plus the table, its key and evidence columns: joined by its FK path, else alone."""
        for connect in (True, False):
            trial = b.copy()
            trial.join(table) if connect else trial.add_table(table)
            for c in evidence:
                trial.add_column(table, c)
            if trial.cost <= budget:
                return trial
        return b

    def _fill(self, b: _Builder, table: str, budget: int) -> None:
        """Add the table's other columns (no samples) while they fit."""
        for c in self.tables[table].columns:
            if c.name in b.shown[table]:
                continue
            before = b.cost
            b.add_column(table, c.name)
            if b.cost > budget:  # undo; a lone column has no dependants
                b.shown[table].discard(c.name)
                b.cost = before

    def link(self, question: str, budget: int | None) -> LinkResult:
        """Link `question`; prune the schema to `budget` tokens unless it fits (None = never)."""
        matches = self.matched_values(question)
        match_cost = self.match_costs(matches)
        full = self.base_tokens + sum(match_cost.values())
        if budget is None or full <= budget:
            text = self.renderer.render(None, matches)
            return LinkResult(text, _freeze(full_selection(self.schema)), matches, False, full, full)
        table_scores, col_scores = self.score(question, matches)
        b = self.select(table_scores, col_scores, match_cost, int(budget / self.scale))
        shown_matches = {k: v for k, v in matches.items() if k[1] in b.shown.get(k[0], ())}
        text = self.renderer.render(b.shown, shown_matches, b.annotated)
        return LinkResult(text, _freeze(b.shown), shown_matches, True, round(b.cost * self.scale), full)


def _freeze(selection: dict[str, set[str]]) -> dict[str, frozenset[str]]:
    return {t: frozenset(cs) for t, cs in selection.items()}
