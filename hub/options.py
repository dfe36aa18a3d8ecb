"""Declared configuration options: one :class:`Option` per key a section accepts.

The hub's own sections and every plugin declare their keys this way, so one
validator checks them all, reports every problem with its key, and the commented
example config is generated from the same declarations (the docs cannot drift).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

# Value kinds an option may take. "path" is a string expanded with ~ and $VARS;
# "duration" is seconds as a number (int or float); "list" is a list of strings;
# "table" is a free-form table (passed through as a dict).
KINDS = ("str", "int", "float", "bool", "path", "duration", "list", "table", "secret")


@dataclass(frozen=True)
class Option:
    kind: str
    doc: str
    default: Any = REQUIRED
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    example: Any = None  # shown in the example config instead of the default

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown option kind {self.kind!r}")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED
