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

Costs are the renderer's own pieces (sqltrain.linking.serialize): a selection costs the sum of
the token counts of exactly the pieces its text is joined from, so the budget prices the text
that is rendered, with no layout typed out twice.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sqltrain.linking.serialize import LINE_BREAKS, SchemaRenderer, full_selection
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
MAX_BODY_STATES = 20_000
"""Table states whose price a linker remembers (bounded memory; then it starts afresh)."""


@dataclass(frozen=True)
class LinkResult:
    schema_text: str
    selection: dict[str, frozenset[str]]
    """table -> shown columns (every table and column when not pruned)."""
    matches: dict[tuple[str, str], list[str]]
    """(table, column) -> matched values (SQL literals) shown to the model."""
    pruned: bool
    tokens: int
    """Tokens of schema_text: the sum over the pieces it is joined from, what the budget
    bounds (a tokenizer that merges across a piece boundary counts the joined text a token or
    so lower; the prompt's exact length is measured where it matters, on the rendered prompt)."""
    full_tokens: int
    """Tokens of the whole schema with the same matched values (counted the same way)."""
    pieces: tuple[str, ...] = ()
    """The renderer's pieces that schema_text is joined from (what `tokens` sums)."""


class _Builder:
    """A selection under construction; its cost is the priced pieces of the text it renders."""

    def __init__(self, linker: "SchemaLinker", matches: dict[tuple[str, str], list[str]]):
        self.linker, self.matches = linker, matches
        self.shown: dict[str, set[str]] = {}
        self.annotated: set[tuple[str, str]] = set()
        self._body: dict[str, int] = {}  # table -> tokens of its body pieces, while not stale
        self._stale: set[str] = set()
        self._bodies = self._heads = 0  # sums over the shown tables (heads as if none were first)
        self._first: str | None = None  # the first shown table in schema order: its head has no separator
        self._mask: dict[str, int] = {}  # table -> bits of its shown columns
        self._amask: dict[str, int] = {}  # table -> bits of its annotated columns
        self._matched = linker.matched_by_table(matches)

    def copy(self) -> "_Builder":
        other = _Builder.__new__(_Builder)
        other.linker, other.matches, other._matched = self.linker, self.matches, self._matched
        other.shown = {t: set(cs) for t, cs in self.shown.items()}
        other.annotated = set(self.annotated)
        other._body, other._stale = dict(self._body), set(self._stale)
        other._bodies, other._heads, other._first = self._bodies, self._heads, self._first
        other._mask, other._amask = dict(self._mask), dict(self._amask)
        return other

    def _state(self, table: str) -> tuple:
        """What the table's body text depends on (see SchemaLinker.body_price)."""
        mask, bit = self._mask, self.linker.bit
        fks = tuple(bool(mask[table] & bit[table, c]) and rt in mask and bool(mask[rt] & bit[rt, rc])
                    for c, rt, rc in self.linker.renderer.fks[table])
        matched = tuple((c, v) for c, b, v in self._matched.get(table, ()) if mask[table] & b)
        return table, mask[table], self._amask.get(table, 0), fks, matched

    @property
    def cost(self) -> int:
        """Tokens of the selection's text: each shown table's head and body pieces."""
        lk = self.linker
        for t in self._stale:
            if t in self.shown:
                body = lk.body_price(self._state(t), self.shown, self.matches, self.annotated)
                self._bodies += body - self._body.get(t, 0)
                self._body[t] = body
        self._stale.clear()
        if self._first is None:
            return 0
        return self._bodies + self._heads + lk.head_price(self._first, True) - lk.head_price(self._first, False)

    def _changed(self, table: str, column: str) -> None:
        # A foreign key's line (or mark) lives in its referencing table and shows when both ends do.
        self._stale.add(table)
        self._stale.update(fk.table for fk in self.linker.fks_of.get((table, column), ()))

    def add_table(self, table: str) -> None:
        if table not in self.shown:
            self.shown[table] = set()
            self._mask[table] = 0
            self._stale.add(table)
            self._heads += self.linker.head_price(table, False)
            if self._first is None or self.linker.position[table] < self.linker.position[self._first]:
                self._first = table
            for pk in self.linker.tables[table].primary_keys:
                self.add_column(table, pk)

    def add_column(self, table: str, column: str) -> None:
        self.add_table(table)
        if column not in self.shown[table]:
            self.shown[table].add(column)
            self._mask[table] |= self.linker.bit[table, column]
            self._changed(table, column)

    def remove_column(self, table: str, column: str) -> None:
        self.shown[table].discard(column)
        self._mask[table] &= ~self.linker.bit[table, column]
        self._changed(table, column)

    def annotate(self, table: str, column: str) -> None:
        self.add_column(table, column)
        if (table, column) not in self.annotated:
            self.annotated.add((table, column))
            self._amask[table] = self._amask.get(table, 0) | self.linker.bit[table, column]
            self._stale.add(table)

    def unannotate(self, table: str, column: str) -> None:
        self.annotated.discard((table, column))
        self._amask[table] &= ~self.linker.bit[table, column]
        self._stale.add(table)

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
        self._prices: dict[str, int] = {}  # piece text -> tokens (questions repeat pieces and values)
        self._head_prices: dict[tuple[str, bool], int] = {}
        self._body_prices: dict[tuple, int] = {}
        self._whole: _Builder | None = None  # the whole schema, priced once
        self.bit = {(t.name, c.name): 1 << i for t in schema.tables for i, c in enumerate(t.columns)}
        self.renderer = self._renderer(index)
        self._index_names()
        self._index_fks()

    def _renderer(self, index: ValueIndex | None) -> SchemaRenderer:
        """The renderer whose pieces this tokenizer counts as it counts their joined text: DDL
        line breaks are cut where its pre-tokenizer cuts them (measured on the whole schema)."""
        options = [SchemaRenderer(self.schema, self.fmt, index, b) for b in LINE_BREAKS]
        if self.fmt != "ddl":
            return options[0]
        exact = self.count([options[0].render()])[0]
        return min(options, key=lambda r: abs(self.price(r.pieces()) - exact))

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

    def head_price(self, table: str, first: bool) -> int:
        key = (table, first)
        if key not in self._head_prices:
            self._head_prices[key] = self.price([self.renderer.head(self.tables[table], first)])
        return self._head_prices[key]

    def matched_by_table(self, matches: dict[tuple[str, str], list[str]]) -> dict[str, tuple]:
        """table -> ((column, its bit, matched values), ...), for body states."""
        out: dict[str, list] = {}
        for (t, c), values in matches.items():
            out.setdefault(t, []).append((c, self.bit[t, c], tuple(values)))
        return {t: tuple(ms) for t, ms in out.items()}

    def body_price(self, state: tuple, shown: dict[str, set[str]], matches: dict[tuple[str, str], list[str]],
                   annotated: set[tuple[str, str]]) -> int:
        """Tokens of a table's body pieces under a selection, remembered by the state they depend
        on (table, bits of its shown and annotated columns, which of its foreign keys show, the
        matched values of its shown columns): questions on one database revisit the same states."""
        if state not in self._body_prices:
            if len(self._body_prices) >= MAX_BODY_STATES:
                self._body_prices.clear()
            table = self.tables[state[0]]
            self._body_prices[state] = self.price(self.renderer.body(table, shown, matches, annotated))
        return self._body_prices[state]

    def price(self, pieces: list[str]) -> int:
        """Tokens of the text joined from `pieces`: the sum of each piece's count (cached)."""
        new = [p for p in dict.fromkeys(pieces) if p not in self._prices]
        if new:
            self._prices.update(zip(new, self.count(new)))
        return sum(self._prices[p] for p in pieces)

    def _whole_price(self, matches: dict[tuple[str, str], list[str]]) -> int:
        """Tokens of the whole schema with these matched values: the whole schema's price without
        matches, re-priced in the tables that hold matched columns."""
        if self._whole is None:
            self._whole = self._everything({})
        b = self._whole.copy()
        b.matches, b._matched = matches, self.matched_by_table(matches)
        b._stale.update(t for t, _ in matches)
        return b.cost

    def _everything(self, matches: dict[tuple[str, str], list[str]]) -> _Builder:
        b = _Builder(self, matches)
        for t in self.schema.tables:
            b.add_table(t.name)
            for c in t.columns:
                b.annotate(t.name, c.name)
        b.cost  # noqa: B018 -- prices every table now
        return b

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

    # -- selection ------------------------------------------------------------------------
    def select(self, table_scores: dict[str, float], col_scores: dict[tuple[str, str], float],
               matches: dict[tuple[str, str], list[str]], budget: int) -> _Builder:
        """Steps 1-4 of the module docstring."""
        ranked = sorted(self.tables, key=lambda t: (-table_scores[t], self.position[t]))
        rank = {t: i for i, t in enumerate(ranked)}
        b = _Builder(self, matches)
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
            if c in b.shown.get(t, ()) and (t, c) not in b.annotated:
                b.annotate(t, c)
                if b.cost > budget:  # undo: samples change their own line only
                    b.unannotate(t, c)
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
            b.add_column(table, c.name)
            if b.cost > budget:  # undo; a lone column has no dependants
                b.remove_column(table, c.name)

    def link(self, question: str, budget: int | None) -> LinkResult:
        """Link `question`; prune the schema to `budget` tokens unless it fits (None = never)."""
        matches = self.matched_values(question)
        full = self._whole_price(matches)
        if budget is None or full <= budget:
            pieces = self.renderer.pieces(None, matches)
            return LinkResult("".join(pieces), _freeze(full_selection(self.schema)), matches, False, full, full,
                              tuple(pieces))
        table_scores, col_scores = self.score(question, matches)
        b = self.select(table_scores, col_scores, matches, budget)
        shown_matches = {k: v for k, v in matches.items() if k[1] in b.shown.get(k[0], ())}
        pieces = self.renderer.pieces(b.shown, shown_matches, b.annotated)
        return LinkResult("".join(pieces), _freeze(b.shown), shown_matches, True, b.cost, full, tuple(pieces))


def _freeze(selection: dict[str, set[str]]) -> dict[str, frozenset[str]]:
    return {t: frozenset(cs) for t, cs in selection.items()}
