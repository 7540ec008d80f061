"""Schema text the model reads, in two formats.

- ``ddl``: CREATE TABLE statements with declared types, PRIMARY KEY, FOREIGN KEY, and per
  column a comment with the question's matched values and up to k sample values (pruning
  may show the samples of only some columns).
- ``compact``: one line per table, ``table(col PK, col FK->other.col, col ...)``, matched
  values in brackets.

Tables and columns keep the database's order and spelling whatever was pruned. A selection
maps each shown table to the set of its shown columns; None shows everything. Foreign keys
are shown when both of their columns are.

The layout is written once, as pieces: a table is a head piece and body pieces (a DDL line, a
compact column, the close), and the text is their concatenation. Schema linking prices the same
pieces to meet its token budget, so the budget and the text cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Set

from sqltrain.linking.value_index import ValueIndex
from sqltrain.spider.schema import Schema

FORMATS = ("ddl", "compact")
Selection = Mapping[str, Set[str]]
"""table name -> names of its shown columns."""
Matches = Mapping[tuple[str, str], list[str]]
"""(table, column) -> matched values as SQL literals."""

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def ident(name: str) -> str:
    """An identifier as SQL needs it written (double-quoted when not plain)."""
    return name if _PLAIN.match(name) else '"' + name.replace('"', '""') + '"'


def matched_text(fmt: str, matched: list[str]) -> str:
    """How matched values read beside their column (the DDL comment's first part)."""
    return "matches " + ", ".join(matched) if fmt == "ddl" else " [" + ", ".join(matched) + "]"


LINE_BREAKS = ("lead", "trail")
"""Where a DDL line break goes when the text is cut into pieces: at the start of the next line's
piece (GPT-2-style pre-tokenizers glue a newline to the indentation after it) or at the end of
this line's (Llama-3/Qwen2-style ones glue it to the punctuation before it). The text is the same."""


class SchemaRenderer:
    """One schema in one format, its pieces rendered once: any selection renders fast."""

    def __init__(self, schema: Schema, fmt: str, index: ValueIndex | None = None, breaks: str = "lead"):
        if fmt not in FORMATS:
            raise ValueError(f"unknown schema format {fmt!r}; expected one of {FORMATS}")
        if breaks not in LINE_BREAKS:
            raise ValueError(f"unknown line-break placement {breaks!r}; expected one of {LINE_BREAKS}")
        self.schema, self.fmt, self.breaks = schema, fmt, breaks
        self._comments: dict[tuple, str] = {}
        self.definition: dict[tuple[str, str], str] = {}
        """(table, column) -> "Name TEXT" (ddl) or "Name PK" (compact)."""
        self.samples: dict[tuple[str, str], tuple[str, ...]] = {}
        for t in schema.tables:
            single_pk = len(t.primary_keys) == 1
            for c in t.columns:
                facts = index.facts(t.name, c.name) if index else None
                key = (t.name, c.name)
                self.samples[key] = facts.samples if facts and fmt == "ddl" else ()
                if fmt == "ddl":
                    decl = (facts.decl_type if facts and facts.decl_type else c.type).strip()
                    pk = " PRIMARY KEY" if single_pk and c.is_primary else ""
                    self.definition[key] = f"{ident(c.name)} {decl}{pk}" if decl else ident(c.name) + pk
                else:
                    self.definition[key] = ident(c.name) + (" PK" if c.is_primary else "")
        self.keys = {t.name: [(t.name, c.name) for c in t.columns] for t in schema.tables}
        """table -> its (table, column) keys in column order."""
        self.primary_keys = {t.name: t.primary_keys for t in schema.tables}
        self.fks: dict[str, list[tuple[str, str, str]]] = {t.name: [] for t in schema.tables}
        """table -> (column, ref_table, ref_column), in column order."""
        for t in schema.tables:
            order = {c.name: i for i, c in enumerate(t.columns)}
            fks = [(fk.column, fk.ref_table, fk.ref_column) for fk in schema.foreign_keys if fk.table == t.name]
            self.fks[t.name] = sorted(fks, key=lambda f: order.get(f[0], len(order)))
        self._fk_texts = {fk: self._fk_text(*fk) for fks in self.fks.values() for fk in fks}

    def comment(self, key: tuple[str, str], matched: list[str], samples: bool = True) -> str:
        memo = (key, tuple(matched), samples)  # linking asks for the same few comments again and again
        if memo not in self._comments:
            shown = [s for s in self.samples[key] if s not in matched] if samples else []
            parts = [matched_text("ddl", matched)] if matched else []
            if shown:
                parts.append("e.g. " + ", ".join(shown))
            self._comments[memo] = "; ".join(parts)
        return self._comments[memo]

    def fk_text(self, column: str, ref_table: str, ref_column: str) -> str:
        return self._fk_texts[column, ref_table, ref_column]

    def _fk_text(self, column: str, ref_table: str, ref_column: str) -> str:
        if self.fmt == "ddl":
            return f"FOREIGN KEY ({ident(column)}) REFERENCES {ident(ref_table)}({ident(ref_column)})"
        return f" FK->{ident(ref_table)}.{ident(ref_column)}"

    def _shown_fks(self, table: str, shown: Selection) -> dict[str, tuple[str, str, str]]:
        out: dict[str, tuple[str, str, str]] = {}
        for col, ref_t, ref_c in self.fks[table]:
            if col in shown[table] and ref_t in shown and ref_c in shown[ref_t]:
                out.setdefault(col, (col, ref_t, ref_c))
        return out

    # -- the layout, once: a table is a head piece and body pieces --------------------------
    def head(self, table, first: bool) -> str:
        """The piece that opens a table; the separator from the previous table leads it."""
        if self.fmt == "ddl":
            trail = "\n" if self.breaks == "trail" else ""
            return ("" if first else "\n\n") + f"CREATE TABLE {ident(table.name)} (" + trail
        return ("" if first else "\n") + f"{ident(table.name)}("

    def body(self, table, shown: Selection, matches: Matches, annotated: Set[tuple[str, str]] | None) -> list[str]:
        """The pieces after the head: one per DDL line, one per compact column, then the close."""
        if self.fmt == "ddl":
            return self._ddl_body(table, shown, matches, annotated)
        return self._compact_body(table, shown, matches)

    def _ddl_body(self, table, shown: Selection, matches: Matches, annotated: Set[tuple[str, str]] | None) -> list[str]:
        cols, all_pks = shown[table.name], self.primary_keys[table.name]
        items = [(self.definition[key], self.comment(key, matches.get(key, ()), annotated is None or key in annotated))
                 for key in self.keys[table.name] if key[1] in cols]
        pks = [c for c in all_pks if c in cols]
        if len(all_pks) > 1 and pks:
            items.append(("PRIMARY KEY (" + ", ".join(ident(p) for p in pks) + ")", ""))
        items.extend((self.fk_text(*fk), "") for fk in self._shown_fks(table.name, shown).values())
        lead, trail = ("\n", "") if self.breaks == "lead" else ("", "\n")
        lines = []
        for i, (text, comment) in enumerate(items):
            comma = "," if i < len(items) - 1 else ""
            lines.append(f"{lead}  {text}{comma}" + (f" -- {comment}" if comment else "") + trail)
        return lines + [lead + ("" if items else "\n") + ");"]  # an empty table keeps its blank line

    def _compact_body(self, table, shown: Selection, matches: Matches) -> list[str]:
        fks = self._shown_fks(table.name, shown)
        cols = []
        for c in table.columns:
            if c.name in shown[table.name]:
                key = (table.name, c.name)
                fk = self.fk_text(*fks[c.name]) if c.name in fks else ""
                cols.append(self.definition[key] + fk + (matched_text("compact", matches[key]) if key in matches else ""))
        # The comma ends its piece: pre-tokenizers glue it to the punctuation before it ("'],").
        return [(" " if i else "") + text + ("," if i < len(cols) - 1 else "") for i, text in enumerate(cols)] + [")"]

    def pieces(self, selection: Selection | None = None, matches: Matches | None = None,
               annotated: Set[tuple[str, str]] | None = None) -> list[str]:
        """The selected part of the schema (all when None) as the pieces its text is made of.

        `annotated` limits DDL sample values to these (table, column) pairs (None = all);
        matched values are always shown. Pieces end where tokenizers split text anyway (line
        ends, list commas), so a budget summed over them prices the text it renders.
        """
        shown = full_selection(self.schema) if selection is None else selection
        matches = matches or {}
        tables = [t for t in self.schema.tables if t.name in shown]
        return [piece for i, t in enumerate(tables)
                for piece in (self.head(t, first=i == 0), *self.body(t, shown, matches, annotated))]

    def render(self, selection: Selection | None = None, matches: Matches | None = None,
               annotated: Set[tuple[str, str]] | None = None) -> str:
        """The selected part of the schema as text: its pieces, joined."""
        return "".join(self.pieces(selection, matches, annotated))


def full_selection(schema: Schema) -> dict[str, set[str]]:
    return {t.name: {c.name for c in t.columns} for t in schema.tables}


def serialize_schema(
    schema: Schema,
    fmt: str,
    index: ValueIndex | None = None,
    selection: Selection | None = None,
    matches: Matches | None = None,
    annotated: Set[tuple[str, str]] | None = None,
) -> str:
    """The schema (or the selected part of it) as text in format `fmt` (see SchemaRenderer.render)."""
    return SchemaRenderer(schema, fmt, index).render(selection, matches, annotated)
