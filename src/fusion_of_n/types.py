"""The values that flow along the one data path: request -> candidates -> aggregation -> result.

All are frozen dataclasses. ``Message`` is a plain dict in the OpenAI chat shape so multi-turn
history, system prompts and content parts pass through untouched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Message = Mapping[str, Any]
"""One chat message in the OpenAI shape: ``{"role": ..., "content": str | list[part]}``."""

STAGES = ("sampling", "scoring", "fusion")


@dataclass(frozen=True)
class OutputFormat:
    """A reply format to enforce while decoding, where the backend can (constrained decoding).

    ``grammar`` is a GBNF grammar of the format the prompt asks for (llama.cpp applies it token by
    token); ``json_schema`` is a JSON object schema carrying the same content, for servers that take
    ``response_format`` (vLLM, SGLang, llama.cpp's server, OpenAI), or None when the format has no JSON
    form. A backend that can enforce neither ignores the format, so callers always parse the reply.
    """

    name: str
    grammar: str
    json_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Params:
    """Generation parameters; ``None`` means "the backend's default"."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] | None = None
    top_logprobs: int | None = None  # ask for the top-k alternatives of each generated token
    output_format: OutputFormat | None = None  # constrain the reply where the backend can

    def replace(self, **changes: Any) -> Params:
        return dataclasses.replace(self, **changes)

    def merge(self, other: Params) -> Params:
        """These parameters overridden by every field ``other`` sets (is not None): e.g. a client
        request's parameters over a preset's."""
        changes = {f.name: getattr(other, f.name) for f in dataclasses.fields(other)}
        return dataclasses.replace(self, **{name: value for name, value in changes.items() if value is not None})


@dataclass(frozen=True)
class Request:
    """What the user asked: the chat so far and how to sample it."""

    messages: tuple[Message, ...]
    params: Params = field(default_factory=Params)
    language: str | None = None  # target language name ("German"); None = detect

    @classmethod
    def from_prompt(
        cls,
        prompt: str,
        *,
        system: str | None = None,
        params: Params | None = None,
        language: str | None = None,
    ) -> Request:
        messages: list[Message] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": prompt})
        return cls(tuple(messages), params or Params(), language)

    def with_messages(self, messages: Sequence[Message], params: Params) -> Request:
        """A request for a helper call (fusor, judge) with its own ``params``: the client's sampling
        parameters (stop, seed, top_p, max_tokens) apply to the candidates only, never to the fusor."""
        return Request(tuple(messages), params, self.language)

    def with_params(self, **changes: Any) -> Request:
        """The same request with some sampling parameters changed."""
        return Request(self.messages, self.params.replace(**changes), self.language)

    @property
    def last_user_text(self) -> str:
        """The text of the last user message (content parts of type text are joined)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return message_text(message)
        return ""


SYSTEM_ROLES = ("system", "developer")


def with_system(messages: Sequence[Message], system: str | None) -> tuple[Message, ...]:
    """``messages`` with ``system`` prepended, unless there is none or the chat already has one."""
    if system and not any(m.get("role") in SYSTEM_ROLES for m in messages):
        return ({"role": "system", "content": system}, *messages)
    return tuple(messages)


def message_text(message: Message) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", "")) for part in content if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""


@dataclass(frozen=True)
class Usage:
    """What one stage cost: upstream calls, tokens as the backend reported them, wall seconds."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.calls + other.calls,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.seconds + other.seconds,
        )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "seconds": round(self.seconds, 4),
        }


TokenAlternatives = tuple[tuple[str, float], ...]
"""For one generated token: (token text, logprob) of the top alternatives."""


@dataclass(frozen=True)
class Candidate:
    """One sampled answer with its provenance.

    ``index`` is the position in the pool (stable across aggregators). ``excluded`` marks a candidate
    left out of aggregation (empty or truncated); ``flags`` says why.
    """

    text: str
    model: str
    finish_reason: str | None = None
    index: int = 0
    completion_tokens: int | None = None  # per-choice count when the backend reports one
    logprobs: tuple[TokenAlternatives, ...] | None = None
    score: float | None = None
    excluded: bool = False
    flags: tuple[str, ...] = ()

    def replace(self, **changes: Any) -> Candidate:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "model": self.model,
            "text": self.text,
            "finish_reason": self.finish_reason,
            "completion_tokens": self.completion_tokens,
            "score": self.score,
            "excluded": self.excluded,
            "flags": list(self.flags),
        }


@dataclass(frozen=True)
class Generation:
    """What one ``Backend.generate`` call returns: the choices and the usage of the request(s)."""

    candidates: tuple[Candidate, ...]
    usage: Usage


@dataclass(frozen=True)
class Delta:
    """One streamed piece of a single completion: new ``text``; the last one has ``finish_reason``
    and the request's ``usage``."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass(frozen=True)
class Failure:
    """An upstream failure recorded in a result (the call still succeeded with fewer candidates)."""

    model: str
    error: str

    def to_dict(self) -> dict[str, str]:
        return {"model": self.model, "error": self.error}


@dataclass(frozen=True)
class Aggregation:
    """What an aggregator decided. ``chosen`` is a pool index for selection methods, else None."""

    text: str
    method: str
    chosen: int | None = None
    scores: Mapping[int, float | None] | None = None  # pool index -> score (None = unscored)
    analysis: str | None = None
    flags: tuple[str, ...] = ()
    usage: Mapping[str, Usage] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)  # method details, e.g. fusion's presentation order


@dataclass(frozen=True)
class Result:
    """The answer and everything needed to trust it."""

    text: str
    method: str
    candidates: tuple[Candidate, ...]
    chosen: int | None = None
    analysis: str | None = None
    flags: tuple[str, ...] = ()
    usage: Mapping[str, Usage] = field(default_factory=dict)
    failures: tuple[Failure, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def total_usage(self) -> Usage:
        return sum(self.usage.values(), Usage())

    @property
    def aggregation_usage(self) -> Usage:
        """What the method itself spent: every stage but ``sampling`` (a record's per-method usage, the
        cost of re-aggregating a stored pool)."""
        return sum((usage for stage, usage in self.usage.items() if stage != "sampling"), Usage())

    def to_dict(self) -> dict[str, Any]:
        usage = {stage: u.to_dict() for stage, u in self.usage.items()}
        usage["total"] = self.total_usage.to_dict()
        return {
            "text": self.text,
            "method": self.method,
            "chosen": self.chosen,
            "analysis": self.analysis,
            "flags": list(self.flags),
            "candidates": [c.to_dict() for c in self.candidates],
            "failures": [f.to_dict() for f in self.failures],
            "usage": usage,
            "extra": dict(self.extra),
        }
