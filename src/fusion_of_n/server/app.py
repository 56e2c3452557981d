"""``create_app()``: an OpenAI-compatible server whose answers are fused (or selected) from N candidates.

Each preset is one :class:`~fusion_of_n.api.Pipeline`, built once and shared by all requests (one HTTP
session per upstream, models loaded once). ``POST /v1/chat/completions`` and ``POST /v1/responses`` read
their bodies into one :class:`~.plan.Plan` and go through the library's one data path:
``Pipeline.sample`` then ``Pipeline.aggregate`` / ``Pipeline.stream``.

Clients see preset names and model aliases, never upstream URLs or specs (:mod:`.names`); requests are
bounded (:mod:`.limits`); every failure leaves as an OpenAI error envelope, or, once a stream started,
as its error event and end marker (:mod:`.streaming`). The server log has the full detail.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..aggregators.base import methods
from ..api import Pipeline
from ..config import PipelineSettings, RequestLimits
from ..errors import ConfigError
from ..language import detect_language
from .limits import DEFAULT_MAX_IN_FLIGHT, InFlight, check_preset, effective_limits
from .names import Names
from .plan import Plan, Presets, answer, plan, sample_pools
from .responses import HTTPFailure, completion, envelope, json_response
from .responses_api import LABELS, Reply, ResponsesEncoder, parse
from .schema import BodyError, error_envelope, parse_body
from .streaming import ChatEncoder, Encoder, stream_choices

log = logging.getLogger(__name__)

PRESETS: web.AppKey[Presets] = web.AppKey("presets")
IN_FLIGHT: web.AppKey[InFlight] = web.AppKey("in_flight")
API_KEY: web.AppKey[str] = web.AppKey("api_key")


def create_app(
    presets: Mapping[str, PipelineSettings],
    *,
    api_key: str | None = None,
    env: Mapping[str, str] | None = None,
    limits: RequestLimits | None = None,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> web.Application:
    """The aiohttp application. ``api_key`` set: requests need ``Authorization: Bearer <api_key>``.

    ``limits`` bound every request (a preset's ``limits`` overrides them field by field); beyond
    ``max_in_flight`` generation requests at once, new ones get a 429 with ``Retry-After``.
    """
    if not presets:
        raise ConfigError("the server needs at least one preset")
    server_limits = limits or RequestLimits()
    bounds = {name: effective_limits(server_limits, settings) for name, settings in presets.items()}
    for name, settings in presets.items():
        check_preset(name, settings, bounds[name])
    app = web.Application(middlewares=[_boundary], client_max_size=32 * 1024 * 1024)
    app[IN_FLIGHT] = InFlight(max_in_flight)
    pipelines = {name: Pipeline(settings, env) for name, settings in presets.items()}
    fusors = frozenset(
        spec
        for settings in presets.values()
        for spec in (*settings.models, settings.fusor, settings.judge)
        if isinstance(spec, str)
    )
    specs = [s for settings in presets.values() for s in (*settings.models, settings.fusor, settings.judge,
             settings.reward) if isinstance(s, str)]  # fmt: skip
    backends = [b.name for p in pipelines.values() for b in (*p.backends, p.fusor)]
    app[PRESETS] = Presets(pipelines, bounds, Names([*specs, *backends]), fusors, frozenset(methods()))
    if api_key:
        app[API_KEY] = api_key
    app.router.add_post("/v1/chat/completions", chatcompletions)
    app.router.add_post("/v1/responses", responses)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)
    app.router.add_get("/health", health)
    app.on_startup.append(_warm_up)
    app.on_cleanup.append(_close_pipelines)
    return app


async def _warm_up(app: web.Application) -> None:
    """Load the language identifier now rather than inside the first request (about a second)."""
    await asyncio.to_thread(detect_language, "Warm up the language identifier, please.")


async def _close_pipelines(app: web.Application) -> None:
    await asyncio.gather(*(p.aclose() for p in app[PRESETS].pipelines.values()), return_exceptions=True)


@web.middleware
async def _boundary(request: web.Request, handler: Any) -> web.StreamResponse:
    """The server's boundary: every failure leaves as an OpenAI error envelope, never a traceback.

    One middleware (each one is another coroutine per request): the errors, then :func:`_auth`, then at
    most ``max_in_flight`` generation requests (POSTs) at once; beyond it a 429, never a queue.
    """
    try:
        _auth(request)
        if request.method != "POST":
            return await handler(request)  # type: ignore[no-any-return]
        gate = request.app[IN_FLIGHT]
        gate.enter()
        try:
            return await handler(request)  # type: ignore[no-any-return]
        finally:
            gate.leave()
    except HTTPFailure as failure:
        return failure.response()
    except web.HTTPException as exc:
        kind = "not_found_error" if exc.status == 404 else "invalid_request_error"
        return json_response(error_envelope(exc.reason, kind), status=exc.status)
    except asyncio.CancelledError:
        log.info("client went away: %s %s cancelled", request.method, request.path)
        raise
    except Exception:  # the one place besides the CLI that catches everything
        log.exception("internal error on %s %s", request.method, request.path)
        return json_response(error_envelope("internal server error; see the server log", "server_error"), status=500)


def _auth(request: web.Request) -> None:
    expected = request.app.get(API_KEY)
    if expected and request.path != "/health":
        given = request.headers.get("Authorization", "")
        token = given[7:] if given.startswith("Bearer ") else ""
        if not hmac.compare_digest(token.encode(), expected.encode()):
            raise HTTPFailure(
                401,
                "missing or wrong API key: send 'Authorization: Bearer <key>'",
                "invalid_request_error",
                code="invalid_api_key",
            )


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "presets": sorted(request.app[PRESETS].pipelines)})


def _model(name: str, presets: Presets) -> dict[str, Any]:
    """A preset as an OpenAI model object; its models by alias (no upstream URLs or spec options)."""
    pipeline = presets.pipelines[name]
    models = [presets.names.alias(b.name) for b in pipeline.backends]
    details = {"models": models, "n": pipeline.settings.n, "method": pipeline.settings.method}
    return {"id": name, "object": "model", "created": 0, "owned_by": "fusion-of-n", "fusion_of_n": details}


async def list_models(request: web.Request) -> web.Response:
    presets = request.app[PRESETS]
    return json_response({"object": "list", "data": [_model(name, presets) for name in sorted(presets.pipelines)]})


async def get_model(request: web.Request) -> web.Response:
    presets = request.app[PRESETS]
    name = request.match_info["model"]
    presets.pipeline(name)  # a 404 naming the models there are
    return json_response(_model(name, presets))


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HTTPFailure(400, "the body is not valid JSON", "invalid_request_error") from None


def _invalid(exc: BodyError) -> HTTPFailure:
    return HTTPFailure(400, str(exc), "invalid_request_error", param=exc.param)


async def chatcompletions(request: web.Request) -> web.StreamResponse:
    raw = await _json_body(request)
    try:
        body = parse_body(raw)
    except BodyError as exc:
        raise _invalid(exc) from None
    job = plan(request.app[PRESETS], body, raw["messages"])
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await _stream(request, job, ChatEncoder(envelope(body, "chat.completion.chunk"), include_usage, job))
    started = time.perf_counter()
    results = await answer(job)
    if log.isEnabledFor(logging.DEBUG):  # one line per request: serve -vv (a line costs more than the rest of it)
        log.debug("%s: %d choice(s) by %s in %.2fs", body.model, body.n, job.method, time.perf_counter() - started)
    return json_response(completion(body, results, job.with_candidates, job.scrub))


async def responses(request: web.Request) -> web.StreamResponse:
    """``POST /v1/responses``: the Responses API's body and reply around the same Plan (see :mod:`.responses_api`)."""
    raw = await _json_body(request)
    try:
        body, messages = parse(raw)
    except BodyError as exc:
        raise _invalid(exc) from None
    job = plan(request.app[PRESETS], body, messages, LABELS)
    reply = Reply(raw, job)
    if body.stream:
        return await _stream(request, job, ResponsesEncoder(reply))
    results = await answer(job)
    return json_response(reply.object(results[0]))


async def _stream(request: web.Request, job: Plan, encoder: Encoder) -> web.StreamResponse:
    """Server-sent events: headers go out once the pools are sampled (so sampling failures still get a
    real status), then each choice's answer as it is written, then the end (always)."""
    pools = await sample_pools(job)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    await stream_choices(response, encoder, job, pools)
    return response
