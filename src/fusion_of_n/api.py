"""The one data path: request -> sample N per model -> candidate pool -> aggregate -> Result.

:class:`Pipeline` holds the built backends so a pool can be aggregated by several methods (the demo,
batch generation and evaluation compare methods on one pool). :func:`arun` / :func:`run` are the
one-shot library calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from .aggregators.base import Aggregator, AggregatorOptions, StreamingAggregator, build_aggregator
from .backends.base import Backend, OwnedBackend, resolve_backend
from .backends.ratelimit import wrap
from .config import PipelineSettings, environment
from .sampling import Pool, sample, sample_adaptive
from .scorers.base import Scorer
from .types import Aggregation, Candidate, Message, Params, Request, Result, Usage, with_system

_PIECES = re.compile(r"\s*\S+\s*|\s+")  # words with their white space: they concatenate to the text


class Pipeline:
    """Built backends, scorer and aggregators for one :class:`PipelineSettings`.

    Use as ``async with Pipeline(settings) as pipe: result = await pipe.run(request)``.
    Backends built here from specs are closed on exit; Backend objects passed in are the caller's.
    """

    def __init__(self, settings: PipelineSettings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self._env = environment() if env is None else env
        self._by_spec: dict[str, Backend] = {}
        self._held: list[OwnedBackend] = []  # every backend built or given, each closed only if owned
        self.backends = [self._backend(m) for m in settings.models]
        self.fusor = self._backend(settings.fusor) if settings.fusor is not None else self.backends[0]
        self._scorer: Scorer | None = None
        self._aggregators: dict[tuple[str, str], Aggregator] = {}

    def _backend(self, model: str | Backend) -> Backend:
        """One backend (one session, one loaded model, one rate budget) per spec or object."""
        key = model if isinstance(model, str) else f"object:{id(model)}"
        if key not in self._by_spec:
            held = resolve_backend(model, self._env)
            limited = OwnedBackend(wrap(held.backend, self.settings.rpm, self.settings.tpm), held.owned)
            self._held.append(limited)
            self._by_spec[key] = limited.backend
        return self._by_spec[key]

    def scorer(self) -> Scorer:
        """Best-of-N's scorer: the reward model, else the judge, else the fusor as an LLM judge."""
        if self._scorer is None:
            from .scorers.factory import create_scorer

            judge = self.settings.judge
            judge_backend = None if self.settings.reward else self._backend(judge) if judge else self.fusor
            self._scorer = create_scorer(judge=judge_backend, reward=self.settings.reward, env=self._env)
            assert self._scorer is not None
        return self._scorer

    def aggregator(self, method: str | None = None, fusor: str | Backend | None = None) -> Aggregator:
        """The aggregator for ``method``; ``fusor`` overrides the fusor (and usc's selector)."""
        method = method or self.settings.method
        fusor_backend = self.fusor if fusor is None else self._backend(fusor)
        key = (method, fusor_backend.name)
        if key not in self._aggregators:
            options = AggregatorOptions(
                fusor=fusor_backend,
                selector=fusor_backend,
                scorer=self.scorer() if method == "bon" or (method == "auto" and self._tie_breaker()) else None,
                seed=self.settings.seed,
                fusor_max_tokens=self.fusor_max_tokens(),
            )
            self._aggregators[key] = build_aggregator(method, options)
        return self._aggregators[key]

    def fusor_max_tokens(self) -> int | None:
        """The fusor's budget from the settings (never from a request): ``fusor_max_tokens``, else twice
        the configured ``max_tokens``, else None (the fusion aggregator then derives it from the pool)."""
        s = self.settings
        if s.fusor_max_tokens is not None:
            return s.fusor_max_tokens
        return 2 * s.max_tokens if s.max_tokens is not None else None

    def _tie_breaker(self) -> bool:
        """auto breaks vote ties with BoN only when a judge or reward model was configured explicitly."""
        return bool(self.settings.judge or self.settings.reward)

    def params(self) -> Params:
        """The settings' sampling parameters."""
        s = self.settings
        return Params(s.temperature, s.top_p, s.max_tokens, s.seed, s.stop)

    def request(
        self,
        prompt: str | Sequence[Message] | Request,
        *,
        params: Params | None = None,
        language: str | None = None,
    ) -> Request:
        """A Request from a prompt or a chat: the settings' system prompt (unless the chat has one),
        ``params`` or the settings' sampling parameters, ``language`` or the settings' language."""
        if isinstance(prompt, Request):
            return prompt
        chat = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        messages = with_system(chat, self.settings.system)
        return Request(messages, params or self.params(), language or self.settings.language)

    async def sample(self, request: Request, n: int | None = None, *, adaptive: bool | None = None) -> Pool:
        """The candidate pool: ``n`` (default: the settings' n) samples from every model; with
        ``adaptive`` (default: the settings'), at most ``n``, drawn in rounds (:func:`sample_adaptive`)."""
        n = self.settings.n if n is None else n
        adaptive = self.settings.adaptive if adaptive is None else adaptive
        draw = sample_adaptive if adaptive else sample
        return await draw(self.backends, request, n, min_candidates=self.settings.min_candidates)

    def _usable(self, pool: Pool) -> tuple[tuple[Candidate, ...], list[str]]:
        usable = pool.candidates if self.settings.include_flagged else pool.usable
        if not usable:
            return pool.candidates, ["all_candidates_flagged"]
        return usable, []

    async def aggregate(
        self, request: Request, pool: Pool, method: str | None = None, *, fusor: str | Backend | None = None
    ) -> Result:
        """Aggregate an existing pool (several methods can share one pool)."""
        aggregator = self.aggregator(method, fusor)
        usable, flags = self._usable(pool)
        started = time.perf_counter()
        decision = await aggregator.aggregate(request, usable)
        return self._result(decision, pool, flags, time.perf_counter() - started)

    async def stream(
        self, request: Request, pool: Pool, method: str | None = None, *, fusor: str | Backend | None = None
    ) -> AsyncIterator[str | Result]:
        """Like :meth:`aggregate`, but yield the answer's text as it becomes known, then the Result.

        Fusion streams the fusor's answer tokens as they arrive; selection methods stream the chosen
        candidate once chosen. The text pieces concatenate exactly to ``Result.text``.
        """
        aggregator = self.aggregator(method, fusor)
        usable, flags = self._usable(pool)
        started = time.perf_counter()
        if isinstance(aggregator, StreamingAggregator):
            async for event in aggregator.astream(request, usable):
                if isinstance(event, Aggregation):
                    yield self._result(event, pool, flags, time.perf_counter() - started)
                else:
                    yield event
            return
        decision = await aggregator.aggregate(request, usable)
        for piece in _PIECES.findall(decision.text):
            yield piece
        yield self._result(decision, pool, flags, time.perf_counter() - started)

    def _result(self, decision: Aggregation, pool: Pool, flags: list[str], wall: float) -> Result:
        stages: dict[str, Usage] = {"sampling": pool.usage}
        for stage, usage in decision.usage.items():
            # concurrent calls inside one stage: report the stage's wall time, not the sum of calls
            seconds = wall if len(decision.usage) == 1 else usage.seconds
            stages[stage] = dataclasses.replace(usage, seconds=seconds)
        scores = decision.scores or {}
        candidates = tuple(  # unscored candidates of an unscored method as they are (no copy per request)
            c if c.score is None and scores.get(c.index) is None else c.replace(score=scores.get(c.index))
            for c in pool.candidates
        )
        return Result(
            text=decision.text,
            method=decision.method,
            candidates=candidates,
            chosen=decision.chosen,
            analysis=decision.analysis,
            flags=(*flags, *decision.flags),
            usage=stages,
            failures=pool.failures,
            extra={**decision.extra, "adaptive": dict(pool.adaptive)} if pool.adaptive else decision.extra,
        )

    async def run(self, prompt: str | Sequence[Message] | Request, method: str | None = None) -> Result:
        request = self.request(prompt)
        self.aggregator(method)  # fail on a bad method before spending tokens on samples
        return await self.aggregate(request, await self.sample(request), method)

    async def aclose(self) -> None:
        closers = [held.aclose() for held in self._held]
        if self._scorer is not None:
            closers.append(self._scorer.aclose())
        await asyncio.gather(*closers, return_exceptions=True)

    async def __aenter__(self) -> Pipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def arun(
    prompt: str | Sequence[Message] | Request, *, env: Mapping[str, str] | None = None, **settings: Any
) -> Result:
    """Sample, aggregate and return one :class:`Result`.

    Keyword arguments are :class:`~fusion_of_n.config.PipelineSettings` fields: ``models`` (spec
    strings or Backend objects), ``n``, ``method``, ``fusor``, ``judge``, ``reward``, ``temperature``,
    ``top_p``, ``max_tokens``, ``seed``, ``stop``, ``language``, ``system``, ``min_candidates``,
    ``include_flagged``, ``fusor_max_tokens``.
    """
    async with Pipeline(PipelineSettings.of(**settings), env) as pipeline:
        return await pipeline.run(prompt)


def run(prompt: str | Sequence[Message] | Request, *, env: Mapping[str, str] | None = None, **settings: Any) -> Result:
    """Synchronous :func:`arun`. Inside a running event loop, ``await arun(...)`` instead."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(arun(prompt, env=env, **settings))
    raise RuntimeError("fusion_of_n.run() was called inside a running event loop; use `await fusion_of_n.arun(...)`")
