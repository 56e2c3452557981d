"""The shapes batch generation reads and writes.

Input rows come from JSONL, CSV, Parquet, a saved Hugging Face dataset folder or a built-in source;
each becomes an :class:`InputRow` or, when it is unusable, a :class:`RowError` (the run goes on).

Output: one JSON object per input row, appended to ``OUTPUT`` (JSONL)::

    {"id": "...", "line": 7, "prompt": "..." | null, "messages": [...] | null, "language": "de",
     "meta": {...other input columns...},
     "candidates": [{"index": 0, "model": "...", "text": "...", "finish_reason": "stop",
                     "completion_tokens": 12, "excluded": false, "flags": [], "scores": {"bon": 7.2}}],
     "results": {"fusion": {"text": "...", "chosen": null, "score": null, "analysis": "...", "flags": [],
                            "by": "openai:big@..."},
                 "bon": {"text": "...", "chosen": 3, "score": 7.2, "analysis": null, "flags": [], "by": "judge:..."}},
     "usage": {"sampling": {...}, "bon": {...}, "fusion": {...}, "total": {...}},
     "seconds": 3.2, "failures": [...], "error": null | {"stage": "sampling", "message": "..."}}

``RUN_FILE`` (``OUTPUT`` + ``.run.json``) records what produced the file (models, n, methods, fusor,
scorer, sampling params) so a resumed run can refuse to mix pools.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..types import Message

log = logging.getLogger(__name__)


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
        return {"id": self.id, "line": self.line, "error": {"stage": "input", "message": self.message}}


def stable_id(row: dict[str, Any]) -> str:
    """A row's id when it has none: sha256 of its canonical JSON (key order and spacing do not matter)."""
    canonical = json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def run_file(output: str) -> str:
    return output + ".run.json"


def read_records(path: str) -> Iterator[dict[str, Any]]:
    """The complete records of an output file, in order; a torn last line (a run killed mid-write) is
    skipped, and so is any line that is not a JSON object (logged once)."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                log.info("%s: ignoring a torn last line (%d bytes) left by an interrupted run", path, len(raw))
                return
            try:
                record = json.loads(raw)
            except ValueError:
                log.warning("%s: skipping a line that is not JSON", path)
                continue
            if isinstance(record, dict):
                yield record


# Fields ``generate --format parquet`` stores as JSON text because their shape differs between rows.
PARQUET_JSON_FIELDS = ("meta", "messages", "failures", "error")


def read_parquet_records(path: str) -> Iterator[dict[str, Any]]:
    """The records of a ``generate --format parquet`` output, JSON-text fields decoded back, so they equal
    the JSONL records they were written from."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        from ..errors import MissingDependency

        raise MissingDependency(f"reading {path} needs pyarrow: pip install 'fusion-of-n[data]'") from exc
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            for key in PARQUET_JSON_FIELDS:
                if isinstance(record.get(key), str):
                    record[key] = json.loads(record[key])
            for candidate in record.get("candidates") or ():
                if isinstance(candidate.get("scores"), str):
                    candidate["scores"] = json.loads(candidate["scores"])
            yield record


def read_any_records(path: str) -> Iterator[dict[str, Any]]:
    """The records of a JSONL or a Parquet (``.parquet``) generate output."""
    return read_parquet_records(path) if path.endswith(".parquet") else read_records(path)
