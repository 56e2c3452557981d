"""Fan a request out over the models, collect the candidate pool, and apply hygiene.

- Each backend is asked once for its N samples (backends batch them as one ``n=N`` request where
  the server allows); backends run concurrently.
- A backend that fails is recorded as a :class:`Failure`; below ``min_candidates`` the call raises
  :class:`NotEnoughCandidates` listing every failure.
- Empty and truncated (``finish_reason == "length"``) candidates are flagged ``excluded``; the pool is
  never padded with duplicates.

Adaptive N (:func:`sample_adaptive`, ``--adaptive``): ``n`` is the most samples per model. The pool is
drawn in rounds, each one request per model with ``n=k``: first ``min(n, 3)``, then
``ceil((n - first) / 3)`` at a time (at most four rounds). After each round, when the usable
candidates commit to final answers (the rule ``auto`` uses: :func:`.aggregators.auto.decide` says
"select") and the leading answer's count exceeds the runner-up's plus every sample still to be drawn,
no further sample can change the majority, so sampling stops. Open-ended pools are always drawn in
full (no similarity rule: a fused answer may use what any candidate adds). The pool's ``adaptive``
says how many samples were planned and drawn, in how many rounds, and the completion tokens saved,
estimated as the samples not drawn times the mean completion tokens of those drawn.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .backends.base import Backend
from .errors import BackendError, NotEnoughCandidates
from .types import Candidate, Failure, Generation, Request, Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pool:
    """The sampled candidates (indexed in pool order), their cost and the upstream failures."""

    candidates: tuple[Candidate, ...]
    usage: Usage
    failures: tuple[Failure, ...] = ()
    adaptive: Mapping[str, Any] | None = field(default=None)  # planned/drawn/rounds/saved, when adaptive

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
    outcomes = await _generate_all(backends, request, n)
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
            flags, index = hygiene_flags(candidate), len(candidates)
            if (candidate.index, candidate.excluded, candidate.flags) != (index, bool(flags), flags):
                candidate = candidate.replace(index=index, excluded=bool(flags), flags=flags)  # else no copy
            candidates.append(candidate)
    if len(candidates) < min_candidates:
        raise NotEnoughCandidates(len(candidates), min_candidates, [f"{f.model}: {f.error}" for f in failures])
    usage = Usage(usage.calls, usage.prompt_tokens, usage.completion_tokens, time.perf_counter() - started)
    return Pool(tuple(candidates), usage, tuple(failures))


async def _generate_all(backends: Sequence[Backend], request: Request, n: int) -> list[Generation | BaseException]:
    """Every backend's generation or its exception, concurrently. One backend is awaited in this task (no
    task to schedule); its BackendError is handed back, anything else surfaces as it would from the pool."""
    if len(backends) != 1:
        return await asyncio.gather(*(b.generate(request, n=n) for b in backends), return_exceptions=True)
    try:
        return [await backends[0].generate(request, n=n)]
    except BackendError as exc:
        return [exc]


def round_sizes(n: int) -> list[int]:
    """Samples per model in each adaptive round: ``min(n, 3)`` first, then ``ceil((n - first) / 3)``."""
    first = min(n, 3)
    sizes, left = [first], n - first
    step = max(1, math.ceil(left / 3))
    while left > 0:
        sizes.append(min(step, left))
        left -= sizes[-1]
    return sizes


def majority_is_settled(candidates: Sequence[Candidate], remaining: int) -> bool:
    """Whether ``remaining`` more samples cannot change the majority answer of a closed-ended pool."""
    from .aggregators.auto import committed_answer, decide

    usable = [c for c in candidates if not c.excluded]
    if not usable or decide(usable)[0] != "select":
        return False
    counts = Counter(a[0] for c in usable if (a := committed_answer(c.text)) is not None).most_common(2)
    leader = counts[0][1] if counts else 0
    runner_up = counts[1][1] if len(counts) > 1 else 0
    return leader > runner_up + remaining


def adaptive_prefix(ordered: Sequence[Candidate]) -> int:
    """How many of ``ordered`` (samples in the order they would be drawn) ``--adaptive`` would draw
    before stopping: its rounds replayed on a stored pool (for sweeps and benchmarks)."""
    drawn = 0
    for size in round_sizes(len(ordered)):
        drawn += size
        if majority_is_settled(ordered[:drawn], len(ordered) - drawn):
            break
    return drawn


async def sample_adaptive(backends: Sequence[Backend], request: Request, n: int, *, min_candidates: int = 1) -> Pool:
    """Like :func:`sample` with ``n`` as the maximum per model, drawn in rounds (module docstring)."""
    if n < 1:
        raise ValueError("n (samples per model) must be at least 1")
    started = time.perf_counter()
    candidates: list[Candidate] = []
    failures: list[Failure] = []
    usage = Usage()
    drawn = rounds = 0
    planned = n * len(backends)
    for size in round_sizes(n):
        seed = request.params.seed
        params = request.params if seed is None else request.params.replace(seed=seed + drawn)
        part = await sample(backends, Request(request.messages, params, request.language), size, min_candidates=0)
        rounds += 1
        drawn += size
        usage = usage + part.usage
        failures += part.failures
        candidates += [c.replace(index=len(candidates) + i) for i, c in enumerate(part.candidates)]
        if await asyncio.to_thread(majority_is_settled, candidates, (n - drawn) * len(backends)):
            break
    if len(candidates) < min_candidates:
        raise NotEnoughCandidates(len(candidates), min_candidates, [f"{f.model}: {f.error}" for f in failures])
    tokens = [c.completion_tokens for c in candidates if c.completion_tokens is not None]
    skipped = planned - drawn * len(backends)
    saved = round(skipped * sum(tokens) / len(tokens)) if tokens else 0
    report = {"planned": planned, "drawn": len(candidates), "rounds": rounds, "saved_samples": skipped,
              "saved_completion_tokens": saved}  # fmt: skip
    usage = Usage(usage.calls, usage.prompt_tokens, usage.completion_tokens, time.perf_counter() - started)
    return Pool(tuple(candidates), usage, tuple(failures), report)
