"""The pieces of a sweep around one k-subset of a stored pool: its sampling cost and the cache of its
model-calling aggregations (its request and candidates are :func:`~fusion_of_n.records.record_request`
and :func:`~fusion_of_n.records.record_pool`).

Cost (:func:`sampling_tokens`): the subset's sampling tokens are estimated as its share of the record's
stored sampling usage (``usage.sampling.total_tokens``, prompt tokens included), the share being the
subset's part of the pool's completion tokens (k/N when any candidate lacks a count).

Cache (:class:`SweepCache`): one JSONL line per (record id, method, sorted subset indices, fusor/judge
name, digest of the prompt and subset texts) in :data:`CACHE_FILE` under the cache folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..records import prompt_fields, read_records, record_candidates, record_usage, repair_tail

__all__ = ["CACHE_FILE", "SweepCache", "sampling_tokens"]

CACHE_FILE = "sweep-cache.jsonl"


def sampling_tokens(record: Mapping[str, Any], subset: Sequence[int]) -> float:
    """The subset's estimated share of the record's stored sampling tokens (see the module docstring)."""
    candidates = record_candidates(record)
    total = float((record_usage(record).get("sampling") or {}).get("total_tokens") or 0)
    counts = [n for c in candidates if isinstance(n := c.get("completion_tokens"), int)]
    if len(counts) == len(candidates) and sum(counts) > 0:
        return total * float(sum(counts[i] for i in subset)) / float(sum(counts))
    return total * len(subset) / len(candidates)


class SweepCache:
    """Aggregations of model-calling methods, one JSON line each; ``folder=None`` keeps them in memory."""

    def __init__(self, folder: str | Path | None) -> None:
        self.path = Path(folder) / CACHE_FILE if folder is not None else None
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.exists():
            repair_tail(str(self.path))
            for entry in read_records(str(self.path)):
                self.entries[entry["key"]] = entry

    @staticmethod
    def key(record: Mapping[str, Any], method: str, subset: Sequence[int], by: str | None) -> str:
        """(record id, method, sorted pool indices, fusor/judge name) plus a digest of the prompt and the
        subset's texts, so two generate files that reuse an id never share an entry."""
        chosen = [record_candidates(record)[i] for i in sorted(subset)]
        content = [*prompt_fields(record), *(c.get("text") for c in chosen)]
        digest = hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()[:16]
        indices = [c["index"] for c in chosen]
        return json.dumps([str(record["id"]), method, indices, by, digest], ensure_ascii=False)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def put(self, key: str, entry: dict[str, Any]) -> None:
        entry = {"key": key, **entry}
        self.entries[key] = entry
        if self.path is not None:
            os.makedirs(self.path.parent, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
