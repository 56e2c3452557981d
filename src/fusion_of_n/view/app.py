"""The viewer's aiohttp application (``fusion-of-n view``): the page, its assets and the JSON API.

Routes (the contract the page and the browser tests are built against):

- ``GET /``, ``/record/<id>``, ``/compare``: the page (``static/index.html``; it routes itself);
  ``GET /static/<file>``: its assets, shipped in the package (no CDN).
- ``GET /api/files``: the DATA files (path, rows, error rows, skipped lines) and the ``--eval`` results.
- ``GET /api/records?file=0&offset=0&limit=50&q=&language=&method=&flag=&error=1|0&verdict=&sort=id|
  language|tokens|seconds|line&order=asc|desc``: ``{total, offset, limit, rows, facets}``.
- ``GET /api/record/<id>?file=0`` (plus the list's filters, for ``prev``/``next`` in that list): one
  record with its results, attribution spans, candidates, usage and verdicts.
- ``GET /api/compare?a=FILE:ID:METHOD&b=FILE:ID:METHOD``: two answers and the judge's verdicts between
  them.

API errors are JSON ``{"error": "..."}`` (400 for a bad parameter, 404 for an unknown id). Requests
must name this machine in ``Host`` (a page on another site cannot read the data through DNS
rebinding) unless the server listens on every interface.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import web

from ..errors import ConfigError, FusionOfNError
from .viewer import SORTS, Query, Viewer

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
VIEWER = web.AppKey("viewer", Viewer)
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
"""The host names a request may use by default."""
MAX_LIMIT = 500
LIST_PARAMETERS = ("q", "language", "method", "flag", "error", "verdict", "sort", "order")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
}


def create_view_app(
    paths: Sequence[str], eval_paths: Sequence[str] = (), *, allowed_hosts: Collection[str] | None = LOOPBACK
) -> web.Application:
    """The viewer of the generate outputs ``paths`` (JSONL or Parquet) with the ``eval_paths`` results
    (winrate, accuracy, attribution). Every file is indexed here, before the app is returned; a
    ConfigError names a file that cannot be used and the fix. ``allowed_hosts``: the names a request's
    ``Host`` may give (None: any, for a server on every interface)."""
    app = web.Application(middlewares=[_guard(allowed_hosts), _json_errors])
    app[VIEWER] = Viewer(paths, eval_paths)
    app.router.add_get("/", page)
    app.router.add_get("/record/{id:.+}", page)
    app.router.add_get("/compare", page)
    app.router.add_get("/api/files", files)
    app.router.add_get("/api/records", records)
    app.router.add_get("/api/record/{id:.+}", record)
    app.router.add_get("/api/compare", compare)
    if STATIC.is_dir():
        app.router.add_static("/static/", STATIC)
    app.on_response_prepare.append(_security_headers)
    return app


# -- handlers ------------------------------------------------------------------------------------------


async def page(request: web.Request) -> web.StreamResponse:
    index = STATIC / "index.html"
    if not index.is_file():
        raise web.HTTPInternalServerError(text=f"the viewer's page is missing ({index}); reinstall fusion-of-n")
    return web.FileResponse(index, headers={"Cache-Control": "no-cache"})


async def files(request: web.Request) -> web.Response:
    return _json(request.app[VIEWER].describe())


async def records(request: web.Request) -> web.Response:
    viewer = request.app[VIEWER]
    number = _file(request, viewer)
    query = _query(request)
    offset = _integer(request, "offset", 0, 0)
    limit = _integer(request, "limit", 50, 1, MAX_LIMIT)
    selected = await asyncio.to_thread(viewer.select, number, query)
    return _json(
        {
            "total": len(selected),
            "offset": offset,
            "limit": limit,
            "rows": viewer.rows(number, selected[offset : offset + limit]),
            "facets": viewer.facets(number),
        }
    )


async def record(request: web.Request) -> web.Response:
    viewer = request.app[VIEWER]
    record_id = request.match_info["id"]
    number = _file(request, viewer) if "file" in request.query else None
    found = viewer.find(record_id, number)
    if found is None:
        where = f"file {number}" if number is not None else "any DATA file"
        _fail(web.HTTPNotFound, f"no record with id {record_id!r} in {where}")
    query = _query(request) if any(request.query.get(k) for k in LIST_PARAMETERS) else None
    return _json(await asyncio.to_thread(viewer.record, *found, query))


async def compare(request: web.Request) -> web.Response:
    viewer = request.app[VIEWER]
    sides = [_side(request, viewer, name) for name in ("a", "b")]
    shown = []
    for name, (number, record_id, method) in zip(("a", "b"), sides, strict=True):
        side = await asyncio.to_thread(viewer.side, number, record_id, method)
        if side is None:
            _fail(web.HTTPNotFound, f"{name}: no record with id {record_id!r} in file {number}")
        shown.append(side)
    (a_file, a_id, a_method), (b_file, b_id, b_method) = sides
    verdicts = viewer.verdicts.between(a_id, (a_file, a_method), (b_file, b_method)) if a_id == b_id else []
    return _json({"a": shown[0], "b": shown[1], "verdicts": verdicts})


# -- parameters ----------------------------------------------------------------------------------------


def _fail(kind: type[web.HTTPException], message: str) -> NoReturn:
    raise kind(text=json.dumps({"error": message}), content_type="application/json")


def _integer(request: web.Request, name: str, default: int, low: int, high: int | None = None) -> int:
    raw = request.query.get(name, "")
    try:
        value = int(raw) if raw != "" else default
    except ValueError:
        _fail(web.HTTPBadRequest, f"{name}={raw!r} is not an integer")
    if value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
        _fail(web.HTTPBadRequest, f"{name}={value} is out of range; give {bounds}")
    return value


def _file(request: web.Request, viewer: Viewer) -> int:
    return _integer(request, "file", 0, 0, len(viewer.files) - 1)


def _query(request: web.Request) -> Query:
    get = request.query.get
    query = Query(**{name: get(name, "") for name in LIST_PARAMETERS if name != "order"}, order=get("order") or "asc")
    if query.error not in ("", "1", "0"):
        _fail(web.HTTPBadRequest, f"error={query.error!r}: give 1 (failed rows), 0 (finished rows) or nothing")
    if query.sort not in ("", *SORTS):
        _fail(web.HTTPBadRequest, f"sort={query.sort!r}: give one of {', '.join(SORTS)} (or nothing: file order)")
    if query.order not in ("asc", "desc"):
        _fail(web.HTTPBadRequest, f"order={query.order!r}: give asc or desc")
    return query


def _side(request: web.Request, viewer: Viewer, name: str) -> tuple[int, str, str]:
    raw = request.query.get(name, "")
    number, _, rest = raw.partition(":")
    record_id, _, method = rest.rpartition(":")
    if not (number.isascii() and number.isdigit()) or not record_id or not method:
        _fail(web.HTTPBadRequest, f"{name}={raw!r}: give FILE:ID:METHOD, e.g. 0:row-7:fusion")
    if int(number) >= len(viewer.files):
        _fail(web.HTTPBadRequest, f"{name}: there is no file {number} (files 0 to {len(viewer.files) - 1})")
    return int(number), record_id, method


# -- responses and middleware ----------------------------------------------------------------------------


def _finite(value: Any) -> Any:
    """NaN and infinities (JSON cannot hold them; a record may) as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), ensure_ascii=False, allow_nan=False)


def _json(value: Any) -> web.Response:
    return web.json_response(value, dumps=_dumps)


def _guard(allowed: Collection[str] | None) -> Any:
    names = None if allowed is None else {name.strip("[]").lower() for name in allowed}

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        host = (request.url.host or "").strip("[]").lower()
        if names is not None and host not in names:
            return web.json_response(
                {"error": f"this viewer answers requests for {', '.join(sorted(names))}, not {host!r}"}, status=403
            )
        response: web.StreamResponse = await handler(request)
        return response

    return guard


@web.middleware
async def _json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """The server's boundary: an API error is a JSON ``{"error"}``, an unexpected one is logged."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.content_type == "application/json":
            raise
        return web.json_response({"error": exc.text or exc.reason}, status=exc.status)
    except FusionOfNError as exc:
        return web.json_response({"error": str(exc)}, status=409 if isinstance(exc, ConfigError) else 500)
    except Exception as exc:  # the one place the viewer catches everything
        log.exception("viewer: %s %s failed", request.method, request.path_qs)
        return web.json_response({"error": f"unexpected {type(exc).__name__}: {exc}"}, status=500)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
