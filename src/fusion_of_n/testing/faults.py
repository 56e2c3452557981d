"""A seeded fault plan for :class:`FakeOpenAIServer`: an upstream that fails the way real ones do.

::

    plan = FaultPlan(seed=7, leak="my-key")
    with FakeOpenAIServer(["4"], faults=plan) as srv:
        ...                                 # a client with a read timeout below plan.hang, and retries
    plan.counts                             # how often each fault was injected

Every chat request draws one fault (weights: ``weights``) before it is answered:

- ``ok``: answered normally;
- ``rate_limited``: 429 with ``Retry-After: retry_after`` (default 0);
- ``server_error``: 500, 502 or 503, as a JSON error envelope or a proxy's HTML page;
- ``timeout``: nothing for ``hang`` seconds (set the client's read timeout below it), then the answer;
  a stream stalls before its headers, or after a few chunks and then is cut;
- ``malformed``: a 200 whose JSON body is cut short, an HTML page or a JSON array; a stream with an
  event that is not JSON, a JSON event that is not an object, or an error event in the middle;
- ``truncated``: the connection cut in the middle of the body (a stream: after a few chunks, or the
  body ends cleanly without ``finish_reason`` and ``[DONE]``);
- ``dropped``: the connection closed before any response.

Draws are reproducible whatever the order requests arrive in: the k-th request with a given body draws
from ``random.Random(f"{seed}:{sha256 of the body}:{k}")``, so a retry of the same body draws anew
(the plan keeps one counter per distinct body).
``leak`` (e.g. the API key the client sends) is quoted in some error bodies, as real servers sometimes
quote the key they were sent, so a test can prove that it is redacted everywhere. The fake never echoes
the request's headers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from .script import Reply

FAULTS = ("ok", "rate_limited", "server_error", "timeout", "malformed", "truncated", "dropped")
DEFAULT_WEIGHTS: Mapping[str, float] = {
    "ok": 50,
    "rate_limited": 8,
    "server_error": 10,
    "timeout": 6,
    "malformed": 10,
    "truncated": 8,
    "dropped": 8,
}


class FaultPlan:
    """Which fault each request gets (see the module docstring); ``counts`` tallies the ones drawn."""

    def __init__(
        self,
        seed: int = 0,
        weights: Mapping[str, float] = DEFAULT_WEIGHTS,
        *,
        hang: float = 10.0,
        retry_after: float = 0.0,
        leak: str | None = None,
    ) -> None:
        unknown = set(weights) - set(FAULTS)
        if unknown or not any(w > 0 for w in weights.values()):
            raise ValueError(f"weights need positive values for some of {', '.join(FAULTS)}; got {dict(weights)}")
        self.seed = seed
        self.kinds = [k for k in FAULTS if weights.get(k, 0) > 0]
        self.weights = [weights[k] for k in self.kinds]
        self.hang = hang
        self.retry_after = retry_after
        self.leak = leak
        self.counts: Counter[str] = Counter()
        self._seen: Counter[str] = Counter()  # body digest -> requests so far with that body
        self._lock = threading.Lock()

    def draw(self, body: Any) -> tuple[str, random.Random]:
        """The fault for this request and the generator that picks its variant."""
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
        with self._lock:
            attempt = self._seen[digest]
            self._seen[digest] += 1
        rng = random.Random(f"{self.seed}:{digest}:{attempt}")
        kind = rng.choices(self.kinds, self.weights)[0]
        with self._lock:
            self.counts[kind] += 1
        return kind, rng

    async def inject(
        self, request: web.Request, body: Mapping[str, Any], model: str, replies: Sequence[Reply]
    ) -> web.StreamResponse | None:
        """Apply this request's fault: a response to send instead of the answer, or None to answer
        (``ok``, or a ``timeout`` whose client is still there after the stall)."""
        kind, rng = self.draw(body)
        text = replies[0].text if replies else ""
        stream = bool(body.get("stream"))
        if kind == "rate_limited":
            message = "Rate limit reached for requests; please try again later"
            return _json(429, _error(message, "rate_limit_error"), {"Retry-After": f"{self.retry_after:g}"})
        if kind == "server_error":
            return self._server_error(rng)
        if kind == "timeout":
            if stream and rng.random() < 0.5:  # stall mid-stream, then give up on the client
                response = await _open_stream(request, model, text)
                await asyncio.sleep(self.hang)
                return _abort(request, response)
            await asyncio.sleep(self.hang)
            return None
        if kind == "malformed":
            return await self._malformed_stream(request, model, text, rng) if stream else self._malformed_json(rng)
        if kind == "truncated":
            return await (_truncated_stream(request, model, text, rng) if stream else _truncated_json(request, text))
        if kind == "dropped":
            return _abort(request, web.Response(status=500))  # never sent: the connection is gone
        return None

    def _quote_key(self, rng: random.Random) -> str:
        """Sometimes the key, as a careless server quotes it."""
        return f" (request made with key {self.leak})" if self.leak and rng.random() < 0.5 else ""

    def _server_error(self, rng: random.Random) -> web.Response:
        status = rng.choice((500, 502, 503))
        if rng.random() < 0.3:
            page = f"<html><head><title>{status}</title></head><body>{status} Bad Gateway</body></html>"
            return web.Response(status=status, text=page, content_type="text/html")
        return _json(status, _error(f"The server had an error processing your request{self._quote_key(rng)}"))

    def _malformed_json(self, rng: random.Random) -> web.Response:
        variant = rng.randrange(3)
        if variant == 0:
            raw = '{"id": "chatcmpl-fake", "object": "chat.completion", "choices": [{"index": 0, "message": {'
        elif variant == 1:
            raw = f"<html><body>upstream proxy error{self._quote_key(rng)}</body></html>"
        else:
            raw = json.dumps(["not", "an", "object", self.leak or ""])
        return web.Response(status=200, body=raw.encode(), content_type="application/json")

    async def _malformed_stream(
        self, request: web.Request, model: str, text: str, rng: random.Random
    ) -> web.StreamResponse:
        response = await _open_stream(request, model, text)
        variant = rng.randrange(3)
        if variant == 0:
            bad = b'data: {"choices": [{"index": 0, "delta": {"content": "cut\n\n'
        elif variant == 1:
            bad = b'data: ["not an object"]\n\n'
        else:
            error = _error(f"The model is overloaded{self._quote_key(rng)}", code=503)
            bad = b"data: " + json.dumps(error).encode() + b"\n\n"
        await response.write(bad)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _error(message: str, kind: str = "server_error", code: int | str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _json(status: int, data: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(data), content_type="application/json", headers=headers)


def _abort(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    if request.transport is not None:
        request.transport.abort()
    return response


def _chunk(model: str, delta: Mapping[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": dict(delta), "finish_reason": finish}
    data = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [choice]}
    return b"data: " + json.dumps(data).encode() + b"\n\n"


async def _open_stream(request: web.Request, model: str, text: str) -> web.StreamResponse:
    """Headers, the role chunk and the first words of ``text``: a stream that has started."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    await response.write(_chunk(model, {"role": "assistant", "content": ""}))
    for word in text.split(" ")[:2]:
        await response.write(_chunk(model, {"content": word + " "}))
    return response


async def _truncated_stream(request: web.Request, model: str, text: str, rng: random.Random) -> web.StreamResponse:
    response = await _open_stream(request, model, text)
    if rng.random() < 0.5:
        await response.write_eof()  # ends cleanly, but without finish_reason and [DONE]
        return response
    return _abort(request, response)


async def _truncated_json(request: web.Request, text: str) -> web.StreamResponse:
    """Headers promising the whole body, half of it, then the connection is cut."""
    raw = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}).encode()
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.content_length = len(raw)
    await response.prepare(request)
    await response.write(raw[: len(raw) // 2])
    return _abort(request, response)
