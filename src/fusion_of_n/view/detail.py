"""One record as the record page shows it: the conversation, each method's result (with the
attribution of an answer that is not one candidate's copy), the candidates side by side and the usage
per stage. Read through :mod:`fusion_of_n.records`; attribution is ``fusion-of-n eval attribution``'s
(:func:`fusion_of_n.eval.attribution.record_attribution`), with each copied span's source in the
candidate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..eval.attribution import record_attribution
from ..records import (
    record_candidates,
    record_chat,
    record_methods,
    record_problem,
    record_prompt_text,
    record_result,
    record_tokens,
    record_usage,
)
from ..types import message_text
from .scan import record_flags


def record_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record's fields for ``/api/record/<id>`` (the caller adds id, file, verdicts, prev, next)."""
    methods = record_methods(record)
    system, error, meta = record.get("system"), record.get("error"), record.get("meta")
    usage = record_usage(record)
    return {
        "line": record.get("line"),
        "language": record.get("language") if isinstance(record.get("language"), str) else None,
        "messages": [{"role": str(m.get("role") or ""), "content": message_text(m)} for m in record_chat(record)],
        "system": system if isinstance(system, str) else None,
        "error": error if isinstance(error, Mapping) else ({"message": str(error)} if error else None),
        "problem": record_problem(record),
        "meta": meta if isinstance(meta, Mapping) else {},
        "methods": methods,
        "flags": list(record_flags(record)),
        "results": {method: result_view(record, method) for method in methods},
        "candidates": [candidate_view(c, methods) for c in record_candidates(record) if isinstance(c, Mapping)],
        "usage": dict(usage),
        "tokens": record_tokens(record) if usage else None,
        "seconds": record.get("seconds"),
        "failures": record.get("failures") if isinstance(record.get("failures"), list) else [],
        "adaptive": record.get("adaptive"),
    }


def result_view(record: Mapping[str, Any], method: str) -> dict[str, Any]:
    entry = record_result(record, method) or {}
    text, chosen = entry.get("text"), entry.get("chosen")
    order = entry.get("presentation_order")
    return {
        "text": text if isinstance(text, str) else "",
        "chosen": chosen if isinstance(chosen, int) and not isinstance(chosen, bool) else None,
        "score": entry.get("score"),
        "flags": _strings(entry.get("flags")),
        "analysis": entry.get("analysis") if isinstance(entry.get("analysis"), str) else None,
        "by": entry.get("by"),
        "presentation_order": order if isinstance(order, list) else None,
        "strategy": entry.get("strategy"),
        "evidence": entry.get("evidence"),
        "usage": record_usage(record).get(method),
        "attribution": attribution_view(record, method) if chosen is None else None,
    }


def attribution_view(record: Mapping[str, Any], method: str) -> dict[str, Any] | None:
    """Where ``method``'s answer comes from: spans of the answer (character offsets, end exclusive)
    with the pool index of the candidate they were copied from and the span there (``cstart``,
    ``cend``), the share per pool index and the novel share."""
    try:
        attributed = record_attribution(record, method)
    except (ConfigError, KeyError, TypeError, ValueError):  # a damaged record: its problem is shown instead
        return None
    if attributed is None:
        return None
    compared, found = attributed
    return {
        "spans": [
            {"start": start, "end": end, "candidate": compared[who].index, "cstart": cstart, "cend": cend}
            for start, end, who, cstart, cend in found.copies
        ],
        "shares": {str(c.index): round(share, 6) for c, share in zip(compared, found.shares, strict=True)},
        "novel": round(found.novel, 6),
        "chars": found.chars,
    }


def candidate_view(candidate: Mapping[str, Any], methods: list[str]) -> dict[str, Any]:
    stored = candidate.get("scores")
    scores: Mapping[str, Any] = stored if isinstance(stored, Mapping) else {}
    tokens = candidate.get("completion_tokens")
    return {
        "index": candidate.get("index"),
        "model": candidate.get("model"),
        "text": candidate.get("text") if isinstance(candidate.get("text"), str) else "",
        "tokens": tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None,
        "finish_reason": candidate.get("finish_reason"),
        "flags": _strings(candidate.get("flags")),
        "excluded": bool(candidate.get("excluded")),
        "scores": {**dict.fromkeys(methods), **scores},
    }


def side_view(record: Mapping[str, Any], method: str) -> dict[str, Any]:
    """One side of ``/api/compare``: a method's answer on a record, with its prompt."""
    entry = record_result(record, method) or {}
    text = entry.get("text")
    return {
        "method": method,
        "text": text if isinstance(text, str) else "",
        "flags": _strings(entry.get("flags")),
        "prompt": record_prompt_text(record),
        "language": record.get("language") if isinstance(record.get("language"), str) else None,
    }


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []
