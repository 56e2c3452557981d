"""Training examples for a student: generate records (or ``export`` rows) -> prompt/completion pairs.

One example per usable record, in the conversational prompt/completion shape TRL's ``SFTTrainer``
takes (so the loss is computed on the completion only, and the base model's own chat template is
applied)::

    {"id": "...", "prompt": [...the conversation as sent to the teachers, system included...],
     "completion": [{"role": "assistant", "content": "<results[METHOD].text>"}]}

Accepted files, told apart by content, several at once:

- ``generate`` outputs, JSONL or Parquet: the prompt is the conversation the teachers were sent
  (:func:`fusion_of_n.records.record_messages`: the record's messages or prompt, the run's ``system``
  text first; :func:`..pipeline.export.sft_row`, the rule ``export`` uses); the completion is
  ``results[METHOD].text``.
- ``export`` files (``{"id", "messages": [..., {"role": "assistant", ...}]}``): the last assistant
  message is the completion; ``METHOD`` is whatever the export was made with.

A record is left out, and counted under its reason, when it has an error, no result for the method, a
failed or empty result, or a result flag in :data:`TRAIN_SKIP_FLAGS` (``--include-flagged`` keeps
flagged results). The held-out split is chosen by a seeded hash of each example's id, so it does not
depend on the order of the records and stays put when a file grows.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..pipeline.export import sft_row
from ..records import read_any_records, record_methods

__all__ = ["TRAIN_SKIP_FLAGS", "Examples", "load_examples", "split_examples"]

TRAIN_SKIP_FLAGS = ("fusor_truncated", "truncated", "empty_fusion", "all_candidates_flagged")
"""Result flags that mark a broken answer: cut at max_tokens, an empty fusion that fell back to a
candidate, or an answer from a pool whose candidates were all flagged."""


@dataclass(frozen=True)
class Examples:
    """The usable examples of the data files, why the others were left out, and what the files hold."""

    rows: list[dict[str, Any]]
    exclusions: Mapping[str, int] = field(default_factory=dict)
    methods: frozenset[str] = frozenset()  # the methods the generate records have results for
    formats: Mapping[str, str] = field(default_factory=dict)  # path -> "generate" | "export"


def load_examples(paths: Sequence[str], method: str, *, include_flagged: bool = False) -> Examples:
    """Every usable example of ``paths`` for ``method``; ConfigError when a file is missing, holds no
    results for ``method`` (naming the methods it has), or nothing usable is left."""
    skip_flags = () if include_flagged else TRAIN_SKIP_FLAGS
    rows: list[dict[str, Any]] = []
    exclusions: Counter[str] = Counter()
    methods: set[str] = set()
    formats: dict[str, str] = {}
    for path in paths:
        if not os.path.isfile(path):
            raise ConfigError(f"training data {path!r} does not exist; pass a generate output or an export file")
        seen, kind = 0, "export"
        for record in read_any_records(path):
            seen += 1
            example, reason = _example(record, method, skip_flags)
            if "results" in record:  # a generate record (an export row has none)
                kind = "generate"
                methods.update(record_methods(record))
            if example is None:
                exclusions[reason] += 1
            else:
                rows.append(example)
        if seen == 0:
            raise ConfigError(f"training data {path!r} holds no records; run fusion-of-n generate first")
        formats[path] = kind
    generate_files = [p for p, k in formats.items() if k == "generate"]
    if generate_files and method not in methods:
        found = ", ".join(sorted(methods)) or "none (no record has results)"
        raise ConfigError(
            f"no record in {', '.join(generate_files)} has results for method {method!r}; "
            f"methods present: {found}; pass one with --method"
        )
    if not rows:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(exclusions.items())) or "no records"
        raise ConfigError(
            f"no usable training examples for method {method!r} ({reasons}); "
            "check the generate run's errors, or keep flagged answers with --include-flagged"
        )
    _check_unique_ids(rows)
    return Examples(rows, dict(sorted(exclusions.items())), frozenset(methods), formats)


def _example(record: Mapping[str, Any], method: str, skip_flags: Sequence[str]) -> tuple[dict[str, Any] | None, str]:
    if "results" not in record and record.get("messages") and not record.get("error"):
        return _export_example(record)
    row = sft_row(record, method, skip_flags)
    if isinstance(row, str):
        return None, row
    return _split_turns(row["id"], row["messages"])


def _export_example(record: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    messages = record["messages"]
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return None, "malformed messages"
    if messages[-1].get("role") != "assistant":
        return None, "no assistant answer"
    text = messages[-1].get("content")
    if not isinstance(text, str) or not text.strip():
        return None, "empty text"
    return _split_turns(record.get("id"), messages)


def _split_turns(identifier: Any, messages: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    prompt = [{"role": m["role"], "content": m.get("content")} for m in messages[:-1]]
    if not any(m["role"] == "user" for m in prompt):
        return None, "no prompt"
    completion = [{"role": "assistant", "content": messages[-1]["content"]}]
    ident = str(identifier) if identifier is not None else _content_id(prompt)
    return {"id": ident, "prompt": prompt, "completion": completion}, ""


def _content_id(prompt: list[dict[str, Any]]) -> str:
    return hashlib.sha256(repr(prompt).encode()).hexdigest()[:16]


def _check_unique_ids(rows: Sequence[Mapping[str, Any]]) -> None:
    counts = Counter(row["id"] for row in rows)
    repeated = [ident for ident, count in counts.items() if count > 1]
    if repeated:
        raise ConfigError(
            f"{len(repeated)} example id(s) appear more than once (first: {repeated[0]!r}); "
            "the same generate output was probably passed twice"
        )


def split_examples(
    rows: Sequence[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, eval): ``ceil(fraction * len(rows))`` examples held out, chosen by a seeded hash of their
    ids; at least one example always stays for training."""
    if not 0 <= fraction < 1:
        raise ConfigError(f"--eval-fraction must be at least 0 and below 1 (got {fraction})")
    held = min(math.ceil(fraction * len(rows)), len(rows) - 1) if fraction > 0 else 0
    order = sorted(rows, key=lambda row: hashlib.sha256(f"{seed}:{row['id']}".encode()).hexdigest())
    chosen = {id(row) for row in order[:held]}
    return [r for r in rows if id(r) not in chosen], [r for r in rows if id(r) in chosen]
