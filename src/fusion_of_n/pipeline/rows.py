"""The input side of batch generation: what the readers (:mod:`.inputs`, :mod:`.sources`) make of a row.

Input rows come from JSONL, CSV, Parquet, a saved Hugging Face dataset folder or a built-in source;
each becomes an :class:`InputRow` or, when it is unusable, a :class:`RowError` (the run goes on). What
is written per row is the record format, owned by :mod:`fusion_of_n.records`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..records import input_error_record
from ..types import Message


@dataclass(frozen=True)
class InputRow:
    """One usable input row. ``line`` is its 1-based position in the source (for error messages)."""

    id: str
    line: int
    prompt: str | None = None
    messages: tuple[Message, ...] | None = None
    language: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def chat(self) -> tuple[Message, ...]:
        if self.messages is not None:
            return self.messages
        return ({"role": "user", "content": self.prompt or ""},)


@dataclass(frozen=True)
class RowError:
    """An input row that could not be used: reported by id (when it has one) or line, never fatal."""

    line: int
    message: str
    id: str | None = None

    def to_record(self) -> dict[str, Any]:
        return input_error_record(self.line, self.message, self.id)


def stable_id(row: dict[str, Any]) -> str:
    """A row's id when it has none: sha256 of its canonical JSON (key order and spacing do not matter)."""
    canonical = json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
