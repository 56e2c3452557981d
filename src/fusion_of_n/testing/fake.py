"""A deterministic in-process backend for tests and benchmarks (spec ``fake:NAME``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..errors import ConfigError, UpstreamHTTPError
from ..types import Candidate, Generation, Request, Usage, message_text
from .script import HTTPFault, Reply, Script, Step, count_tokens


def echo(request: Request) -> str:
    """Step that answers with the last user message (spec ``fake:echo``)."""
    return request.last_user_text


@dataclass
class Call:
    request: Request
    n: int


class FakeBackend:
    """Answers from a :class:`Script`; records every call in ``calls``.

    >>> backend = FakeBackend(["4", "5"], name="m1")
    """

    def __init__(self, steps: Iterable[Step] | Step = (echo,), *, name: str = "fake", delay: float = 0.0) -> None:
        self.name = name
        self.script = Script(steps)
        self.delay = delay
        self.calls: list[Call] = []
        self.closed = False

    @classmethod
    def from_spec(cls, spec: object, env: Mapping[str, str]) -> FakeBackend:
        from ..backends.base import ModelSpec

        assert isinstance(spec, ModelSpec)
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
            assert isinstance(step, Reply)
            if step.delay:
                await asyncio.sleep(step.delay)
            tokens = step.completion_tokens if step.completion_tokens is not None else count_tokens(step.text)
            completion += tokens
            candidates.append(
                Candidate(step.text, self.name, step.finish_reason, completion_tokens=tokens, logprobs=step.logprobs)
            )
        prompt = sum(count_tokens(message_text(m)) for m in request.messages)
        usage = Usage(1, prompt, completion, time.perf_counter() - started)
        return Generation(tuple(candidates), usage)

    async def aclose(self) -> None:
        self.closed = True
