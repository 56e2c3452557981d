"""What the viewer serves, without HTTP: the indexed DATA files, their searchers, the eval verdicts,
and the list's selection (filter, search, sort), cached per query so that paging is free."""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..records import errors_file
from .detail import record_view, side_view
from .evals import Verdicts
from .index import RecordsFile
from .search import Searcher

log = logging.getLogger(__name__)

SORTS = ("id", "language", "tokens", "seconds", "line")
"""What the list sorts by (besides file order, the default)."""
SELECTIONS = 32
"""Selections (filtered and sorted position lists) kept."""


@dataclass(frozen=True)
class Query:
    """The list's filters: all optional; ``error`` is "1" (failed rows), "0" (finished ones) or ""."""

    q: str = ""
    language: str = ""
    method: str = ""
    flag: str = ""
    error: str = ""
    verdict: str = ""
    sort: str = ""
    order: str = "asc"


class Viewer:
    """The DATA ``paths`` indexed (each with its ``OUTPUT.errors.jsonl`` when it has one and it is not
    given too) and the ``eval_paths`` joined to them."""

    def __init__(self, paths: Sequence[str], eval_paths: Sequence[str] = ()) -> None:
        if not paths:
            raise ConfigError("no DATA given; pass the OUTPUT of `fusion-of-n generate` (JSONL or .parquet)")
        real = [os.path.realpath(p) for p in paths]
        for i, path in enumerate(real):
            if path in real[:i]:
                raise ConfigError(f"DATA {paths[i]} is given twice; pass each file once")
        self.files: list[RecordsFile] = []
        for number, path in enumerate(paths):
            errors = errors_file(path)
            companion = errors if os.path.isfile(errors) and os.path.realpath(errors) not in real else None
            self.files.append(RecordsFile(number, path, companion))
        self.searchers = [Searcher(f) for f in self.files]
        self.verdicts = Verdicts(eval_paths, self.files)
        self._selections: OrderedDict[tuple[int, Query], list[int]] = OrderedDict()
        self._lock = threading.Lock()

    # -- the list ------------------------------------------------------------------------------------

    def select(self, number: int, query: Query) -> list[int]:
        """The positions of file ``number``'s records that pass ``query``, in its order."""
        key = (number, query)
        with self._lock:
            found = self._selections.get(key)
            if found is not None:
                self._selections.move_to_end(key)
                return found
        found = self._select(self.files[number], query)
        with self._lock:
            self._selections[key] = found
            while len(self._selections) > SELECTIONS:
                self._selections.popitem(last=False)
        return found

    def _select(self, file: RecordsFile, query: Query) -> list[int]:
        positions: Iterable[int] = self.searchers[file.number].search(query.q) if query.q else range(len(file))
        if query.language:
            code = _number_of(file.languages.values, query.language)
            positions = [p for p in positions if file.language[p] == code]
        if query.method:
            sets = {n for n, methods in enumerate(file.method_sets.values) if query.method in methods}
            positions = [p for p in positions if file.methods[p] in sets]
        if query.flag:
            sets = {n for n, flags in enumerate(file.flag_sets.values) if query.flag in flags}
            positions = [p for p in positions if file.flags[p] in sets]
        if query.error:
            failed = query.error == "1"
            positions = [p for p in positions if (p in file.errors) == failed]
        if query.verdict:
            judged = self.verdicts.positions(file, query.verdict, query.method or None)
            positions = [p for p in positions if p in judged]
        return _sorted(file, list(positions), query.sort, query.order == "desc")

    def rows(self, number: int, positions: Sequence[int]) -> list[dict[str, Any]]:
        file = self.files[number]
        return [{**file.row(p), "verdicts": self.verdicts.for_row(number, file.ids[p])} for p in positions]

    def facets(self, number: int) -> dict[str, list[str]]:
        return {**self.files[number].facets(), "verdicts": self.verdicts.facets(number)}

    # -- one record ----------------------------------------------------------------------------------

    def find(self, record_id: str, number: int | None = None) -> tuple[RecordsFile, int] | None:
        """The file and position of the record ``record_id`` (in file ``number``, else the first file
        that has it)."""
        files = self.files if number is None else [self.files[number]]
        for file in files:
            position = file.position(record_id)
            if position is not None:
                return file, position
        return None

    def record(self, file: RecordsFile, position: int, query: Query | None = None) -> dict[str, Any]:
        """``/api/record/<id>``: the record, its verdicts and its neighbours (in the list ``query``
        selects when given and the record is in it, else in file order)."""
        record_id = file.ids[position]
        order: Sequence[int] = range(len(file))
        if query is not None:
            selected = self.select(file.number, query)
            order = selected if position in selected else order
        at = order.index(position)
        return {
            "id": record_id,
            "file": file.number,
            "path": file.path,
            **record_view(file.read(position)),
            "verdicts": self.verdicts.for_record(file.number, record_id),
            "prev": file.ids[order[at - 1]] if at > 0 else None,
            "next": file.ids[order[at + 1]] if at + 1 < len(order) else None,
        }

    def side(self, number: int, record_id: str, method: str) -> dict[str, Any] | None:
        found = self.find(record_id, number)
        if found is None:
            return None
        file, position = found
        return {"file": number, "id": record_id, "path": file.path, **side_view(file.read(position), method)}

    def describe(self) -> dict[str, Any]:
        return {"files": [f.describe() for f in self.files], "evals": self.verdicts.describe()}


def _number_of(values: list[Any], value: str) -> int:
    return values.index(value) if value in values else -1


def _natural(text: str) -> tuple[int, int, str]:
    return (0, int(text), text) if text.isascii() and text.isdigit() else (1, 0, text)


def _sorted(file: RecordsFile, positions: list[int], sort: str, descending: bool) -> list[int]:
    """``positions`` sorted by ``sort`` (file order when empty); rows without the value go last."""
    keys: dict[str, Callable[[int], Any]] = {
        "id": lambda p: _natural(file.ids[p]),
        "language": lambda p: file.languages.values[file.language[p]],
        "tokens": lambda p: None if file.tokens[p] < 0 else file.tokens[p],
        "seconds": lambda p: None if math.isnan(file.seconds[p]) else file.seconds[p],
        "line": lambda p: file.line[p],
    }
    if not sort:
        return positions[::-1] if descending else positions
    key = keys[sort]
    valued = [(key(p), p) for p in positions]
    present = sorted((v for v in valued if v[0] is not None), key=lambda v: v[0], reverse=descending)
    return [p for _, p in present] + [p for v, p in valued if v is None]
