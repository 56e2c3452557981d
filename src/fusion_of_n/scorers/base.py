"""The Scorer protocol: rate each candidate of a pool for Best-of-N."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..types import Candidate, Request, Usage


@dataclass(frozen=True)
class Scoring:
    """One score per candidate, in the order given; ``None`` = could not be scored (never 0)."""

    scores: tuple[float | None, ...]
    usage: Usage = field(default_factory=Usage)
    flags: tuple[str, ...] = ()


@runtime_checkable
class Scorer(Protocol):
    name: str

    async def score(self, request: Request, candidates: Sequence[Candidate]) -> Scoring: ...

    async def aclose(self) -> None: ...
