"""The pieces of a sweep that rebuild one k-subset of a stored pool: its request, its candidates, its
sampling cost, and the cache of its model-calling aggregations.

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

from ..pipeline.records import read_records
from ..pipeline.runner import repair_tail
from ..sampling import Pool
from ..types import Candidate, Params, Request, Usage, with_system

__all__ = ["CACHE_FILE", "SweepCache", "record_pool", "record_request", "sampling_tokens"]

CACHE_FILE = "sweep-cache.jsonl"


def sampling_tokens(record: Mapping[str, Any], subset: Sequence[int]) -> float:
    """The subset's estimated share of the record's stored sampling tokens (see the module docstring)."""
    candidates = record["candidates"]
    total = float(((record.get("usage") or {}).get("sampling") or {}).get("total_tokens") or 0)
    counts = [c.get("completion_tokens") for c in candidates]
    if all(isinstance(n, int) for n in counts) and sum(counts) > 0:
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
        chosen = sorted(subset)
        content = [record.get("messages") or record.get("prompt"), record.get("system")]
        content += [record["candidates"][i].get("text") for i in chosen]
        digest = hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()[:16]
        indices = [record["candidates"][i]["index"] for i in chosen]
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


def record_request(record: Mapping[str, Any], params: Params | None = None) -> Request:
    """The Request a record's pool was sampled for: its messages (or prompt) and system prompt."""
    messages = record.get("messages") or [{"role": "user", "content": record.get("prompt") or ""}]
    return Request(with_system(messages, record.get("system")), params or Params(), record.get("language"))


def record_pool(record: Mapping[str, Any], subset: Sequence[int]) -> Pool:
    """The candidates at the subset's positions, keeping their pool indices and hygiene flags."""
    stored = [record["candidates"][i] for i in subset]
    candidates = tuple(
        Candidate(
            text=c.get("text") or "",
            model=str(c.get("model")),
            finish_reason=c.get("finish_reason"),
            index=int(c["index"]),
            completion_tokens=c.get("completion_tokens"),
            excluded=bool(c.get("excluded")),
            flags=tuple(c.get("flags") or ()),
        )
        for c in stored
    )
    return Pool(candidates, Usage())
