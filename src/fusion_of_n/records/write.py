"""Building and writing records: one record per row from its pool and results, durable appends, the
repair of a torn last line, the Parquet form and the names of the files around ``OUTPUT``."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, Protocol

from ..errors import MissingDependency, redact
from ..types import Message, Result, Usage
from .read import PARQUET_JSON_FIELDS, read_records

if TYPE_CHECKING:
    from ..sampling import Pool

log = logging.getLogger(__name__)


class Row(Protocol):
    """What a record is built from: an input row (:class:`fusion_of_n.pipeline.rows.InputRow`)."""

    @property
    def id(self) -> str: ...
    @property
    def line(self) -> int: ...
    @property
    def prompt(self) -> str | None: ...
    @property
    def messages(self) -> tuple[Message, ...] | None: ...
    @property
    def language(self) -> str | None: ...
    @property
    def meta(self) -> Mapping[str, Any]: ...


def run_file(output: str) -> str:
    """``OUTPUT.run.json``: what produced ``output`` (models, n, methods, fusor, scorer, params)."""
    return output + ".run.json"


def errors_file(output: str) -> str:
    """``OUTPUT.errors.jsonl``: the error records of the last run over ``output``."""
    return output + ".errors.jsonl"


def journal_file(output: str) -> str:
    """``OUTPUT.journal.jsonl``: the JSONL records behind a Parquet ``output``."""
    return output + ".journal.jsonl"


# -- building ------------------------------------------------------------------------------------------


def build_record(
    row: Row, pool: Pool, results: Mapping[str, Result], seconds: float, system: str | None = None
) -> dict[str, Any]:
    """The finished record of ``row``: its pool, every method's result on it, usage per stage."""
    candidates = [c.to_dict() for c in pool.candidates]
    for entry in candidates:
        entry.pop("score", None)
        entry["scores"] = {}
    usage: dict[str, Usage] = {"sampling": pool.usage}
    for method, result in results.items():
        for candidate in result.candidates:
            if candidate.score is not None:
                candidates[candidate.index]["scores"][method] = candidate.score
        usage[method] = result.aggregation_usage
    total = sum(usage.values(), Usage())
    record = {
        "id": row.id,
        "line": row.line,
        "prompt": row.prompt,
        "messages": list(row.messages) if row.messages is not None else None,
        "language": row.language,
        "system": system,
        "meta": row.meta,
        "candidates": candidates,
        "results": {method: _result_entry(result) for method, result in results.items()},
        "usage": {**{k: v.to_dict() for k, v in usage.items()}, "total": total.to_dict()},
        "seconds": round(seconds, 3),
        "failures": [f.to_dict() for f in pool.failures],
        "error": None,
    }
    if pool.adaptive:  # --adaptive: samples planned and drawn, rounds, what stopping early saved
        record["adaptive"] = dict(pool.adaptive)
    return record


def _result_entry(result: Result) -> dict[str, Any]:
    chosen_score = result.candidates[result.chosen].score if result.chosen is not None else None
    entry = {
        "text": result.text,
        "chosen": result.chosen,
        "score": chosen_score,
        "analysis": result.analysis,
        "flags": list(result.flags),
        "by": result.extra.get("fusor") or result.extra.get("scorer") or result.extra.get("selector"),
    }
    for key in ("strategy", "evidence", "presentation_order"):  # auto: what ran, and why; fusion: the order
        if key in result.extra:
            entry[key] = result.extra[key]
    return entry


def error_record(row: Row, stage: str, exc: BaseException, secrets: Sequence[str] = ()) -> dict[str, Any]:
    """The record of a row that failed at ``stage`` (sampling, a method, record): the exception's type and
    its message (keys redacted), never a partial answer."""
    return {
        "id": row.id,
        "line": row.line,
        "prompt": row.prompt,
        "language": row.language,
        "meta": row.meta,
        "error": {
            "stage": stage,
            "type": type(exc).__name__,
            "message": redact(str(exc), secrets) or type(exc).__name__,
        },
    }


def input_error_record(line: int, message: str, row_id: str | None = None) -> dict[str, Any]:
    """The record of an input row that could not be used (stage ``input``)."""
    return {"id": row_id, "line": line, "error": {"stage": "input", "message": message}}


# -- writing -------------------------------------------------------------------------------------------


def record_line(record: Mapping[str, Any]) -> bytes:
    """``record`` as one line of an output file: JSON (non-ASCII characters as they are) and a newline.
    Raises TypeError or ValueError for a value JSON cannot hold."""
    return json.dumps(record, ensure_ascii=False).encode() + b"\n"


class RecordWriter:
    """Appends JSON lines. Each record is handed to the OS at once (one write + flush), so a killed
    process loses nothing it wrote; fsync (against power loss) every ``batch`` records and on close."""

    def __init__(self, path: str, *, batch: int = 64, mode: str = "a") -> None:
        self.path, self.batch = path, batch
        self._handle: IO[bytes] = open(path, mode + "b")
        self._pending = 0

    def write(self, record: Mapping[str, Any]) -> None:
        self.write_line(record_line(record))

    def write_line(self, line: bytes) -> None:
        """Append a line made by :func:`record_line` (a caller that encoded the record already)."""
        self._handle.write(line)
        self._handle.flush()
        self._pending += 1
        if self._pending >= self.batch:
            self.sync()

    def sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._pending = 0

    def close(self) -> None:
        self.sync()
        self._handle.close()


def repair_tail(path: str) -> None:
    """Cut a torn last line (no trailing newline) so that new records start on a fresh line."""
    try:
        with open(path, "rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return
            handle.seek(max(0, size - 1))
            if handle.read(1) == b"\n":
                return
            position = size
            while position > 0:
                step = min(65536, position)
                handle.seek(position - step)
                chunk = handle.read(step)
                cut = chunk.rfind(b"\n")
                if cut != -1:
                    handle.truncate(position - step + cut + 1)
                    log.warning("%s: cut a torn last line left by an interrupted run", path)
                    return
                position -= step
            handle.truncate(0)
    except FileNotFoundError:
        return


def write_parquet(journal: str, target: str) -> None:
    """The journal's records as a Parquet file, written atomically. Fields whose shape differs between
    rows (:data:`~.read.PARQUET_JSON_FIELDS`, each candidate's ``scores``) are JSON text; ``results`` and
    ``usage`` (same keys in every row of a run) and ``candidates`` stay nested."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependency("--format parquet needs pyarrow: pip install 'fusion-of-n[data]'") from exc

    def text(value: Any) -> str | None:
        return None if value is None else json.dumps(value, ensure_ascii=False)

    records = []
    for record in read_records(journal):
        record = dict(record)
        for key in PARQUET_JSON_FIELDS:
            record[key] = text(record.get(key))
        record["candidates"] = [{**c, "scores": text(c.get("scores"))} for c in record.get("candidates", [])]
        records.append(record)
    tmp = target + ".tmp"
    pq.write_table(pa.Table.from_pylist(records), tmp)
    os.replace(tmp, target)
