"""One client request, checked and resolved into what the library runs (:class:`Plan`), and the one
data path both endpoints share: ``Pipeline.sample`` per choice, then ``Pipeline.aggregate`` (or
``Pipeline.stream``, see :mod:`.streaming`). Chat completions and the Responses API differ only in how
they read the body and write the reply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..aggregators.base import methods
from ..aio import gather_or_cancel
from ..api import Pipeline
from ..config import RequestLimits
from ..errors import FusionOfNError
from ..sampling import Pool
from ..types import Request, Result
from .limits import check_request
from .names import Names
from .responses import HTTPFailure, upstream_failure
from .schema import ChatBody

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Presets:
    """What every request reads: the presets' pipelines and limits, the model names clients may see, and
    the specs a request may name as its fusor."""

    pipelines: Mapping[str, Pipeline]
    limits: Mapping[str, RequestLimits]
    names: Names
    fusors: frozenset[str]
    methods: frozenset[str] = frozenset()  # registered at start-up; a later registration is still looked up

    def pipeline(self, model: str) -> Pipeline:
        if model not in self.pipelines:
            raise HTTPFailure(
                404,
                f"unknown model {model!r}: this server's models are {', '.join(sorted(self.pipelines))}",
                "invalid_request_error",
                param="model",
                code="model_not_found",
            )
        return self.pipelines[model]


@dataclass(frozen=True)
class Plan:
    """A checked request: one candidate Request per choice, how many samples, how to aggregate them."""

    preset: str
    pipeline: Pipeline
    requests: tuple[Request, ...]
    n: int
    method: str
    fusor: str | None
    adaptive: bool | None
    with_candidates: bool
    scrub: Callable[[str], str]  # error text for this client: no upstream URLs or specs


def choice_seed(seed: int | None, index: int) -> int | None:
    """The sampling seed of choice ``index`` of an ``n``-choice request, so choices are independent.

    Choice 0 keeps ``seed`` (a one-choice request samples exactly as asked). Choice ``i > 0`` uses the
    first four bytes of ``blake2b(f"{seed}:{i}")`` as an unsigned integer masked to 31 bits (every server
    takes it; llama.cpp reads 0xFFFFFFFF as "random"). Not ``seed + i``: backends already draw the samples
    of one pool with ``seed``, ``seed + 1``, ... (local models, adaptive rounds), so neighbouring seeds
    would repeat samples across choices. ``None`` stays None: upstream randomness keeps choices apart.
    """
    if seed is None or index == 0:
        return seed
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def plan(presets: Presets, body: ChatBody, messages: Sequence[Any], label: Mapping[str, str] | None = None) -> Plan:
    """Resolve the preset and the ``fusion_of_n`` overrides, refuse a request beyond the limits, and build
    one candidate Request per choice (the messages exactly as received, the request's params over the
    preset's, :func:`choice_seed`). ``label`` renames fields in errors (see :func:`.limits.check_request`)."""
    pipeline = presets.pipeline(body.model)
    ext = body.fusion_of_n
    n = ext.n if ext and ext.n else pipeline.settings.n
    method = ext.method if ext and ext.method else pipeline.settings.method
    if method not in presets.methods and method not in methods():
        raise HTTPFailure(
            400,
            f"unknown method {method!r}; use one of: {', '.join(methods())}",
            "invalid_request_error",
            param="fusion_of_n.method",
        )
    fusor = _fusor(presets, ext.fusor if ext else None)
    check_request(body, messages, n, len(pipeline.backends), presets.limits[body.model], label or {})
    base = _request(messages, body, pipeline)
    requests = (base, *(_with_seed(base, choice_seed(base.params.seed, i)) for i in range(1, body.n)))
    adaptive = ext.adaptive if ext else None
    with_candidates = bool(ext and ext.return_candidates)
    return Plan(body.model, pipeline, requests, n, method, fusor, adaptive, with_candidates, presets.names.scrub)


def _with_seed(request: Request, seed: int | None) -> Request:
    return dataclasses.replace(request, params=request.params.replace(seed=seed))


def _fusor(presets: Presets, given: str | None) -> str | None:
    """A fusor named by its alias (as ``GET /v1/models`` shows it) or its spec; only configured ones."""
    if given is None:
        return None
    spec = presets.names.spec(given)
    if spec not in presets.fusors:
        allowed = sorted({presets.names.alias(s) for s in presets.fusors})
        raise HTTPFailure(
            400,
            f"fusor {given!r} is not configured on this server; use one of: {', '.join(allowed)}",
            "invalid_request_error",
            param="fusion_of_n.fusor",
        )
    return spec


def _request(messages: Sequence[Any], body: ChatBody, pipeline: Pipeline) -> Request:
    """The request's sampling parameters over the preset's (:meth:`Pipeline.params`)."""
    given = (
        ("temperature", body.temperature),
        ("top_p", body.top_p),
        ("max_tokens", body.max_completion_tokens or body.max_tokens),
        ("seed", body.seed),
        ("stop", body.stop_list),
    )
    params = pipeline.params()
    if changes := {name: value for name, value in given if value is not None}:  # Params.merge, without a Params
        params = params.replace(**changes)
    return pipeline.request(messages, params=params)


async def sample_pools(plan: Plan) -> list[Pool]:
    """One candidate pool per choice; a library error becomes the client's error envelope."""
    draw = (plan.pipeline.sample(r, plan.n, adaptive=plan.adaptive) for r in plan.requests)
    return await _together(plan, draw)


async def answer(plan: Plan) -> list[Result]:
    """Sample and aggregate every choice (the non-streaming reply)."""
    pools = await sample_pools(plan)
    aggregations = (
        plan.pipeline.aggregate(r, pool, plan.method, fusor=plan.fusor)
        for r, pool in zip(plan.requests, pools, strict=True)
    )
    return await _together(plan, aggregations)


async def _together(plan: Plan, work: Iterable[Awaitable[T]]) -> list[T]:
    """Run the choices' calls at once; the first failure cancels the others (no orphaned upstream calls).
    One choice (the usual request) is awaited in this task: no task to create, schedule and collect."""
    try:
        if len(plan.requests) == 1:
            return [await next(iter(work))]
        return await gather_or_cancel(work)
    except FusionOfNError as exc:
        log.warning("%s: %s", plan.preset, exc)  # the full message; the client's is scrubbed
        raise upstream_failure(exc, plan.scrub) from exc
