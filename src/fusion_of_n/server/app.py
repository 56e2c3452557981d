"""``create_app()``: an OpenAI-compatible server whose answers are fused (or selected) from N candidates.

Each preset is one :class:`~fusion_of_n.api.Pipeline`, built once and shared by all requests (one HTTP
session per upstream, models loaded once). Requests go through the library's one data path:
``Pipeline.sample`` then ``Pipeline.aggregate`` / ``Pipeline.stream``.
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
from ..config import PipelineSettings
from ..errors import ConfigError, FusionOfNError
from ..language import detect_language
from ..types import Params, Request
from .responses import HTTPFailure, completion, envelope, upstream_failure
from .schema import BodyError, ChatBody, error_envelope, parse_body
from .streaming import stream_choices

log = logging.getLogger(__name__)

PIPELINES: web.AppKey[dict[str, Pipeline]] = web.AppKey("pipelines")
ALLOWED_FUSORS: web.AppKey[frozenset[str]] = web.AppKey("allowed_fusors")
API_KEY: web.AppKey[str] = web.AppKey("api_key")


def create_app(
    presets: Mapping[str, PipelineSettings], *, api_key: str | None = None, env: Mapping[str, str] | None = None
) -> web.Application:
    """The aiohttp application. ``api_key`` set: requests need ``Authorization: Bearer <api_key>``."""
    if not presets:
        raise ConfigError("the server needs at least one preset")
    app = web.Application(middlewares=[_errors, _auth], client_max_size=32 * 1024 * 1024)
    app[PIPELINES] = {name: Pipeline(settings, env) for name, settings in presets.items()}
    app[ALLOWED_FUSORS] = frozenset(
        str(spec)
        for settings in presets.values()
        for spec in (*settings.models, settings.fusor, settings.judge)
        if isinstance(spec, str)
    )
    if api_key:
        app[API_KEY] = api_key
    app.router.add_post("/v1/chat/completions", chatcompletions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/health", health)
    app.on_startup.append(_warm_up)
    app.on_cleanup.append(_close_pipelines)
    return app


async def _warm_up(app: web.Application) -> None:
    """Load the language identifier now rather than inside the first request (about a second)."""
    await asyncio.to_thread(detect_language, "Warm up the language identifier, please.")


async def _close_pipelines(app: web.Application) -> None:
    await asyncio.gather(*(p.aclose() for p in app[PIPELINES].values()), return_exceptions=True)


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """The server's boundary: every failure leaves as an OpenAI error envelope, never a traceback."""
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except HTTPFailure as failure:
        return failure.response()
    except web.HTTPException as exc:
        kind = "not_found_error" if exc.status == 404 else "invalid_request_error"
        return web.json_response(error_envelope(exc.reason, kind), status=exc.status)
    except asyncio.CancelledError:
        log.info("client went away: %s %s cancelled", request.method, request.path)
        raise
    except Exception:  # the one place besides the CLI that catches everything
        log.exception("internal error on %s %s", request.method, request.path)
        return web.json_response(
            error_envelope("internal server error; see the server log", "server_error"), status=500
        )


@web.middleware
async def _auth(request: web.Request, handler: Any) -> web.StreamResponse:
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
    return await handler(request)  # type: ignore[no-any-return]


async def health(request: web.Request) -> web.Response:
    pipelines = request.app[PIPELINES]
    return web.json_response({"status": "ok", "presets": sorted(pipelines)})


async def list_models(request: web.Request) -> web.Response:
    data = [
        {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "fusion-of-n",
            "fusion_of_n": {
                "models": [str(m) for m in p.settings.models],
                "n": p.settings.n,
                "method": p.settings.method,
            },
        }
        for name, p in sorted(request.app[PIPELINES].items())
    ]
    return web.json_response({"object": "list", "data": data})


def _pipeline(request: web.Request, body: ChatBody) -> Pipeline:
    pipelines: dict[str, Pipeline] = request.app[PIPELINES]
    if body.model not in pipelines:
        raise HTTPFailure(
            404,
            f"unknown model {body.model!r}: this server's presets are {', '.join(sorted(pipelines))}",
            "invalid_request_error",
            param="model",
            code="model_not_found",
        )
    return pipelines[body.model]


def _overrides(request: web.Request, body: ChatBody, pipeline: Pipeline) -> tuple[int, str, str | None, bool]:
    ext = body.fusion_of_n
    n = ext.n if ext and ext.n else pipeline.settings.n
    method = ext.method if ext and ext.method else pipeline.settings.method
    if method not in methods():
        raise HTTPFailure(
            400,
            f"unknown method {method!r}; use one of: {', '.join(methods())}",
            "invalid_request_error",
            param="fusion_of_n.method",
        )
    fusor = ext.fusor if ext else None
    allowed = request.app[ALLOWED_FUSORS]
    if fusor is not None and fusor not in allowed:
        raise HTTPFailure(
            400,
            f"fusor {fusor!r} is not configured on this server; configured models: {', '.join(sorted(allowed))}",
            "invalid_request_error",
            param="fusion_of_n.fusor",
        )
    return n, method, fusor, bool(ext and ext.return_candidates)


def _request(raw: dict[str, Any], body: ChatBody, pipeline: Pipeline) -> Request:
    """The candidates' request: the messages exactly as received, per-request params over the preset's."""
    s = pipeline.settings
    params = Params(
        temperature=body.temperature if body.temperature is not None else s.temperature,
        top_p=body.top_p if body.top_p is not None else s.top_p,
        max_tokens=body.max_completion_tokens or body.max_tokens or s.max_tokens,
        seed=body.seed if body.seed is not None else s.seed,
        stop=body.stop_list if body.stop is not None else s.stop,
    )
    return pipeline.request(raw["messages"], params=params)


async def chatcompletions(request: web.Request) -> web.StreamResponse:
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HTTPFailure(400, "the body is not valid JSON", "invalid_request_error") from None
    try:
        body = parse_body(raw)
    except BodyError as exc:
        raise HTTPFailure(400, str(exc), "invalid_request_error", param=exc.param) from None
    pipeline = _pipeline(request, body)
    n, method, fusor, with_candidates = _overrides(request, body, pipeline)
    req = _request(raw, body, pipeline)
    started = time.perf_counter()
    try:
        adaptive = body.fusion_of_n.adaptive if body.fusion_of_n else None
        pools = await asyncio.gather(*(pipeline.sample(req, n, adaptive=adaptive) for _ in range(body.n)))
        if body.stream:
            return await _stream(request, body, pipeline, req, pools, method, fusor, with_candidates)
        results = await asyncio.gather(*(pipeline.aggregate(req, pool, method, fusor=fusor) for pool in pools))
    except FusionOfNError as exc:
        raise upstream_failure(exc) from exc
    log.info("%s: %d choice(s) by %s in %.2fs", body.model, body.n, method, time.perf_counter() - started)
    return web.json_response(completion(body, results, with_candidates))


async def _stream(
    request: web.Request,
    body: ChatBody,
    pipeline: Pipeline,
    req: Request,
    pools: list[Any],
    method: str,
    fusor: str | None,
    with_candidates: bool,
) -> web.StreamResponse:
    """Server-sent events: headers go out once the pools are sampled (so sampling failures still get a
    real status), then each choice's answer as it is written."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    base = envelope(body, "chat.completion.chunk")
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    await stream_choices(response, base, pipeline, req, pools, method, fusor, include_usage, with_candidates)
    return response
