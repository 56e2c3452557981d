"""Scripts shared by :class:`FakeBackend` and the fake OpenAI-compatible server.

A script is a sequence of steps consumed one per generated choice, in order; once exhausted, the
last step repeats (so ``["ok"]`` always answers "ok" and ``[HTTPFault(500), "ok"]`` fails once).
A step is:

- ``str``: a reply with ``finish_reason="stop"``;
- :class:`Reply`: text plus finish_reason, token counts, logprobs and a delay;
- :class:`HTTPFault`: the request fails with that HTTP status (``Retry-After`` optional);
- an ``Exception`` instance: raised by FakeBackend; the fake server drops the connection;
- a callable ``(request) -> step``: computed per choice (``request`` is the Request for FakeBackend,
  the JSON body for the server).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..types import TokenAlternatives


@dataclass(frozen=True)
class Reply:
    text: str
    finish_reason: str = "stop"
    delay: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    logprobs: tuple[TokenAlternatives, ...] | None = None


@dataclass(frozen=True)
class HTTPFault:
    status: int
    message: str = "injected fault"
    retry_after: float | None = None
    delay: float = 0.0


Step = str | Reply | HTTPFault | BaseException | Callable[[Any], Any]


def count_tokens(text: str) -> int:
    """The fakes' deterministic token count: whitespace-separated words."""
    return len(text.split())


class Script:
    """A thread-safe cursor over steps (the fake server serves from its own thread)."""

    def __init__(self, steps: Iterable[Step] | Step) -> None:
        if isinstance(steps, (str, Reply, HTTPFault, BaseException)) or callable(steps):
            steps = [steps]
        self._steps: Sequence[Step] = list(steps)
        if not self._steps:
            raise ValueError("a script needs at least one step")
        self._next = 0
        self._lock = threading.Lock()

    def next_step(self, request: Any) -> Reply | HTTPFault | BaseException:
        with self._lock:
            step = self._steps[min(self._next, len(self._steps) - 1)]
            self._next += 1
        return resolve_step(step, request)

    @property
    def consumed(self) -> int:
        return self._next


def resolve_step(step: Step, request: Any) -> Reply | HTTPFault | BaseException:
    while callable(step) and not isinstance(step, (Reply, HTTPFault, BaseException)):
        step = step(request)
    if isinstance(step, str):
        return Reply(step)
    if isinstance(step, (Reply, HTTPFault, BaseException)):
        return step
    raise TypeError(f"script step {step!r} is not str, Reply, HTTPFault, an exception or a callable")
