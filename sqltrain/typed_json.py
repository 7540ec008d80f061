"""Typed records that are written as JSON objects and read back the same.

A `JsonRecord` is a frozen pydantic model: sqltrain's code uses its attributes; its JSON form
(`to_json`) holds exactly the fields that were given, in declaration order, so a file read and
written again is unchanged (older files lack fields added since; they read as defaults and are
not written back). Indexing reads that JSON form too (``summary["ex"]``, ``record in``,
equality with a dict), so code written against the files keeps working on the objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound="JsonRecord")


class RecordError(ValueError):
    """A JSON record does not have the fields its type needs; the message names them."""


def validation_problem(err: ValidationError) -> str:
    """One clause per bad field: "missing field 'x'", "field 'y': <why>"."""
    problems = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "missing":
            problems.append(f"missing field '{field}'")
        elif e["type"] == "extra_forbidden":
            problems.append(f"unknown field '{field}'")
        else:
            problems.append(f"field '{field}': {e['msg']}")
    return "; ".join(problems)


class JsonRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def from_json(cls: type[T], data: Any, where: str = "record") -> T:
        """Validate a JSON object (a dict read from a file); RecordError names `where` and the field."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as e:
            raise RecordError(f"{where}: {validation_problem(e)}") from None

    @classmethod
    def read(cls: type[T], path: str | Path) -> T:
        """The record in a JSON file; RecordError (a ValueError) when it is malformed."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise RecordError(f"{path}: not valid JSON ({e})") from None
        return cls.from_json(data, str(path))

    def to_json(self) -> dict[str, Any]:
        """The JSON object: the fields that were given, in declaration order."""
        return self.model_dump(mode="json", exclude_unset=True)

    def __getitem__(self, key: str) -> Any:
        if key not in self:
            raise KeyError(key)
        return self.model_dump(mode="json", include={key})[key]

    def __contains__(self, key: object) -> bool:
        return key in type(self).model_fields and key in self.model_fields_set

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self.to_json() == dict(other)
        return super().__eq__(other)
