"""Schema text the model reads, in two formats.

- ``ddl``: CREATE TABLE statements with declared types, PRIMARY KEY, FOREIGN KEY, and per
  column a comment with the question's matched values and up to k sample values (pruning
  may show the samples of only some columns).
- ``compact``: one line per table, ``table(col PK, col FK->other.col, col ...)``, matched
  values in brackets.

Tables and columns keep the database's order and spelling whatever was pruned. A selection
maps each shown table to the set of its shown columns; None shows everything. Foreign keys
are shown when both of their columns are.
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


class SchemaRenderer:
    """One schema in one format, its pieces rendered once: any selection renders fast."""

    def __init__(self, schema: Schema, fmt: str, index: ValueIndex | None = None):
        if fmt not in FORMATS:
            raise ValueError(f"unknown schema format {fmt!r}; expected one of {FORMATS}")
        self.schema, self.fmt = schema, fmt
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
        self.fks: dict[str, list[tuple[str, str, str]]] = {t.name: [] for t in schema.tables}
        """table -> (column, ref_table, ref_column), in column order."""
        for t in schema.tables:
            order = {c.name: i for i, c in enumerate(t.columns)}
            fks = [(fk.column, fk.ref_table, fk.ref_column) for fk in schema.foreign_keys if fk.table == t.name]
            self.fks[t.name] = sorted(fks, key=lambda f: order.get(f[0], len(order)))

    def comment(self, key: tuple[str, str], matched: list[str], samples: bool = True) -> str:
        shown = [s for s in self.samples[key] if s not in matched] if samples else []
        parts = [matched_text("ddl", matched)] if matched else []
        if shown:
            parts.append("e.g. " + ", ".join(shown))
        return "; ".join(parts)

    def fk_text(self, column: str, ref_table: str, ref_column: str) -> str:
        if self.fmt == "ddl":
            return f"FOREIGN KEY ({ident(column)}) REFERENCES {ident(ref_table)}({ident(ref_column)})"
        return f" FK->{ident(ref_table)}.{ident(ref_column)}"

    def _shown_fks(self, table: str, shown: Selection) -> dict[str, tuple[str, str, str]]:
        out: dict[str, tuple[str, str, str]] = {}
        for col, ref_t, ref_c in self.fks[table]:
            if col in shown[table] and ref_t in shown and ref_c in shown[ref_t]:
                out.setdefault(col, (col, ref_t, ref_c))
        return out

    def ddl_table(self, table, shown: Selection, matches: Matches, annotated: Set[tuple[str, str]] | None) -> str:
        items = []
        for c in table.columns:
            if c.name in shown[table.name]:
                key = (table.name, c.name)
                comment = self.comment(key, matches.get(key, []), annotated is None or key in annotated)
                items.append((self.definition[key], comment))
        pks = [c for c in table.primary_keys if c in shown[table.name]]
        if len(table.primary_keys) > 1 and pks:
            items.append(("PRIMARY KEY (" + ", ".join(ident(p) for p in pks) + ")", ""))
        items.extend((self.fk_text(*fk), "") for fk in self._shown_fks(table.name, shown).values())
        lines = []
        for i, (text, comment) in enumerate(items):
            comma = "," if i < len(items) - 1 else ""
            lines.append(f"  {text}{comma}" + (f" -- {comment}" if comment else ""))
        return f"CREATE TABLE {ident(table.name)} (\n" + "\n".join(lines) + "\n);"

    def compact_table(self, table, shown: Selection, matches: Matches) -> str:
        fks = self._shown_fks(table.name, shown)
        cols = []
        for c in table.columns:
            if c.name in shown[table.name]:
                key = (table.name, c.name)
                fk = self.fk_text(*fks[c.name]) if c.name in fks else ""
                cols.append(self.definition[key] + fk + (matched_text("compact", matches[key]) if key in matches else ""))
        return f"{ident(table.name)}(" + ", ".join(cols) + ")"

    def render(self, selection: Selection | None = None, matches: Matches | None = None,
               annotated: Set[tuple[str, str]] | None = None) -> str:
        """The selected part of the schema (all when None) as text.

        `annotated` limits DDL sample values to these (table, column) pairs (None = all);
        matched values are always shown.
        """
        shown = full_selection(self.schema) if selection is None else selection
        matches = matches or {}
        tables = [t for t in self.schema.tables if t.name in shown]
        if self.fmt == "ddl":
            return "\n\n".join(self.ddl_table(t, shown, matches, annotated) for t in tables)
        return "\n".join(self.compact_table(t, shown, matches) for t in tables)


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
