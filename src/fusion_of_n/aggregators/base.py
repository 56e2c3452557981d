"""The Aggregator protocol, the options every aggregator is built from, and the registry.

A new strategy is a new class with ``build(options)`` plus one ``@register("name")`` line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from ..backends.base import Backend
from ..errors import ConfigError
from ..scorers.base import Scorer
from ..types import Aggregation, Candidate, Request


@runtime_checkable
class Aggregator(Protocol):
    name: str

    async def aggregate(self, request: Request, candidates: Sequence[Candidate]) -> Aggregation:
        """Turn the usable candidates (never empty) into one answer."""
        ...


@runtime_checkable
class StreamingAggregator(Aggregator, Protocol):
    def astream(self, request: Request, candidates: Sequence[Candidate]) -> AsyncIterator[str | Aggregation]:
        """Yield pieces of the answer's text as they become certain, then the Aggregation; the pieces
        concatenate exactly to ``Aggregation.text``."""
        ...


@dataclass(frozen=True)
class AggregatorOptions:
    """Everything an aggregator may need; each takes what it uses and checks it is there."""

    fusor: Backend | None = None  # fusion
    selector: Backend | None = None  # usc (an LLM that picks the most consistent candidate)
    scorer: Scorer | None = None  # bon
    seed: int | None = None  # shuffles, random
    fusor_max_tokens: int | None = None


AggregatorBuilder = Callable[[AggregatorOptions], Aggregator]
_REGISTRY: dict[str, AggregatorBuilder] = {}
_USES: dict[str, frozenset[str]] = {}
ROLES = ("fusor", "scorer")
"""The model roles a method may call: the fusor (fusion, usc's selector) and bon's scorer."""

T = TypeVar("T")


def register(name: str, *, uses: Iterable[str] = ()) -> Callable[[T], T]:
    """Class decorator: ``@register("vote")`` on a class with ``build(options)``; ``uses`` names the
    model roles (:data:`ROLES`) the method needs and calls, none for a selection that calls no model."""
    roles = frozenset(uses)
    if unknown := roles - set(ROLES):
        raise ValueError(f"unknown role(s) {sorted(unknown)} for method {name!r}; roles are {ROLES}")

    def add(cls: T) -> T:
        _REGISTRY[name] = cls.build  # type: ignore[attr-defined]
        _USES[name] = roles
        return cls

    return add


_BUILTIN = ("fusion", "bon", "vote", "usc", "mbr", "simple", "auto")


def _load_builtin() -> None:
    import importlib

    for module in _BUILTIN:
        importlib.import_module(f"{__package__}.{module}")


def methods(uses: str | None = None) -> list[str]:
    """The registered method names, sorted; with ``uses`` (a role), those that call that model."""
    _load_builtin()
    return sorted(name for name in _REGISTRY if uses is None or uses in _USES[name])


def build_aggregator(method: str, options: AggregatorOptions) -> Aggregator:
    _load_builtin()
    builder = _REGISTRY.get(method)
    if builder is None:
        raise ConfigError(f"unknown method {method!r}; use one of: {', '.join(methods())}")
    return builder(options)
