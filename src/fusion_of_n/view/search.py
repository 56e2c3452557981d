"""Text search over the prompts and answers of an indexed file: case-insensitive substring, as
``str.lower()`` sees it, over every message of the conversation and every method's answer text.

A query streams the file once, in chunks of whole lines. A chunk whose lowered bytes do not hold the
query as JSON writes it (``json.dumps`` escapes) holds no match and costs one ``bytes.lower`` and one
``find``; each line that does is parsed and its prompt and answers compared for real, so a hit in a
candidate, the analysis or ``meta`` is not a match. An ASCII query is looked for in the bytes; a query
with other characters (and the rare chunk with a character whose lower case is ASCII: the Kelvin sign,
the dotted capital I) in the decoded text, where a line holding ``\\u`` escapes (a writer with
``ensure_ascii``) is always parsed. (Those two characters written as ``\\u`` escapes are the one case an
ASCII query misses.) Parquet files are read column-wise (prompt, messages, results).
:class:`Searcher` keeps the last :data:`CACHED` queries' matches per file.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

from ..records import read_parquet_records, record_chat, record_methods, record_result
from ..types import message_text
from .index import RecordsFile

CHUNK = 4 << 20
"""Bytes read at a time (then extended to the end of the line)."""
CACHED = 16
"""Queries whose matching positions are kept per file."""
_LOWER_TO_ASCII = ("\u212a".encode(), "\u0130".encode())  # K (Kelvin) -> k, İ -> i + dot: the exceptions


def record_matches(record: Mapping[str, Any], needle: str) -> bool:
    """Whether ``needle`` (already lower case) is in the record's conversation or one of its answers."""
    for message in record_chat(record):
        if needle in message_text(message).lower():
            return True
    for method in record_methods(record):
        text = (record_result(record, method) or {}).get("text")
        if isinstance(text, str) and needle in text.lower():
            return True
    return False


class Searcher:
    """The positions of ``file``'s records that match a query (ascending), cached per query."""

    def __init__(self, file: RecordsFile) -> None:
        self.file = file
        self._cache: OrderedDict[str, list[int]] = OrderedDict()
        self._lock = threading.Lock()  # one scan at a time; a repeated query waits and is then cached

    def search(self, query: str) -> list[int]:
        needle = query.lower()
        with self._lock:
            found = self._cache.get(needle)
            if found is None:
                found = sorted(self._scan(needle))
                self._cache[needle] = found
                while len(self._cache) > CACHED:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(needle)
            return found

    def _scan(self, needle: str) -> Iterator[int]:
        for source in range(len(self.file.sources)):
            if source == 0 and self.file.parquet:
                yield from self._scan_parquet(needle)
            else:
                yield from self._scan_jsonl(source, needle)

    def _scan_parquet(self, needle: str) -> Iterator[int]:
        low, _ = self.file.bounds[0]
        columns = ["prompt", "messages", "results"]
        for row, record in enumerate(read_parquet_records(self.file.path, columns=columns)):
            if record_matches(record, needle):
                yield low + row

    def _scan_jsonl(self, source: int, needle: str) -> Iterator[int]:
        low, high = self.file.bounds[source]
        if low == high:
            return
        offsets = self.file.offset
        escaped = json.dumps(needle, ensure_ascii=False)[1:-1]
        pattern, ascii_only = escaped.encode(), escaped.isascii()
        with open(self.file.sources[source], "rb") as handle:
            handle.seek(offsets[low])
            start = offsets[low]
            while True:
                chunk = handle.read(CHUNK)
                if not chunk:
                    return
                if not chunk.endswith(b"\n"):
                    chunk += handle.readline()
                for offset in sorted(set(_suspects(chunk, pattern, escaped, ascii_only))):
                    position = bisect.bisect_right(offsets, start + offset, low, high) - 1
                    if position < low or offsets[position] != start + offset:
                        continue  # a line the index skipped (not JSON, not a record)
                    try:
                        record = json.loads(chunk[offset : chunk.index(b"\n", offset) + 1])
                    except ValueError:
                        continue  # the file changed since it was indexed
                    if isinstance(record, dict) and record_matches(record, needle):
                        yield position
                start += len(chunk)
                if start > offsets[high - 1]:
                    return  # lines appended since the index was built are not in it


def _suspects(chunk: bytes, pattern: bytes, escaped: str, ascii_only: bool) -> Iterator[int]:
    """The start of each line of ``chunk`` that may hold the query (and must then be parsed)."""
    if ascii_only and (chunk.isascii() or not any(special in chunk for special in _LOWER_TO_ASCII)):
        lowered = chunk.lower()
        at = lowered.find(pattern)
        while at >= 0:
            yield chunk.rfind(b"\n", 0, at) + 1
            end = chunk.find(b"\n", at)
            at = lowered.find(pattern, end + 1) if end >= 0 else -1
        return
    line = 0
    for raw in chunk.split(b"\n"):
        text = raw.decode("utf-8", "replace").lower()
        if escaped in text or "\\u" in text:
            yield line
        line += len(raw) + 1
