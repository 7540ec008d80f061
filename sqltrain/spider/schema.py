"""Schema model of one Spider database, built from its tables.json entry."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    """Original name, as in the database."""
    natural_name: str
    """Spider's human-readable name ("perpetrator id")."""
    type: str
    """Spider's coarse type: text, number, time, boolean, others."""
    is_primary: bool = False


@dataclass(frozen=True)
class ForeignKey:
    table: str
    column: str
    ref_table: str
    ref_column: str


@dataclass(frozen=True)
class Table:
    name: str
    natural_name: str
    columns: tuple[Column, ...]

    @property
    def primary_keys(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.is_primary)

    def column(self, name: str) -> Column | None:
        low = name.lower()
        return next((c for c in self.columns if c.name.lower() == low), None)


@dataclass(frozen=True)
class Schema:
    db_id: str
    tables: tuple[Table, ...]
    foreign_keys: tuple[ForeignKey, ...] = field(default=())

    def table(self, name: str) -> Table | None:
        low = name.lower()
        return next((t for t in self.tables if t.name.lower() == low), None)

    @property
    def table_names(self) -> list[str]:
        return [t.name for t in self.tables]


def schema_from_tables_entry(entry: dict) -> Schema:
    """Build a Schema from one tables.json record (already validated by the loader)."""
    tables_orig = entry["table_names_original"]
    tables_nat = entry["table_names"]
    pk_ids: set[int] = set()
    for pk in entry["primary_keys"]:
        # Newer Spider releases list composite keys as nested lists.
        pk_ids.update(pk if isinstance(pk, list) else [pk])
    per_table: list[list[Column]] = [[] for _ in tables_orig]
    col_ref: dict[int, tuple[str, str]] = {}
    for i, ((t_idx, orig), (_, nat), typ) in enumerate(
        zip(entry["column_names_original"], entry["column_names"], entry["column_types"])
    ):
        if t_idx < 0:  # the "*" pseudo-column
            continue
        per_table[t_idx].append(Column(orig, nat, typ, i in pk_ids))
        col_ref[i] = (tables_orig[t_idx], orig)
    fks = tuple(
        ForeignKey(*col_ref[a], *col_ref[b])
        for a, b in entry["foreign_keys"]
        if a in col_ref and b in col_ref
    )
    tables = tuple(Table(o, n, tuple(cols)) for o, n, cols in zip(tables_orig, tables_nat, per_table))
    return Schema(entry["db_id"], tables, fks)
