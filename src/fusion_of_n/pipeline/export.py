"""Export generated records as supervised fine-tuning data (``fusion-of-n export``).

Each usable record becomes one JSON line in the conversational shape TRL's ``SFTTrainer`` takes::

    {"id": "...", "messages": [...the record's prompt messages, system included...,
                               {"role": "assistant", "content": "<results[METHOD].text>"}]}

A record is skipped, and counted under its reason, when it has an error (``error``), has no result
for the method (``method missing``), that result failed (``method error``), its text is empty
(``empty text``), it carries a flag in ``skip_flags`` (``flagged:FLAG``) or it has neither prompt
nor messages (``no prompt``). The default ``skip_flags`` drop answers known to be broken: a fused
answer cut at max_tokens and an answer from a pool whose candidates were all flagged. The prompt
messages are the conversation the pipeline sent (:func:`~fusion_of_n.records.record_messages`: the
record's ``system`` text first unless its messages already hold a system or developer message).
The target file is written atomically: readers see the old file or the whole new one.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from ..errors import ConfigError
from ..records import read_records, record_chat, record_messages, record_methods, record_result

log = logging.getLogger(__name__)

DEFAULT_SKIP_FLAGS = ("all_candidates_flagged", "fusor_truncated")


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote: ``written`` rows, ``skipped`` records and how many per reason."""

    written: int
    skipped: int
    reasons: Mapping[str, int] = field(default_factory=dict)


def export_sft(output: str, method: str, to: str, *, skip_flags: Collection[str] = DEFAULT_SKIP_FLAGS) -> ExportSummary:
    """Write the ``method`` answers of the records in ``output`` to ``to`` as chat-format JSON Lines."""
    if os.path.abspath(output) == os.path.abspath(to):
        raise ConfigError(f"the export target {to!r} is the generate output itself; choose another file")
    if not os.path.isfile(output):
        raise ConfigError(f"{output!r} does not exist; run fusion-of-n generate first or check the path")
    folder = os.path.dirname(os.path.abspath(to))
    if not os.path.isdir(folder):
        raise ConfigError(f"the folder of the export target {to!r} does not exist; create it first")
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=folder, prefix=f".{os.path.basename(to)}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            written, reasons, methods = _write(handle, output, method, skip_flags)
            handle.flush()
            os.fsync(handle.fileno())
        if method not in methods:
            found = ", ".join(sorted(methods)) or "none (no record has results)"
            raise ConfigError(f"no record in {output!r} has results for method {method!r}; methods found: {found}")
        os.replace(handle.name, to)
    except BaseException:
        os.unlink(handle.name)
        raise
    summary = ExportSummary(written, sum(reasons.values()), dict(reasons))
    log.info("exported %d %s answers from %s to %s; skipped %s", written, method, output, to, dict(reasons))
    return summary


def _write(
    handle: IO[str], output: str, method: str, skip_flags: Collection[str]
) -> tuple[int, Counter[str], set[str]]:
    written, reasons, methods = 0, Counter[str](), set[str]()
    for record in read_records(output):
        methods.update(record_methods(record))
        row = sft_row(record, method, skip_flags)
        if isinstance(row, str):
            reasons[row] += 1
            continue
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        written += 1
    return written, reasons, methods


def sft_row(
    record: Mapping[str, Any], method: str, skip_flags: Collection[str] = DEFAULT_SKIP_FLAGS
) -> dict[str, Any] | str:
    """One record as an SFT row, or the reason it is skipped."""
    if record.get("error"):
        return "error"
    result = record_result(record, method)
    if result is None:
        return "method missing"
    if result.get("error"):
        return "method error"
    text = result.get("text")
    if not isinstance(text, str) or not text.strip():
        return "empty text"
    flagged = [flag for flag in result.get("flags") or () if flag in skip_flags]
    if flagged:
        return f"flagged:{flagged[0]}"
    if not record_chat(record):
        return "no prompt"
    prompt = [dict(message) for message in record_messages(record)]
    return {"id": record.get("id"), "messages": [*prompt, {"role": "assistant", "content": text}]}
