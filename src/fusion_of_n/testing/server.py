"""A fake OpenAI-compatible server on 127.0.0.1, driven by the same scripts as :class:`FakeBackend`.

>>> with FakeOpenAIServer(["4"]) as srv:                    # doctest: +SKIP
...     backend = OpenAIBackend("m1", base_url=srv.url)
...     srv.requests[0].body["n"], srv.max_in_flight

It runs in a background thread with its own event loop, so it serves sync and async tests alike
(``with`` or ``async with``). ``scripts`` is a step list / :class:`Script` answering any model, or a
dict model name -> steps (other models get a 404). Each step makes one choice; an ``HTTPFault`` step
fails the request with that status; an exception step drops the connection without a response.
``faults`` (a seeded :class:`~.faults.FaultPlan`) injects a random mix of upstream failures on top:
429s, 5xx, stalls, malformed bodies and streams, cut and dropped connections.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from ..server.runner import BackgroundServer
from ..types import message_text
from .fake import split_words
from .faults import FaultPlan
from .script import HTTPFault, Reply, Script, Step, count_tokens

ANY_MODEL = "fake"


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received (``body`` is None when it was not JSON)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any


def error_body(message: str, kind: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class FakeOpenAIServer:
    """``POST /v1/chat/completions`` (n, stream, usage, logprobs) and ``GET /v1/models``.

    ``honour_n=False`` answers one choice whatever ``n`` asks (like llama.cpp's server); ``latency``
    is slept before each answer; ``chunk_delay`` is slept after each streamed piece of text (so a
    client can leave mid-stream); with ``api_key`` set, any other bearer gets a 401; ``faults`` fails
    chat requests by a seeded plan (:class:`~.faults.FaultPlan`, whose ``counts`` tally what it injected).
    ``requests`` records every request (``record=False``: none, for long runs that watch memory);
    ``max_in_flight`` is the most requests seen at once;
    ``cancelled`` counts chat requests whose client went away before the response was finished
    (the handler is cancelled when the connection drops, as a real server stops generating).
    """

    def __init__(
        self,
        scripts: Iterable[Step] | Step | Script | Mapping[str, Iterable[Step] | Step | Script] = ("ok",),
        *,
        honour_n: bool = True,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        api_key: str | None = None,
        faults: FaultPlan | None = None,
        record: bool = True,
        port: int = 0,
    ) -> None:
        if isinstance(scripts, Mapping):
            self.scripts = {name: _as_script(steps) for name, steps in scripts.items()}
            self._any: Script | None = None
        else:
            self.scripts = {}
            self._any = _as_script(scripts)
        self.honour_n = honour_n
        self.latency = latency
        self.chunk_delay = chunk_delay
        self.api_key = api_key
        self.faults = faults
        self.record = record
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = 0
        self._server = BackgroundServer(self._app, port=port, shutdown_timeout=0.5, thread_name="FakeOpenAIServer")
        self._started = False

    @property
    def port(self) -> int:
        """The port asked for (0: any free one), then the one bound once started."""
        return self._server.port

    @property
    def url(self) -> str:
        """The base URL to give a client, e.g. ``http://127.0.0.1:PORT/v1``."""
        if not self._started:
            raise RuntimeError("the fake server is not running; use it as a context manager or call start()")
        return self._server.url

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        self._server.start()
        self._started = True
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeOpenAIServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    # -- handlers ---------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Every request: count it in flight, record it, check the key, then route it."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body: Any = None
            if request.can_read_body:
                try:
                    body = json.loads(await request.read())
                except ValueError:
                    body = None
            if self.record:
                self.requests.append(RecordedRequest(request.method, request.path, CIMultiDict(request.headers), body))
            if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
                return _json(401, error_body("Incorrect API key provided.", code="invalid_api_key"))
            if request.method == "POST" and request.path == "/v1/chat/completions":
                try:
                    return await self._chat(request, body)
                except (asyncio.CancelledError, ConnectionResetError):  # the client went away
                    self.cancelled += 1
                    raise
            if request.method == "GET" and request.path == "/v1/models":
                return self._models()
            return _json(404, error_body(f"no route {request.method} {request.path}", code="unknown_url"))
        finally:
            self.in_flight -= 1

    def _models(self) -> web.Response:
        names = sorted(self.scripts) if self._any is None else [ANY_MODEL]
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "fusion-of-n-fake"} for name in names]
        return _json(200, {"object": "list", "data": data})

    async def _chat(self, request: web.Request, body: Any) -> web.StreamResponse:
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _json(400, error_body("the body must be a JSON object with a 'messages' list"))
        model = str(body.get("model", ""))
        script = self._any or self.scripts.get(model)
        if script is None:
            return _json(404, error_body(f"The model '{model}' does not exist", code="model_not_found"))
        n = body.get("n", 1)
        if not isinstance(n, int) or n < 1:
            return _json(400, error_body(f"n must be a positive integer, got {n!r}"))
        if self.latency:
            await asyncio.sleep(self.latency)
        replies: list[Reply] = []
        for _ in range(n if self.honour_n else 1):
            step = script.next_step(body)
            if isinstance(step, BaseException):
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=500)  # never sent: the connection is gone
            if isinstance(step, HTTPFault):
                return await _fault(step)
            replies.append(step)
        if self.faults is not None:
            injected = await self.faults.inject(request, body, model or ANY_MODEL, replies)
            if injected is not None:
                return injected
        delay = max(reply.delay for reply in replies)
        if delay:
            await asyncio.sleep(delay)
        usage = _usage(body, replies)
        if body.get("stream"):
            return await _stream(request, body, model or ANY_MODEL, replies, usage, self.chunk_delay)
        top_k = body.get("top_logprobs") if body.get("logprobs") else None
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": reply.text},
                "logprobs": _logprobs(reply, top_k) if body.get("logprobs") else None,
                "finish_reason": reply.finish_reason,
            }
            for i, reply in enumerate(replies)
        ]
        return _json(200, {**_envelope("chat.completion", model or ANY_MODEL), "choices": choices, "usage": usage})


def _as_script(steps: Iterable[Step] | Step | Script) -> Script:
    return steps if isinstance(steps, Script) else Script(steps)


def _json(status: int, data: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(data), content_type="application/json", headers=headers)


async def _fault(fault: HTTPFault) -> web.Response:
    if fault.delay:
        await asyncio.sleep(fault.delay)
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = f"{fault.retry_after:g}"
    kind = "rate_limit_error" if fault.status == 429 else "server_error" if fault.status >= 500 else "invalid_request"
    return _json(fault.status, error_body(fault.message, kind), headers)


def _envelope(kind: str, model: str) -> dict[str, Any]:
    return {"id": "chatcmpl-fake", "object": kind, "created": int(time.time()), "model": model}


def _usage(body: Mapping[str, Any], replies: list[Reply]) -> dict[str, int]:
    given = [r.prompt_tokens for r in replies if r.prompt_tokens is not None]
    messages = [m for m in body["messages"] if isinstance(m, Mapping)]
    prompt = given[0] if given else sum(count_tokens(message_text(m)) for m in messages)
    completion = sum(r.completion_tokens if r.completion_tokens is not None else count_tokens(r.text) for r in replies)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _logprobs(reply: Reply, top_k: Any) -> dict[str, Any] | None:
    if reply.logprobs is None:
        return None
    k = top_k if isinstance(top_k, int) and top_k >= 0 else None
    content = []
    for alternatives in reply.logprobs:
        token, logprob = alternatives[0] if alternatives else ("", 0.0)
        shown = alternatives if k is None else alternatives[:k]
        content.append(
            {
                "token": token,
                "logprob": logprob,
                "bytes": None,
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in shown],
            }
        )
    return {"content": content, "refusal": None}


async def _stream(
    request: web.Request,
    body: Mapping[str, Any],
    model: str,
    replies: list[Reply],
    usage: dict[str, int],
    chunk_delay: float,
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    options = body.get("stream_options")
    include_usage = isinstance(options, Mapping) and bool(options.get("include_usage"))
    head = _envelope("chat.completion.chunk", model)

    async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
        chunk = {**head, "choices": choices, **extra}
        if include_usage and "usage" not in extra:
            chunk["usage"] = None
        await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

    for i, reply in enumerate(replies):
        await send([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for piece in split_words(reply.text):
            await send([{"index": i, "delta": {"content": piece}, "finish_reason": None}])
            if chunk_delay:
                await asyncio.sleep(chunk_delay)
        await send([{"index": i, "delta": {}, "finish_reason": reply.finish_reason}])
    if include_usage:
        await send([], usage=usage)
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response
