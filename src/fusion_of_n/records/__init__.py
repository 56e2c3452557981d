"""The record format: what ``generate`` writes per input row, and the one place that builds, writes,
repairs, reads, checks and interprets it. Eval, export, sweep, train and the benchmarks read records
only through this package (:mod:`.access` for the prompt, results and pool of a record).

Schema version :data:`RECORD_VERSION` (1). Records do not carry the number; it names this document,
and changes with any field that changes meaning or shape.

A finished row's record (one JSON line of ``OUTPUT``)::

    {"id": "...", "line": 7, "prompt": "..." | null, "messages": [...] | null, "language": "de" | null,
     "system": "..." | null, "meta": {...},
     "candidates": [{"index": 0, "model": "...", "text": "...", "finish_reason": "stop",
                     "completion_tokens": 12, "excluded": false, "flags": [], "scores": {"bon": 7.2}}],
     "results": {"fusion": {"text": "...", "chosen": null, "score": null, "analysis": "...", "flags": [],
                            "by": "openai:big@..."},
                 "bon": {"text": "...", "chosen": 3, "score": 7.2, "analysis": null, "flags": [], "by": "judge:..."}},
     "usage": {"sampling": USAGE, "bon": USAGE, "fusion": USAGE, "total": USAGE},
     "seconds": 3.2, "failures": [{"model": "...", "error": "..."}], "error": null}

- ``id``: the input row's id as a string (an integer id as its digits), else a hash of the row
  (readers also accept an integer); ``line``: its 1-based position in the input.
- ``prompt`` or ``messages`` (the other is null): the input's prompt string, or its chat as a list of
  ``{role, content}`` messages (content a string or OpenAI content parts), untouched.
- ``language``: the input's target language (name or code), else the one detected in the prompt,
  else null.
- ``system``: the run's system prompt (``--system``), or null. It was sent first unless ``messages``
  already held a system or developer message (:func:`~fusion_of_n.types.with_system`): the
  conversation sent is :func:`.access.record_messages`, the request :func:`.access.record_request`.
- ``meta``: every other input column, as read.
- ``candidates``: the pool in pool order; ``index`` is the pool position every result and score refers
  to; ``excluded`` with its ``flags`` (``empty``, ``truncated``) marks a candidate hygiene kept out of
  aggregation; ``scores`` holds each method's score of it (``bon``'s judge or reward score, ...).
- ``results``: one entry per method (``fusion``, ``bon``, ``vote``, ``usc``, ``auto``, ...): the answer
  ``text``, the ``chosen`` pool index of a selection (null for a fused answer) and its ``score``, the
  fusor's ``analysis``, ``flags`` (``fusor_truncated``, ``all_candidates_flagged``, ...) and ``by``, the
  fusor, scorer or selector that decided; ``auto`` adds ``strategy`` and ``evidence``, ``fusion`` its
  ``presentation_order`` (the pool indices in the order the fusor saw them; absent in older records).
- ``usage``: per stage (``sampling``, then each method's own calls) and ``total``, each
  ``{calls, prompt_tokens, completion_tokens, total_tokens, seconds}``.
- ``seconds``: the row's wall time; ``failures``: upstream failures the pool survived; ``error``: null.
- ``adaptive`` (only with ``--adaptive``): ``{planned, drawn, rounds, saved_samples,
  saved_completion_tokens}``.

A failed row's record (in ``OUTPUT.errors.jsonl``) holds ``id``, ``line``, ``prompt``, ``language``,
``meta`` and ``"error": {"stage": "sampling" | METHOD | "record", "type": "RuntimeError", "message":
"..."}`` (keys redacted), never a partial answer; a bad input row's holds ``id`` (or null), ``line`` and
``"error": {"stage": "input", "message": "..."}``. :func:`.read.record_problem` checks one record
against this shape.

Files (:mod:`.write`): ``OUTPUT`` holds finished records only, appended whole; ``OUTPUT.errors.jsonl``
(:func:`.write.errors_file`) the error records of the last run; ``OUTPUT.run.json``
(:func:`.write.run_file`) what produced the file, so a resumed run refuses to mix pools. With
``--format parquet`` the records are appended to ``OUTPUT.journal.jsonl`` and written as Parquet at the
end, the fields whose shape varies between rows (:data:`.read.PARQUET_JSON_FIELDS` and each candidate's
``scores``) as JSON text.
"""

from __future__ import annotations

from .access import (
    candidate_texts,
    is_finished,
    methods_in,
    pool_size,
    prompt_fields,
    record_candidates,
    record_chat,
    record_messages,
    record_methods,
    record_pool,
    record_prompt_text,
    record_request,
    record_result,
    record_tokens,
    record_usage,
    result_text,
    usable_candidates,
)
from .read import (
    PARQUET_JSON_FIELDS,
    RECORD_FIELDS,
    REPAIR,
    completed_ids,
    read_any_records,
    read_checked_records,
    read_json_lines,
    read_json_lines_at,
    read_parquet_range,
    read_parquet_records,
    read_records,
    record_problem,
)
from .write import (
    RecordWriter,
    Row,
    build_record,
    error_record,
    errors_file,
    input_error_record,
    journal_file,
    record_line,
    repair_tail,
    run_file,
    write_parquet,
)

RECORD_VERSION = 1
"""The version of the schema in this package's docstring."""

__all__ = [
    "PARQUET_JSON_FIELDS",
    "RECORD_FIELDS",
    "RECORD_VERSION",
    "REPAIR",
    "RecordWriter",
    "Row",
    "build_record",
    "candidate_texts",
    "completed_ids",
    "error_record",
    "errors_file",
    "input_error_record",
    "is_finished",
    "journal_file",
    "methods_in",
    "pool_size",
    "prompt_fields",
    "read_any_records",
    "read_checked_records",
    "read_json_lines",
    "read_json_lines_at",
    "read_parquet_range",
    "read_parquet_records",
    "read_records",
    "record_candidates",
    "record_chat",
    "record_line",
    "record_messages",
    "record_methods",
    "record_pool",
    "record_problem",
    "record_prompt_text",
    "record_request",
    "record_result",
    "record_tokens",
    "record_usage",
    "repair_tail",
    "result_text",
    "run_file",
    "usable_candidates",
    "write_parquet",
]
