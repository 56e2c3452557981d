"""The index of one records file: what the list shows and filters on, one compact row per record, and
where each record is, so that a record is read on demand and the data is never loaded whole.

A JSONL file is read once, line by line (:mod:`.scan`, through
:func:`~fusion_of_n.records.read_json_lines_at`: a torn last line and lines that are not JSON are
skipped as every reader skips them, and listed in ``skipped``; a large file in a few byte ranges read
side by side); per record the index keeps its byte offset, id, record ``line``, language, the first
:data:`~.scan.PREVIEW` characters of its prompt, its methods, flags, error, total tokens and seconds. The small
fields live in typed arrays and the repeated ones (language, method and flag sets) as numbers into a
table, so memory is proportional to the number of records, not to their size. A record is read again
by seeking to its offset. A Parquet file (``generate --format parquet``) is indexed through
:func:`~fusion_of_n.records.read_parquet_records` and its records are read by position
(:func:`~fusion_of_n.records.read_parquet_range`, a block of :data:`BLOCK` rows at a time, the last
few blocks kept). The ``OUTPUT.errors.jsonl`` next to an output (the failed rows of its last run) is
indexed with it when present, so the list shows those rows and their errors.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from ..errors import ConfigError
from ..records import read_parquet_range
from .scan import PARALLEL_BYTES, Part, Table, index_parquet, index_parts

log = logging.getLogger(__name__)

BLOCK = 256
"""Parquet records read at once when one is asked for (its neighbours are usually next)."""
KEPT = 100
"""Skipped lines listed per file (all are counted)."""
WHAT = "pass the OUTPUT of `fusion-of-n generate` (JSONL, or .parquet with --format parquet)"


class RecordsFile:
    """The index of ``path`` (and of ``errors``, the failed rows of its last run, when given)."""

    def __init__(
        self, number: int, path: str, errors: str | None = None, *, parallel_bytes: int = PARALLEL_BYTES
    ) -> None:
        self.number, self.path = number, path
        self.parallel_bytes = parallel_bytes
        self.parquet = path.endswith(".parquet")
        self.sources = [path] if errors is None else [path, errors]
        self.source = array("B")  # which of ``sources`` holds the record
        self.offset = array("q")  # its byte offset there (its row position in a Parquet file)
        self.line = array("q")  # the record's ``line`` (its input row), else its line in the file
        self.tokens = array("q")  # -1: none
        self.seconds = array("d")  # NaN: none
        self.language, self.methods, self.flags = array("H"), array("H"), array("H")
        self.languages, self.method_sets, self.flag_sets = Table(), Table(), Table()
        self.ids: list[str] = []
        self.prompts: list[str] = []
        self.errors: dict[int, str] = {}  # position -> "stage: Type: message"
        self.by_id: dict[str, int] = {}
        self.bounds: list[tuple[int, int]] = []  # per source: its positions
        self.skipped: list[dict[str, Any]] = []
        self.skipped_count = 0
        self._blocks: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()
        self._index()

    def __len__(self) -> int:
        return len(self.ids)

    # -- building ------------------------------------------------------------------------------------

    def _index(self) -> None:
        if not os.path.isfile(self.path):
            raise ConfigError(f"{self.path}: no such file; {WHAT}")
        for number, source in enumerate(self.sources):
            low = len(self.ids)
            parquet = number == 0 and self.parquet
            base = 0
            for part in [index_parquet(source)] if parquet else index_parts(source, self.parallel_bytes):
                self.extend(part, number, base)
                base += part.lines
            self.bounds.append((low, len(self.ids)))
        if not self.ids:
            raise ConfigError(f"{self.path}: {self._why_empty()}; {WHAT}")
        log.info("indexed %d records of %s (%d lines skipped)", len(self), self.path, self.skipped_count)

    def extend(self, part: Part, source: int, base: int) -> None:
        """Append ``part`` (read from ``sources[source]``, its line 1 being the file's line
        ``base + 1``), renumbering its lines, its table values and its positions."""
        first = len(self.ids)
        for line, reason in part.skipped:
            if len(self.skipped) < KEPT:
                self.skipped.append({"path": self.sources[source], "line": base + line, "reason": reason})
        self.skipped_count += part.skipped_count
        for raw_id, line in zip(part.ids, part.physical, strict=True):
            record_id = raw_id if raw_id is not None else f"line-{base + line}"
            if source and record_id in self.by_id:  # a failed row that a later run finished
                record_id = f"{record_id}@errors-line-{base + line}"
            self.by_id.setdefault(record_id, len(self.ids))
            self.ids.append(record_id)
        self.source.extend(array("B", [source]) * len(part))
        self.offset.extend(part.offset)
        self.line.extend(
            array("q", [s if s >= 0 else base + p for s, p in zip(part.stated, part.physical, strict=True)])
        )
        self.tokens.extend(part.tokens)
        self.seconds.extend(part.seconds)
        self._renumber(self.language, self.languages, part.language, part.languages)
        self._renumber(self.methods, self.method_sets, part.methods, part.method_sets)
        self._renumber(self.flags, self.flag_sets, part.flags, part.flag_sets)
        self.prompts.extend(part.prompts)
        self.errors.update({first + position: error for position, error in part.errors.items()})

    @staticmethod
    def _renumber(column: array[int], table: Table, numbers: array[int], theirs: Table) -> None:
        mapping = [table.number(value) for value in theirs.values]
        column.extend(array("H", [mapping[n] for n in numbers]))

    def _why_empty(self) -> str:
        if self.skipped_count == 0:
            return "holds no records (an empty file)"
        try:
            small = os.path.getsize(self.path) < 64 << 20  # an eval result is small; a big file is not one
            with open(self.path, encoding="utf-8") as handle:
                whole = json.load(handle) if small else None
        except (OSError, ValueError):
            whole = None
        if isinstance(whole, dict) and "kind" in whole:
            return f"is a {whole['kind']!r} eval result, not generate records; pass it with --eval"
        first = self.skipped[0]
        return (
            f"holds no generate records ({self.skipped_count} lines skipped; line {first['line']}: {first['reason']})"
        )

    # -- reading -------------------------------------------------------------------------------------

    def position(self, record_id: str) -> int | None:
        return self.by_id.get(record_id)

    def read(self, position: int) -> dict[str, Any]:
        """The whole record at ``position`` (read from the file again)."""
        source, offset = self.source[position], self.offset[position]
        if source == 0 and self.parquet:
            return self._parquet_record(offset)
        with open(self.sources[source], "rb") as handle:
            handle.seek(offset)
            raw = handle.readline()
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise ConfigError(
                f"{self.sources[source]} changed since the viewer indexed it (no record at byte {offset} any more); "
                "restart fusion-of-n view"
            )
        return value

    def _parquet_record(self, row: int) -> dict[str, Any]:
        block = row // BLOCK
        with self._lock:
            records = self._blocks.get(block)
            if records is None:
                records = read_parquet_range(self.path, block * BLOCK, (block + 1) * BLOCK)
                self._blocks[block] = records
                while len(self._blocks) > 4:
                    self._blocks.popitem(last=False)
            self._blocks.move_to_end(block)
        return dict(records[row - block * BLOCK])

    def lines_of(self, source: int) -> Iterator[tuple[int, bytes]]:
        """(position, raw line) of every record of a JSONL ``source``, in file order (for search)."""
        low, high = self.bounds[source]
        with open(self.sources[source], "rb") as handle:
            for position in range(low, high):
                handle.seek(self.offset[position])
                yield position, handle.readline()

    # -- the list ------------------------------------------------------------------------------------

    def row(self, position: int) -> dict[str, Any]:
        """The list's row of one record (without eval verdicts)."""
        tokens, seconds = self.tokens[position], self.seconds[position]
        return {
            "id": self.ids[position],
            "file": self.number,
            "line": self.line[position],
            "language": self.languages.values[self.language[position]],
            "prompt": self.prompts[position],
            "methods": list(self.method_sets.values[self.methods[position]]),
            "flags": list(self.flag_sets.values[self.flags[position]]),
            "error": self.errors.get(position),
            "tokens": None if tokens < 0 else tokens,
            "seconds": None if math.isnan(seconds) else seconds,
        }

    def facets(self) -> dict[str, list[str]]:
        return {
            "languages": sorted(v for v in self.languages.values if v is not None),
            "methods": list(dict.fromkeys(m for methods in self.method_sets.values for m in methods)),
            "flags": sorted({f for flags in self.flag_sets.values for f in flags}),
        }

    def describe(self) -> dict[str, Any]:
        return {
            "file": self.number,
            "path": self.path,
            "rows": len(self),
            "errors_path": self.sources[1] if len(self.sources) > 1 else None,
            "error_rows": len(self.errors),
            "skipped": self.skipped_count,
            "skipped_lines": self.skipped,
        }
