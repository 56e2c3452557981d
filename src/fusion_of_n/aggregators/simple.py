"""The trivial selection baselines: the first candidate, or one picked at random. No LLM calls.

``RandomPick`` draws from ``random.Random`` seeded with the configured seed *and* a digest of the
request's messages: a fixed seed gives the same pick for the same prompt on every run, yet different
prompts of a batch get independent picks (a bare ``Random(seed)`` would choose the same pool position
for every prompt). ``seed=None`` means a fresh, unreproducible random choice on every call.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..types import Aggregation, Candidate, Request
from .base import AggregatorOptions, register


@register("first")
@dataclass(frozen=True)
class First:
    """Return the candidate with the lowest pool index (the no-aggregation baseline)."""

    name: str = "first"

    @classmethod
    def build(cls, options: AggregatorOptions) -> First:
        return cls()

    async def aggregate(self, request: Request, candidates: Sequence[Candidate]) -> Aggregation:
        first = min(candidates, key=lambda c: c.index)
        return Aggregation(text=first.text, method=self.name, chosen=first.index)


def _request_digest(request: Request) -> str:
    payload = json.dumps([dict(m) for m in request.messages], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@register("random")
@dataclass(frozen=True)
class RandomPick:
    """Return a uniformly random candidate; ``seed`` makes the pick reproducible (None: fresh each call)."""

    seed: int | None = None
    name: str = "random"

    @classmethod
    def build(cls, options: AggregatorOptions) -> RandomPick:
        return cls(options.seed)

    async def aggregate(self, request: Request, candidates: Sequence[Candidate]) -> Aggregation:
        pool = sorted(candidates, key=lambda c: c.index)
        rng = random.Random() if self.seed is None else random.Random(f"{self.seed}:{_request_digest(request)}")
        pick = rng.choice(pool)
        return Aggregation(text=pick.text, method=self.name, chosen=pick.index)
