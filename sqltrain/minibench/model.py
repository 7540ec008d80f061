"""Declarative pieces of one mini-benchmark domain: tables, entities, links, question templates.

A domain says what its tables are and how people talk about them (nouns, the column that names
a row, relation phrases); `patterns` turns that into question/SQL templates, `fill` fills them
with values read from the generated database.
"""

from __future__ import annotations

import random
import re
import sqlite3
from dataclasses import dataclass, field
from typing import Callable, Union

# Spider's coarse column types, keyed by the SQLite declared type.
_SPIDER_TYPES = {"INTEGER": "number", "REAL": "number", "TEXT": "text", "DATE": "time", "BOOLEAN": "boolean"}


def natural_name(name: str) -> str:
    """Spider-style readable name: "first_name" -> "first name", "Festival_ID" -> "festival id"."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.replace("_", " "))
    return " ".join(spaced.lower().split())


def plural(noun: str) -> str:
    """English plural of the last word of a phrase (enough for our nouns)."""
    irregular = {"person": "people", "child": "children", "aircraft": "aircraft", "staff": "staff"}
    head, _, last = noun.rpartition(" ")
    if last in irregular:
        out = irregular[last]
    elif re.search(r"[^aeiou]y$", last):
        out = last[:-1] + "ies"
    elif re.search(r"(s|x|z|ch|sh)$", last):
        out = last + "es"
    else:
        out = last + "s"
    return f"{head} {out}" if head else out


def article(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


@dataclass(frozen=True)
class Col:
    name: str
    sql_type: str = "TEXT"
    phrase: str = ""
    """How questions say it; default: the natural name."""

    @property
    def natural(self) -> str:
        return natural_name(self.name)

    @property
    def words(self) -> str:
        return self.phrase or self.natural

    @property
    def spider_type(self) -> str:
        return _SPIDER_TYPES[self.sql_type]


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Col, ...]
    pk: str
    fks: tuple[tuple[str, str, str], ...] = ()
    """(column, referenced table, referenced column)."""

    def col(self, name: str) -> Col:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name} has no column {name}")

    def ddl(self) -> str:
        lines = [f'  "{c.name}" {c.sql_type}' + (" PRIMARY KEY" if c.name == self.pk else "") for c in self.columns]
        lines += [f'  FOREIGN KEY ("{c}") REFERENCES "{t}"("{r}")' for c, t, r in self.fks]
        return f'CREATE TABLE "{self.name}" (\n' + ",\n".join(lines) + "\n)"


@dataclass(frozen=True)
class Entity:
    """A table whose rows are things people ask about."""

    table: str
    noun: str
    label: tuple[str, ...] = ()
    """Columns that name one row ("title"; "first_name", "last_name"); empty for event tables."""
    label_phrase: str = ""
    """How questions name the label ("title", "first and last name"); default: its natural name."""
    categories: tuple[str, ...] = ()
    """Low-cardinality columns fit for `= value` filters and GROUP BY."""
    measures: tuple[str, ...] = ()
    """Numeric columns fit for aggregates, comparisons and ordering."""
    totals: tuple[str, ...] = ()
    """Measures whose sum means something (prices, counts; not years or ages)."""
    words: bool = False
    """The label is multi-word text, so LIKE '%word%' questions make sense."""
    pronoun: str = "its"
    """Possessive used for one row ("its", or "their" for people)."""

    @property
    def plural(self) -> str:
        return plural(self.noun)


@dataclass(frozen=True)
class Link:
    """A foreign key from one entity (child) to another (parent)."""

    child: str
    fk: str
    parent: str
    rel: str
    """Phrase joining the child's plural to a parent reference: "written by {}"."""
    owner: tuple[str, ...] = ()
    """Questions asking for the parent of one child ("Who wrote {v}?"); {v} is the child's label."""
    noun: str = ""
    """What a parent "has" through this key when it differs from the child noun ("departing flight")."""


@dataclass(frozen=True)
class Bridge:
    """An event/association table joining two entities (loans: members x books).

    `phrases` maps a bridge pattern name (see patterns.BRIDGE_PATTERNS) to its paraphrases;
    only patterns given phrases are generated, so each domain words them naturally.
    """

    table: str
    a: tuple[str, str]
    """(foreign key column, entity table) of the first side."""
    b: tuple[str, str]
    phrases: dict[str, tuple[str, ...]] = field(default_factory=dict)


SlotSource = Union[str, tuple, Callable[[sqlite3.Connection], list]]
"""SQL yielding candidate rows, a tuple of literal values, or a function of the connection."""


@dataclass(frozen=True)
class Template:
    """Paraphrased question(s) and one SQL query with `{slot}` holes filled from the database.

    Questions use `{v}`; SQL uses `{v}` (a quoted literal), `{v[0]}` (one column of a
    multi-column slot), `{v:like}` ('%v%') or `{v:prefix}` ('v%').
    """

    pattern: str
    """Pattern family, for spreading the sample over kinds of question."""
    questions: tuple[str, ...]
    sql: str
    slots: tuple[tuple[str, SlotSource], ...] = ()
    instances: int = 3
    """How many fillings to try to produce."""


@dataclass(frozen=True)
class Domain:
    db_id: str
    tables: tuple[TableSpec, ...]
    rows: Callable[[random.Random], dict[str, list[tuple]]]
    entities: tuple[Entity, ...] = ()
    links: tuple[Link, ...] = ()
    bridges: tuple[Bridge, ...] = ()
    templates: tuple[Template, ...] = ()
    """Hand-written, domain-specific templates added to the generic ones."""

    def table(self, name: str) -> TableSpec:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"{self.db_id} has no table {name}")

    def entity(self, table: str) -> Entity:
        for e in self.entities:
            if e.table == table:
                return e
        raise KeyError(f"{self.db_id} has no entity for table {table}")
