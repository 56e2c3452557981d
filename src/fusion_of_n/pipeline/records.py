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
     "seconds": 3.2, "failures": [...], "error": null}

A failed row's record (``id``, ``line``, ``prompt``, ``language``, ``meta``) carries ``"error": {"stage":
"sampling" | METHOD | "record", "type": "RuntimeError", "message": "..."}`` (a bad input row: stage
``input``, no type) and goes to ``OUTPUT.errors.jsonl``. :func:`record_problem` checks one record
against this shape (the eval commands read with it, so a damaged file is an error naming the line, the
id and the field).

``RUN_FILE`` (``OUTPUT`` + ``.run.json``) records what produced the file (models, n, methods, fusor,
scorer, sampling params) so a resumed run can refuse to mix pools.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection, Iterator, Mapping
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
    for _line, value in read_json_lines(path):
        if isinstance(value, dict):
            yield value


def read_json_lines(path: str) -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed value) of every complete JSON line of ``path``; a torn last line is
    skipped (logged), so is a line that is not JSON (logged), and a missing file has none."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                log.info("%s: ignoring a torn last line (%d bytes) left by an interrupted run", path, len(raw))
                return
            try:
                value = json.loads(raw)
            except ValueError:
                log.warning("%s: skipping line %d, which is not JSON", path, number)
                continue
            yield number, value


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


# -- checking a record ---------------------------------------------------------------------------------

RECORD_FIELDS = ("id", "candidates", "results")
"""The fields every finished record has (an eval command may need fewer)."""


def record_problem(record: Any, need: Collection[str] = RECORD_FIELDS) -> str | None:
    """What is wrong with one generate record, e.g. ``candidates[2].index is missing`` or ``results is a
    list, not an object``; None when it is fine. A failed row's record (``error`` set) needs nothing
    else; a finished one needs the fields in ``need``, and every field it has must have its type."""
    if not isinstance(record, Mapping):
        return _wrong("the line", record, "a JSON object")
    error = record.get("error")
    if error is not None:
        return None if isinstance(error, Mapping) else _wrong("error", error, "an object or null")
    for name in need:
        if record.get(name) is None:
            return f"{name} is missing"
    record_id = record.get("id")
    if record_id is not None and not ((isinstance(record_id, str) and record_id) or _is_int(record_id)):
        return _wrong("id", record_id, "a non-empty string or an integer")
    for name, kind in (("prompt", str), ("language", str), ("meta", Mapping), ("usage", Mapping)):
        value = record.get(name)
        if value is not None and not isinstance(value, kind):
            return _wrong(name, value, "an object" if kind is Mapping else "a string")
    return (
        _messages_problem(record.get("messages"))
        or _candidates_problem(record.get("candidates"))
        or _results_problem(record.get("results"))
    )


def _messages_problem(messages: Any) -> str | None:
    if messages is None:
        return None
    if not isinstance(messages, list):
        return _wrong("messages", messages, "a list of {role, content} objects")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            return _wrong(f"messages[{i}]", message, "an object")
    return None


def _candidates_problem(candidates: Any) -> str | None:
    if candidates is None:
        return None
    if not isinstance(candidates, list):
        return _wrong("candidates", candidates, "a list")
    for i, candidate in enumerate(candidates):
        where = f"candidates[{i}]"
        if not isinstance(candidate, Mapping):
            return _wrong(where, candidate, "an object")
        if candidate.get("index") is None:
            return f"{where}.index is missing"
        if not _is_int(candidate["index"]) or candidate["index"] < 0:
            return _wrong(f"{where}.index", candidate["index"], "an integer >= 0 (the pool position)")
        if candidate.get("text") is None:
            return f"{where}.text is missing"
        for name, kind, wanted in _CANDIDATE_FIELDS:
            value = candidate.get(name)
            if value is not None and not (_is_int(value) if kind is int else isinstance(value, kind)):
                return _wrong(f"{where}.{name}", value, wanted)
    return None


_CANDIDATE_FIELDS: tuple[tuple[str, type, str], ...] = (
    ("text", str, "a string"),
    ("model", str, "a string"),
    ("excluded", bool, "true or false"),
    ("completion_tokens", int, "an integer"),
    ("flags", list, "a list"),
    ("scores", Mapping, "an object"),
)


def _results_problem(results: Any) -> str | None:
    if results is None:
        return None
    if not isinstance(results, Mapping):
        return _wrong("results", results, "an object {method: result}")
    for method, result in results.items():
        where = f"results.{method}"
        if not isinstance(result, Mapping):
            return _wrong(where, result, "an object")
        if result.get("text") is None:
            return f"{where}.text is missing"
        if not isinstance(result["text"], str):
            return _wrong(f"{where}.text", result["text"], "a string")
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object" if isinstance(value, Mapping) else type(value).__name__


def _wrong(where: str, value: Any, wanted: str) -> str:
    shown = json.dumps(value, ensure_ascii=False, default=str)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    kind = _kind(value)
    return f"{where} is {'an' if kind[0] in 'aeiou' else 'a'} {kind} ({shown}), not {wanted}"
