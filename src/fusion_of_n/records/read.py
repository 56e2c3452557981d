"""Reading records: JSONL (torn last line skipped), Parquet, and checked reading for the eval commands
(:func:`read_checked_records`, each record through :func:`record_problem`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from ..errors import ConfigError, MissingDependency

log = logging.getLogger(__name__)

RECORD_FIELDS = ("id", "candidates", "results")
"""The fields every finished record has (an eval command may need fewer)."""
PARQUET_JSON_FIELDS = ("meta", "messages", "failures", "error")
"""Fields ``generate --format parquet`` stores as JSON text because their shape differs between rows
(each candidate's ``scores`` too)."""
REPAIR = (
    "regenerate the record with fusion-of-n generate (delete that line and re-run generate with the same -o: "
    "only the missing rows are redone), or repair the line"
)


def read_json_lines(path: str) -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed value) of every complete JSON line of ``path``; a torn last line is
    skipped (logged), so is a line that is not JSON (logged), and a missing file has none."""
    for number, _offset, value in read_json_lines_at(path):
        yield number, value


def read_json_lines_at(path: str, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, int, Any]]:
    """(line number, byte offset of the line, parsed value): :func:`read_json_lines` with each line's
    position, so a reader can index a file and seek back to a record (``fusion-of-n view``). Only the
    lines that start in ``[start, stop)`` (``start`` a line start), numbered from 1 at ``start``.
    Same rules: a torn last line and lines that are not JSON are skipped (logged); the line numbers
    of what was skipped are the gaps."""
    try:
        handle = open(path, "rb", buffering=1 << 20)  # records are KBs: a small buffer costs a read per line
    except FileNotFoundError:
        return
    offset = start
    with handle:
        handle.seek(start)
        for number, raw in enumerate(handle, start=1):
            if stop is not None and offset >= stop:
                return
            if not raw.endswith(b"\n"):
                log.info("%s: ignoring a torn last line (%d bytes) left by an interrupted run", path, len(raw))
                return
            try:
                value = json.loads(raw)
            except ValueError:
                log.warning("%s: skipping line %d, which is not JSON", path, number)
            else:
                yield number, offset, value
            offset += len(raw)


def read_records(path: str) -> Iterator[dict[str, Any]]:
    """The complete records of an output file, in order; a torn last line (a run killed mid-write) is
    skipped, and so is any line that is not a JSON object (logged once)."""
    for _line, value in read_json_lines(path):
        if isinstance(value, dict):
            yield value


def read_parquet_records(path: str, *, columns: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
    """The records of a ``generate --format parquet`` output, JSON-text fields decoded back, so they equal
    the JSONL records they were written from; ``columns`` reads only those top-level fields."""
    file = _parquet(path).ParquetFile(path)
    if columns is not None:  # a field no record had is not in the file
        columns = [name for name in columns if name in file.schema_arrow.names]
    for batch in file.iter_batches(batch_size=1024, columns=columns):
        yield from map(_decoded, batch.to_pylist())


def read_parquet_range(path: str, start: int, stop: int) -> list[dict[str, Any]]:
    """The records at positions ``start`` to ``stop`` (exclusive) of a Parquet output, decoded as
    :func:`read_parquet_records` does; only the row groups holding them are read, and only those rows
    are turned into Python objects (``fusion-of-n view`` reads a record by its position)."""
    file = _parquet(path).ParquetFile(path)
    records: list[dict[str, Any]] = []
    first = 0
    for group in range(file.metadata.num_row_groups):
        size = file.metadata.row_group(group).num_rows
        if first < stop and first + size > start:
            seen = first
            for batch in file.iter_batches(batch_size=1024, row_groups=[group]):
                low, high = max(start, seen), min(stop, seen + batch.num_rows)
                if low < high:
                    records += map(_decoded, batch.slice(low - seen, high - low).to_pylist())
                seen += batch.num_rows
                if seen >= stop:
                    break
        first += size
    return records


def _decoded(record: dict[str, Any]) -> dict[str, Any]:
    for key in PARQUET_JSON_FIELDS:
        if isinstance(record.get(key), str):
            record[key] = json.loads(record[key])
    for candidate in record.get("candidates") or ():
        if isinstance(candidate.get("scores"), str):
            candidate["scores"] = json.loads(candidate["scores"])
    return record


def _parquet(path: str) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependency(f"reading {path} needs pyarrow: pip install 'fusion-of-n[data]'") from exc
    return pq


def read_any_records(path: str) -> Iterator[dict[str, Any]]:
    """The records of a JSONL or a Parquet (``.parquet``) generate output."""
    return read_parquet_records(path) if path.endswith(".parquet") else read_records(path)


def read_checked_records(path: str, need: Collection[str] = RECORD_FIELDS) -> Iterator[dict[str, Any]]:
    """The records of a ``fusion-of-n generate`` OUTPUT (JSONL), each checked as it is read
    (:func:`record_problem`): a finished record must hold the fields in ``need`` and every field must
    have its type. The first that does not is a ConfigError naming the file, the line, the record's id,
    the field and the fix, so no reader ends in a bare KeyError.

    A torn last line (a run killed mid-write) and lines that are not JSON are skipped, as generate does."""
    for line, record in read_json_lines(path):
        problem = record_problem(record, need)
        if problem:
            record_id = record.get("id") if isinstance(record, Mapping) else None
            shown = isinstance(record_id, str | int) and not isinstance(record_id, bool) and record_id != ""
            which = f" (record {record_id!r})" if shown else ""
            raise ConfigError(f"{path}, line {line}{which}: {problem}; {REPAIR}")
        yield record


def completed_ids(path: str) -> set[str]:
    """The ids of the finished records of ``path`` (a resumed run skips them)."""
    return {str(r["id"]) for r in read_records(path) if r.get("error") is None and "id" in r}


# -- checking a record ---------------------------------------------------------------------------------


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
    for name, kind in _TOP_FIELDS:
        value = record.get(name)
        if value is not None and not isinstance(value, kind):
            return _wrong(name, value, "an object" if kind is Mapping else "a string")
    return (
        _messages_problem(record.get("messages"))
        or _candidates_problem(record.get("candidates"))
        or _results_problem(record.get("results"))
    )


_TOP_FIELDS: tuple[tuple[str, type], ...] = (
    ("prompt", str),
    ("language", str),
    ("system", str),
    ("meta", Mapping),
    ("usage", Mapping),
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
