"""Fan a request out over the models, collect the candidate pool, and apply hygiene.

- Each backend is asked once for its N samples (backends batch them as one ``n=N`` request where
  the server allows); backends run concurrently.
- A backend that fails is recorded as a :class:`Failure`; below ``min_candidates`` the call raises
  :class:`NotEnoughCandidates` listing every failure.
- Empty and truncated (``finish_reason == "length"``) candidates are flagged ``excluded``; the pool is
  never padded with duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .backends.base import Backend
from .errors import BackendError, NotEnoughCandidates
from .types import Candidate, Failure, Request, Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pool:
    """The sampled candidates (indexed in pool order), their cost and the upstream failures."""

    candidates: tuple[Candidate, ...]
    usage: Usage
    failures: tuple[Failure, ...] = ()

    @property
    def usable(self) -> tuple[Candidate, ...]:
        return tuple(c for c in self.candidates if not c.excluded)


def hygiene_flags(candidate: Candidate) -> tuple[str, ...]:
    flags = []
    if not candidate.text.strip():
        flags.append("empty")
    if candidate.finish_reason == "length":
        flags.append("truncated")
    return tuple(flags)


async def sample(backends: Sequence[Backend], request: Request, n: int, *, min_candidates: int = 1) -> Pool:
    """Ask every backend for ``n`` candidates and return the flagged pool."""
    if n < 1:
        raise ValueError("n (samples per model) must be at least 1")
    started = time.perf_counter()
    outcomes = await asyncio.gather(*(b.generate(request, n=n) for b in backends), return_exceptions=True)
    candidates: list[Candidate] = []
    failures: list[Failure] = []
    usage = Usage()
    for backend, outcome in zip(backends, outcomes, strict=True):
        if isinstance(outcome, BackendError):
            log.info("backend %s failed: %s", backend.name, outcome)
            failures.append(Failure(backend.name, str(outcome)))
            continue
        if isinstance(outcome, BaseException):
            raise outcome  # a bug or cancellation, not an upstream failure: let it surface
        usage = usage + Usage(outcome.usage.calls, outcome.usage.prompt_tokens, outcome.usage.completion_tokens)
        for candidate in outcome.candidates:
            flags = hygiene_flags(candidate)
            candidates.append(candidate.replace(index=len(candidates), excluded=bool(flags), flags=flags))
    if len(candidates) < min_candidates:
        raise NotEnoughCandidates(len(candidates), min_candidates, [f"{f.model}: {f.error}" for f in failures])
    usage = Usage(usage.calls, usage.prompt_tokens, usage.completion_tokens, time.perf_counter() - started)
    return Pool(tuple(candidates), usage, tuple(failures))
