"""What a record means: its conversation, request, results and pool, read the same way by every reader.

Readers never index a record by hand for these: the rules (a ``prompt`` is one user turn, the run's
``system`` goes first unless the chat has its own, a result is looked up by method) live here once.
A record is any mapping in the shape of the package docstring; missing or mistyped fields read as
empty, except :func:`result_text`, which names what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import ConfigError
from ..sampling import Pool
from ..types import Candidate, Message, Params, Request, Usage, message_text, with_system

Record = Mapping[str, Any]


# -- the prompt ----------------------------------------------------------------------------------------


def record_chat(record: Record) -> tuple[Message, ...]:
    """The row's conversation as the input gave it: its ``messages``, else its ``prompt`` as one user
    turn; () when it has neither. Without the run's system prompt (see :func:`record_messages`)."""
    messages = record.get("messages")
    if isinstance(messages, list | tuple) and messages:
        return tuple(m for m in messages if isinstance(m, Mapping))
    prompt = record.get("prompt")
    return ({"role": "user", "content": prompt},) if isinstance(prompt, str) else ()


def record_messages(record: Record) -> tuple[Message, ...]:
    """The conversation the candidates were sampled for, as the pipeline sent it: :func:`record_chat`
    (an empty user turn when there is none) with the run's ``system`` first unless the chat holds a
    system or developer message (:func:`~fusion_of_n.types.with_system`)."""
    system = record.get("system")
    chat = record_chat(record) or ({"role": "user", "content": ""},)
    return with_system(chat, system if isinstance(system, str) else None)


def record_request(record: Record, params: Params | None = None) -> Request:
    """The Request a record's pool was sampled for (:func:`record_messages`, its ``language``), with
    ``params`` (default: the backend's defaults)."""
    language = record.get("language")
    return Request(record_messages(record), params or Params(), language if isinstance(language, str) else None)


def record_prompt_text(record: Record) -> str:
    """The record's prompt as text: its ``prompt``, else the text of the last user message, else ""."""
    prompt = record.get("prompt")
    if isinstance(prompt, str) and prompt:
        return prompt
    for message in reversed(record_chat(record)):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def prompt_fields(record: Record) -> list[Any]:
    """The prompt as stored (``messages`` or ``prompt``, then ``system``), raw: a stable identity of the
    prompt for cache keys, which must not change when the reading rules do."""
    return [record.get("messages") or record.get("prompt"), record.get("system")]


# -- the results ---------------------------------------------------------------------------------------


def record_methods(record: Record) -> list[str]:
    """The methods the record has results for, in the record's order."""
    results = record.get("results")
    return [str(method) for method in results] if isinstance(results, Mapping) else []


def methods_in(records: Iterable[Record]) -> list[str]:
    """Every method any of ``records`` has results for, in order of first appearance."""
    return list(dict.fromkeys(method for record in records for method in record_methods(record)))


def record_result(record: Record, method: str) -> Mapping[str, Any] | None:
    """The ``results[method]`` entry (text, chosen, score, analysis, flags, by), or None without one."""
    results = record.get("results")
    entry = results.get(method) if isinstance(results, Mapping) else None
    return entry if isinstance(entry, Mapping) else None


def result_text(record: Record, method: str) -> str:
    """The answer ``method`` gave for this record; a ConfigError naming the record, the method and the
    methods it has when there is none."""
    entry = record_result(record, method)
    text = entry.get("text") if entry is not None else None
    if isinstance(text, str):
        return text
    if entry is not None:
        raise ConfigError(f"record {record.get('id')!r}: results.{method}.text is not a string; regenerate the record")
    have = ", ".join(record_methods(record)) or "none"
    raise ConfigError(
        f"record {record.get('id')!r} has no result for method {method!r} (methods present: {have}); "
        "choose one of those or generate with that method"
    )


def is_finished(record: Record) -> bool:
    """A finished row's record: it holds a candidate list and a results object (a failed row's record
    holds an ``error`` instead)."""
    return isinstance(record.get("candidates"), list) and isinstance(record.get("results"), Mapping)


# -- the pool ------------------------------------------------------------------------------------------


def record_candidates(record: Record) -> list[Mapping[str, Any]]:
    """The stored candidates in pool order (positions are what subsets and :func:`record_pool` use)."""
    candidates = record.get("candidates")
    return list(candidates) if isinstance(candidates, list) else []


def pool_size(record: Record) -> int:
    return len(record_candidates(record))


def candidate_texts(record: Record) -> list[str]:
    """Every candidate's text, in pool order ("" for a candidate without one)."""
    return [str(c.get("text") or "") for c in record_candidates(record)]


def usable_candidates(record: Record) -> list[Mapping[str, Any]]:
    """The candidates an aggregator sees by default: those hygiene did not exclude, or all of them when
    every one was excluded."""
    candidates = record_candidates(record)
    return [c for c in candidates if not c.get("excluded")] or candidates


def record_pool(record: Record, subset: Sequence[int] | None = None) -> Pool:
    """The candidates at the ``subset``'s pool positions (default: all) as a Pool to aggregate again,
    keeping their pool indices and hygiene flags (usage: none, the pool is not sampled again)."""
    stored = record_candidates(record)
    chosen = [stored[i] for i in subset] if subset is not None else stored
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
        for c in chosen
    )
    return Pool(candidates, Usage())


# -- the cost ------------------------------------------------------------------------------------------


def record_usage(record: Record) -> Mapping[str, Any]:
    """``usage``: per stage (sampling, each method) and total; {} when the record has none."""
    usage = record.get("usage")
    return usage if isinstance(usage, Mapping) else {}


def record_tokens(record: Record) -> int:
    """The record's total tokens (0 for an error record)."""
    total = record_usage(record).get("total")
    return int(total.get("total_tokens") or 0) if isinstance(total, Mapping) else 0
