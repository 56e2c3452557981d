"""A deterministic in-process backend for tests and benchmarks (spec ``fake:NAME``)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass

from ..backends.base import ModelSpec
from ..errors import ConfigError, UpstreamHTTPError
from ..types import Candidate, Delta, Generation, Request, Usage, message_text
from .script import HTTPFault, Reply, Script, Step, count_tokens

_PIECE = re.compile(r"\s*\S+")


def echo(request: Request) -> str:
    """Step that answers with the last user message (spec ``fake:echo``)."""
    return request.last_user_text


def split_words(text: str) -> list[str]:
    """Word-by-word pieces (each with the whitespace before it) whose concatenation is exactly ``text``."""
    pieces = _PIECE.findall(text)
    rest = text[sum(map(len, pieces)) :]
    return [*pieces, rest] if rest else pieces


@dataclass
class Call:
    request: Request
    n: int


class FakeBackend:
    """Answers from a :class:`Script`; records every call (``generate`` and ``stream``) in ``calls``.

    ``stream`` yields the reply word by word; ``cancelled`` counts streams closed before their last Delta.

    >>> backend = FakeBackend(["4", "5"], name="m1")
    """

    def __init__(self, steps: Iterable[Step] | Step = (echo,), *, name: str = "fake", delay: float = 0.0) -> None:
        self.name = name
        self.script = Script(steps)
        self.delay = delay
        self.calls: list[Call] = []
        self.cancelled = 0
        self.closed = False

    @classmethod
    def from_spec(cls, spec: ModelSpec, env: Mapping[str, str]) -> FakeBackend:
        """Build from ``fake:echo[#delay=SECONDS]`` (the provider is registered in :mod:`fusion_of_n.backends.base`)."""
        spec.check_options({"delay"})
        scripts = {"echo": (echo,)}
        if spec.model not in scripts:
            raise ConfigError(f"fake backend {spec.model!r} is unknown; use one of: {', '.join(scripts)}")
        return cls(scripts[spec.model], name=str(spec), delay=float(spec.option("delay", "0") or 0))

    async def generate(self, request: Request, *, n: int = 1) -> Generation:
        self.calls.append(Call(request, n))
        started = time.perf_counter()
        if self.delay:
            await asyncio.sleep(self.delay)
        candidates = []
        completion = 0
        for _ in range(n):
            step = await self._reply(request)
            tokens = _completion_tokens(step)
            completion += tokens
            candidates.append(
                Candidate(step.text, self.name, step.finish_reason, completion_tokens=tokens, logprobs=step.logprobs)
            )
        usage = Usage(1, _prompt_tokens(request), completion, time.perf_counter() - started)
        return Generation(tuple(candidates), usage)

    async def stream(self, request: Request) -> AsyncIterator[Delta]:
        """One completion of the next script step, word by word; faults raise before any text."""
        self.calls.append(Call(request, 1))
        started = time.perf_counter()
        finished = False
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            step = await self._reply(request)
            for piece in split_words(step.text):
                yield Delta(piece)
                await asyncio.sleep(0)  # let other tasks run between pieces, as a network stream would
            usage = Usage(1, _prompt_tokens(request), _completion_tokens(step), time.perf_counter() - started)
            finished = True
            yield Delta(finish_reason=step.finish_reason, usage=usage)
        except (GeneratorExit, asyncio.CancelledError):
            self.cancelled += 0 if finished else 1
            raise

    async def aclose(self) -> None:
        self.closed = True

    async def _reply(self, request: Request) -> Reply:
        """The next step as a Reply (after its delay); fault and exception steps raise."""
        step = self.script.next_step(request)
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, HTTPFault):
            raise UpstreamHTTPError(
                f"backend {self.name!r} returned {step.status}: {step.message}",
                status=step.status,
                backend=self.name,
                retry_after=step.retry_after,
            )
        if step.delay:
            await asyncio.sleep(step.delay)
        return step


def _prompt_tokens(request: Request) -> int:
    return sum(count_tokens(message_text(m)) for m in request.messages)


def _completion_tokens(reply: Reply) -> int:
    return reply.completion_tokens if reply.completion_tokens is not None else count_tokens(reply.text)
