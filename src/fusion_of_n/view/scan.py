"""Reading a records file once for its index: per record the listed fields, in compact columns
(:class:`Part`). A large JSONL file is cut at line starts into a few byte ranges read side by side by
forked processes (JSON parsing is most of the time, and it is bound to one core per process); a
small one, a Parquet file, and any file read while other threads run (forking then is unsafe), are
read here, in one part."""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import threading
from array import array
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from ..records import (
    is_finished,
    read_json_lines_at,
    read_parquet_records,
    record_candidates,
    record_methods,
    record_prompt_text,
    record_result,
    record_tokens,
    record_usage,
)

log = logging.getLogger(__name__)

PREVIEW = 200
"""Characters of the prompt the list shows (and the index keeps)."""
KEPT = 100
"""Skipped lines listed per part (all are counted)."""
PARALLEL_BYTES = 64 << 20
"""A JSONL file gets one more reading process per this many bytes (up to :data:`PROCESSES`)."""
PROCESSES = 4
NOT_A_RECORD = "not a generate record (no candidates and results, no error)"
_NONE: Mapping[str, Any] = {}


class Table:
    """Distinct values (a language, a tuple of methods or flags) numbered in order of appearance."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self._numbers: dict[Any, int] = {}

    def number(self, value: Any) -> int:
        found = self._numbers.get(value)
        if found is None:
            found = self._numbers[value] = len(self.values)
            self.values.append(value)
        return found


class Part:
    """The index columns of one byte range of a JSONL file (or of a whole Parquet file). Line numbers
    count from 1 at the range's start; :meth:`.index.RecordsFile.extend` makes them the file's."""

    def __init__(self) -> None:
        self.offset = array("q")  # byte offset (row position in a Parquet file)
        self.physical = array("q")  # line in the range
        self.stated = array("q")  # the record's own ``line``, -1 without one
        self.tokens = array("q")  # -1: none
        self.seconds = array("d")  # NaN: none
        self.language, self.methods, self.flags = array("H"), array("H"), array("H")
        self.languages, self.method_sets, self.flag_sets = Table(), Table(), Table()
        self.ids: list[str | None] = []
        self.prompts: list[str] = []
        self.errors: dict[int, str] = {}  # position in the part -> "stage: Type: message"
        self.skipped: list[tuple[int, str]] = []  # (line, reason), the first KEPT
        self.skipped_count = 0
        self.lines = 0  # lines read

    def __len__(self) -> int:
        return len(self.ids)

    def skip(self, line: int, reason: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < KEPT:
            self.skipped.append((line, reason))

    def add(self, offset: int, line: int, record: Mapping[str, Any]) -> None:
        raw_id = record.get("id")
        if record.get("error"):
            self.errors[len(self.ids)] = describe_error(record["error"])
        self.ids.append(str(raw_id) if raw_id is not None and raw_id != "" else None)
        self.offset.append(offset)
        self.physical.append(line)
        stated = record.get("line")
        self.stated.append(stated if isinstance(stated, int) and not isinstance(stated, bool) and stated >= 0 else -1)
        language = record.get("language")
        self.language.append(self.languages.number(language if isinstance(language, str) and language else None))
        self.prompts.append(record_prompt_text(record)[:PREVIEW])
        self.methods.append(self.method_sets.number(tuple(record_methods(record))))
        self.flags.append(self.flag_sets.number(record_flags(record)))
        self.tokens.append(record_tokens(record) if record_usage(record) else -1)
        seconds = record.get("seconds")
        self.seconds.append(float(seconds) if isinstance(seconds, int | float) else math.nan)


def record_flags(record: Mapping[str, Any]) -> tuple[str, ...]:
    """Every flag of the record, sorted: its results' (``fusor_truncated``, ...) and its candidates'
    (``empty``, ``truncated``)."""
    found: set[str] = set()
    for method in record_methods(record):
        flags = (record_result(record, method) or _NONE).get("flags")
        if isinstance(flags, list):
            found.update(map(str, flags))
    for candidate in record_candidates(record):
        flags = candidate.get("flags") if isinstance(candidate, dict) else None
        if isinstance(flags, list):
            found.update(map(str, flags))
    return tuple(sorted(found))


def describe_error(error: Any) -> str:
    """An error record's ``error`` in one line: ``sampling: RuntimeError: message``."""
    if not isinstance(error, Mapping):
        return str(error)
    parts = [str(error[key]) for key in ("stage", "type", "message") if error.get(key)]
    return ": ".join(parts) or json.dumps(error, ensure_ascii=False)


# -- reading -----------------------------------------------------------------------------------------------


def index_jsonl(path: str, start: int = 0, stop: int | None = None) -> Part:
    """The part of the JSONL ``path`` whose lines start in ``[start, stop)`` (``start`` a line start).
    Lines that are not JSON, not generate records or torn are skipped and listed."""
    part = Part()
    last_line, last_offset = 0, -1
    for line, offset, value in read_json_lines_at(path, start, stop):
        for gap in range(last_line + 1, line):
            part.skip(gap, "not JSON")
        last_line, last_offset = line, offset
        if isinstance(value, dict) and (is_finished(value) or value.get("error")):
            part.add(offset, line, value)
        else:
            part.skip(line, NOT_A_RECORD)
    part.lines = last_line
    for line, reason in _tail(path, last_line, last_offset if last_offset >= 0 else start, stop, last_offset >= 0):
        part.skip(line, reason)
        part.lines = line
    return part


def index_parquet(path: str) -> Part:
    part = Part()
    for row, record in enumerate(read_parquet_records(path)):
        part.add(row, row + 1, record)
    part.lines = len(part)
    return part


def index_parts(path: str, parallel_bytes: int = PARALLEL_BYTES) -> list[Part]:
    """The parts of the JSONL ``path``, in file order: read side by side when it is large."""
    size = os.path.getsize(path)
    processes = min(PROCESSES, os.cpu_count() or 1, size // max(1, parallel_bytes) + 1)
    forkable = "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
    if processes < 2 or not forkable:
        return [index_jsonl(path)]
    cuts = _line_starts(path, [size * i // processes for i in range(1, processes)])
    ranges = list(zip([0, *cuts], [*cuts, None], strict=True))
    log.info("indexing %s in %d processes", path, len(ranges))
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(len(ranges) - 1, mp_context=context) as pool:
        others = [pool.submit(index_jsonl, path, low, high) for low, high in ranges[1:]]
        first = index_jsonl(path, *ranges[0])
        return [first, *(future.result() for future in others)]


def _line_starts(path: str, cuts: list[int]) -> list[int]:
    """The first line start at or after each cut (deduplicated, before the end of the file)."""
    size = os.path.getsize(path)
    starts = []
    with open(path, "rb") as handle:
        for cut in cuts:
            handle.seek(max(0, cut - 1))
            handle.readline()
            starts.append(handle.tell())
    return sorted({s for s in starts if 0 < s < size})


def _tail(path: str, last_line: int, offset: int, stop: int | None, after: bool) -> Iterator[tuple[int, str]]:
    """The lines from ``offset`` (after the JSON line there when ``after``) to ``stop``: the lines the
    JSON reader skipped at the end of its range (not JSON, or a torn last line)."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        if after:
            offset += len(handle.readline())
        for line, raw in enumerate(handle, start=last_line + 1):
            if stop is not None and offset >= stop:
                return
            yield line, "not JSON" if raw.endswith(b"\n") else "a torn last line (an interrupted run)"
            offset += len(raw)
