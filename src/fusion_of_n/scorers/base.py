"""The Scorer protocol: rate each candidate of a pool for Best-of-N; the reward-provider registry.

A new reward provider is a scorer class with ``from_spec(spec, env)`` plus one
``@register_reward("name", form)`` line (``form`` is how its spec reads, quoted in error messages).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, cast, runtime_checkable

from ..backends.base import ModelSpec
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


RewardFactory = Callable[[ModelSpec, Mapping[str, str]], Scorer]
"""Builds a reward-model scorer from its spec and an environment mapping (keys)."""


@dataclass(frozen=True)
class RewardProvider:
    build: RewardFactory
    form: str  # e.g. "'vllm:MODEL@http://host:port' (a vLLM server)"


_REWARD_PROVIDERS: dict[str, RewardProvider] = {}

T = TypeVar("T")


def register_reward(provider: str, form: str) -> Callable[[T], T]:
    """Decorator: ``@register_reward("vllm", "'vllm:MODEL@http://host:port' (a vLLM server)")`` on a scorer
    class with ``from_spec(spec, env)`` (or on such a function) makes ``vllm:`` specs build it."""

    def add(target: T) -> T:
        build = cast(RewardFactory, getattr(target, "from_spec", target))
        _REWARD_PROVIDERS[provider.lower()] = RewardProvider(build, form)
        return target

    return add


def reward_provider(provider: str) -> RewardProvider | None:
    return _REWARD_PROVIDERS.get(provider)


def reward_forms() -> str:
    """The registered reward spec forms, for error messages: "'hf:...' (...) or 'vllm:...' (...)"."""
    forms = [p.form for p in _REWARD_PROVIDERS.values()]
    return " or ".join(filter(None, (", ".join(forms[:-1]), *forms[-1:])))
