"""Load and validate a Spider-layout benchmark directory.

Layout: ``train_spider.json`` / ``train_others.json`` (or their ``_slim`` variants),
``dev.json``, optionally ``test.json``, ``tables.json`` and ``database/<db>/<db>.sqlite``.
A folder holding several ``*.sqlite`` files for one db gives test-suite variants.
With a validation carve (sqltrain.spider.validation), split "validation" is the train examples
on the held-out databases and "train" is the rest.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from sqltrain.spider.schema import Schema, schema_from_tables_entry
from sqltrain.spider.validation import VALIDATION, ValidationCarve, validation_databases

SPLIT_FILES = {
    "train": (("train_spider.json", "train_spider_slim.json"), ("train_others.json", "train_others_slim.json")),
    "dev": (("dev.json",),),
    "test": (("test.json",),),
}
EXAMPLE_FIELDS = ("question", "query", "db_id")
TABLE_FIELDS = (
    "db_id", "table_names_original", "table_names", "column_names_original",
    "column_names", "column_types", "primary_keys", "foreign_keys",
)


class SpiderFormatError(ValueError):
    """A benchmark file is malformed; the message names the file, record index and field, and
    `reason` is the short category that on_error="skip" counts it under."""

    def __init__(self, message: str, reason: str = "malformed"):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Example:
    split: str
    index: int
    """Position in the split (train: train_spider then train_others, concatenated)."""
    db_id: str
    question: str
    query: str

    @property
    def id(self) -> str:
        return f"{self.split}-{self.index}"

    @property
    def hardness(self) -> str:
        from sqltrain.spider.hardness import hardness

        return hardness(self.query)


def _read_json_list(path: Path) -> list:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SpiderFormatError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise SpiderFormatError(f"{path}: not UTF-8 ({e.reason})") from None
    except RecursionError:
        raise SpiderFormatError(f"{path}: JSON nested too deeply") from None
    except OSError as e:
        raise SpiderFormatError(f"{path}: cannot read it ({e.strerror or e})") from None
    if not isinstance(data, list):
        raise SpiderFormatError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def _check_record(path: Path, i: int, rec: object, fields: tuple[str, ...], types: dict[str, type]) -> None:
    if not isinstance(rec, dict):
        raise SpiderFormatError(f"{path}: record {i}: expected an object, got {type(rec).__name__}", "expected an object")
    for f in fields:
        if f not in rec:
            raise SpiderFormatError(f"{path}: record {i}: missing field '{f}'", "missing field")
        want = types.get(f, str)
        if not isinstance(rec[f], want):
            raise SpiderFormatError(f"{path}: record {i}: field '{f}' must be {want.__name__}, got {type(rec[f]).__name__}", "must be")


def load_exclusions(path: str | os.PathLike) -> set[tuple[str, int]]:
    """Read a KNOWN_GAPS.tsv-format file: split, index, db_id, reason; '#' lines are comments."""
    out: set[tuple[str, int]] = set()
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, row in enumerate(csv.reader(f, delimiter="\t"), 1):
                if not row or row[0].startswith("#"):
                    continue
                if len(row) < 2 or not row[1].strip().isdigit():
                    raise SpiderFormatError(f"{path}: line {lineno}: expected 'split<TAB>index<TAB>db_id<TAB>reason'")
                out.add((row[0].strip(), int(row[1])))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        why = "not found" if isinstance(e, FileNotFoundError) else f"cannot read it ({getattr(e, 'strerror', None) or e})"
        raise SpiderFormatError(f"exclusion list {path}: {why}; give a KNOWN_GAPS.tsv-format file "
                                "(--exclude / data.exclude)") from None
    return out


SQLITE_HEADER = b"SQLite format 3\x00"


def database_problem(path: Path) -> str | None:
    """Why `path` is not a readable SQLite database (None when it is): missing, not a file, empty,
    not SQLite, shorter than its header says (truncated), or unreadable by SQLite."""
    import sqlite3

    if not path.exists():
        return "is missing"
    if not path.is_file():
        return "is not a file"
    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if not header:
        return "is empty (0 bytes)"
    if not header.startswith(SQLITE_HEADER):
        return "is not a SQLite database (no SQLite header)"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The in-header page count is valid when the change counter matches version-valid-for.
    if header[24:28] == header[92:96] and pages and path.stat().st_size < page_size * pages:
        return f"is truncated ({path.stat().st_size} bytes, its header says {page_size * pages})"
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as e:
        return f"cannot be read by SQLite ({e})"
    return None


class SpiderBenchmark:
    """A Spider-layout benchmark: its examples, schemas and databases.

    on_error="raise" stops at the first malformed record with an error naming file, record
    index and field; "skip" drops bad records and counts them in ``self.skipped``.
    """

    def __init__(self, root: str | os.PathLike, on_error: str = "raise", validation: ValidationCarve = ValidationCarve()):
        if not str(root).strip():  # Path("") would be the working directory
            raise SpiderFormatError("benchmark directory is empty: give a Spider-layout directory or \"mini\"")
        self.root = Path(root).expanduser().resolve()
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.on_error = on_error
        self.validation = validation
        self.skipped: Counter[str] = Counter()
        if not self.root.is_dir():
            raise SpiderFormatError(f"{self.root}: not a directory")
        self._splits: dict[tuple[str, bool], list[Example]] = {}
        self._db_problems: dict[Path, str | None] = {}
        self._file_ends: dict[str, list[int]] = {}  # split -> position after each of its files

    # -- schemas and databases ------------------------------------------------------------
    @cached_property
    def schemas(self) -> dict[str, Schema]:
        path = self.root / "tables.json"
        if not path.exists():
            raise SpiderFormatError(f"{path}: missing (every Spider-layout dir needs tables.json)")
        out: dict[str, Schema] = {}
        types = {f: list for f in TABLE_FIELDS if f != "db_id"}
        for i, rec in enumerate(_read_json_list(path)):
            try:
                _check_record(path, i, rec, TABLE_FIELDS, types)
                out[rec["db_id"]] = schema_from_tables_entry(rec)
            except (SpiderFormatError, IndexError, TypeError, ValueError) as e:
                msg = str(e) if isinstance(e, SpiderFormatError) else f"{path}: record {i}: inconsistent schema ({e})"
                self._fail(SpiderFormatError(msg), "tables.json: malformed record")
        return out

    def db_path(self, db_id: str) -> Path:
        return self.root / "database" / db_id / f"{db_id}.sqlite"

    def db_problem(self, path: Path) -> str | None:
        """database_problem(path), checked once per file."""
        if path not in self._db_problems:
            self._db_problems[path] = database_problem(path)
        return self._db_problems[path]

    def check_database(self, path: Path) -> None:
        """SpiderFormatError unless `path` is a readable SQLite file."""
        problem = self.db_problem(path)
        if problem is not None:
            raise SpiderFormatError(f"database file {path} {problem}",
                                    "missing database file" if problem == "is missing" else "bad database file")

    def db_variants(self, db_id: str) -> list[Path]:
        """All database files of one db (test-suite variants), the canonical one first."""
        main = self.db_path(db_id)
        others = sorted(p for p in main.parent.glob("*.sqlite") if p != main)
        return ([main] if main.exists() else []) + others

    @property
    def sqlite_files(self) -> list[Path]:
        return sorted(p for p in (self.root / "database").glob("*/*.sqlite") if p.stem == p.parent.name and p.is_file())

    # -- examples -------------------------------------------------------------------------
    def split_files(self, split: str) -> list[Path]:
        if split == VALIDATION:  # carved out of train's files
            return self.split_files("train")
        if split not in SPLIT_FILES:
            raise SpiderFormatError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_FILES)}")
        files = []
        for alternatives in SPLIT_FILES[split]:
            found = next((self.root / n for n in alternatives if (self.root / n).exists()), None)
            if found is not None:
                files.append(found)
        return files

    def available_splits(self) -> list[str]:
        return [s for s in SPLIT_FILES if self.split_files(s)]

    def examples(self, split: str, exclude: str | os.PathLike | set | None = None, check_db: bool = True) -> list[Example]:
        """Examples of a split, validated; `exclude` is a KNOWN_GAPS.tsv path or a set of (split, index)."""
        if exclude is None:
            key = (split, check_db)
            if key not in self._splits:
                self._splits[key] = self._carved(split, check_db)
            return self._splits[key]
        # Exclusions apply before the database check: an excluded example's missing database is
        # what the exclusion list is for, not an error.
        gaps = exclude if isinstance(exclude, set) else load_exclusions(exclude)
        source = "train" if split == VALIDATION else split  # exclusion lists name train positions
        examples = [e for e in self.examples(split, check_db=False) if (source, e.index) not in gaps]
        return self._with_databases(examples) if check_db else examples

    def _with_databases(self, examples: list[Example]) -> list[Example]:
        """The examples whose database file checks out; the others fail as data.on_error says."""
        problems: dict[str, SpiderFormatError | None] = {}
        kept = []
        for e in examples:
            if e.db_id not in problems:
                try:
                    self.check_database(self.db_path(e.db_id))
                    problems[e.db_id] = None
                except SpiderFormatError as err:
                    problems[e.db_id] = err
            err = problems[e.db_id]
            if err is None:
                kept.append(e)
            else:
                self._fail(SpiderFormatError(f"{self.root}: split '{e.split}' example {e.index}: field 'db_id': {err}; "
                                             "leave its examples out with an exclusion list or data.on_error=skip",
                                             err.reason), err.reason)
        return kept

    @cached_property
    def validation_dbs(self) -> list[str]:
        """Databases held out of train by the validation carve (sorted; empty without one)."""
        if not self.validation.enabled:
            return []
        train = self._split_all("train", check_db=False)
        first_file_end = self._file_ends["train"][0]
        try:
            return validation_databases({e.db_id for e in train if e.index < first_file_end}, self.validation)
        except ValueError as e:
            raise SpiderFormatError(f"{self.root}: {e}") from None

    def _carved(self, split: str, check_db: bool) -> list[Example]:
        """A split's examples with the validation carve applied (train minus, validation only,
        the held-out databases); other splits as loaded."""
        if split == VALIDATION and not self.validation.enabled:
            raise SpiderFormatError(f"split '{VALIDATION}' is empty: it holds the train databases that "
                                    "data.validation.fraction > 0 holds out (e.g. data.validation.fraction=0.1)")
        if split not in ("train", VALIDATION) or not self.validation.enabled:
            return self._split_all(split, check_db)
        held_out = set(self.validation_dbs)
        train = self._split_all("train", check_db)
        if split == "train":
            return [e for e in train if e.db_id not in held_out]
        return [replace(e, split=VALIDATION) for e in train if e.db_id in held_out]

    def _split_all(self, split: str, check_db: bool) -> list[Example]:
        key = ("all:" + split, check_db)
        if key not in self._splits:
            self._splits[key] = self._load_split(split, check_db)
        return self._splits[key]

    def _load_split(self, split: str, check_db: bool) -> list[Example]:
        files = self.split_files(split)
        if not files:
            raise SpiderFormatError(f"{self.root}: no file for split '{split}' (looked for {SPLIT_FILES[split]})")
        out: list[Example] = []
        position = 0  # index into the concatenated split, kept stable when records are skipped
        ends = self._file_ends[split] = []
        for path in files:
            for i, rec in enumerate(_read_json_list(path)):
                position += 1
                try:
                    _check_record(path, i, rec, EXAMPLE_FIELDS, {})
                    self._check_db(path, i, rec["db_id"], check_db)
                except SpiderFormatError as e:
                    self._fail(e, e.reason)
                    continue
                out.append(Example(split, position - 1, rec["db_id"], rec["question"], rec["query"]))
            ends.append(position)
        if position == 0:
            raise SpiderFormatError(f"{', '.join(str(p) for p in files)}: no examples in split '{split}'")
        return out

    def _check_db(self, path: Path, i: int, db_id: str, check_db: bool) -> None:
        if db_id not in self.schemas:
            raise SpiderFormatError(f"{path}: record {i}: field 'db_id': '{db_id}' is not in tables.json", "not in tables.json")
        if check_db:
            try:
                self.check_database(self.db_path(db_id))
            except SpiderFormatError as e:
                raise SpiderFormatError(f"{path}: record {i}: field 'db_id': {e}; leave its examples out with an "
                                        "exclusion list or data.on_error=skip", e.reason) from None

    def _fail(self, err: SpiderFormatError, reason: str) -> None:
        if self.on_error == "raise":
            raise err
        self.skipped[reason] += 1
