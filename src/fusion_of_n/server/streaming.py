"""Server-sent events for ``stream: true``: every choice's answer as it is written, and always an end.

Each choice runs :meth:`Pipeline.stream` in its own task; pieces are forwarded as they arrive
(interleaved across choices, each tagged with its index). An :class:`Encoder` turns them into one
API's events: :class:`ChatEncoder` here (``chat.completion.chunk`` and ``data: [DONE]``), the Responses
API's in :mod:`.responses_api`.

Every stream ends. Any failure after the headers went out (an upstream error, or any other exception in
aggregation or streaming) becomes the encoder's error event and end marker: for chat, ``data:
{"error": {...}}`` (the OpenAI SDK raises it) then ``data: [DONE]``. The client's message is scrubbed of
upstream URLs and specs; the server log has the exception (with its traceback when it is not one of
the library's errors). A client that goes away cancels every task, which closes the upstream requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aiohttp import web

from ..aio import cancel_and_wait
from ..errors import FusionOfNError
from ..fastjson import dumps
from ..sampling import Pool
from ..types import Result
from .plan import Plan
from .responses import finish_reason, fusion_field, upstream_failure, usage_of
from .schema import error_envelope

log = logging.getLogger(__name__)
_DONE = object()


class Encoder(Protocol):
    """One API's stream events, as bytes ready to write."""

    def start(self, choices: int) -> list[bytes]: ...
    def text(self, index: int, piece: str) -> list[bytes]: ...
    def finished(self, index: int, result: Result) -> list[bytes]: ...
    def end(self, results: list[Result]) -> list[bytes]: ...
    def failed(self, message: str, kind: str, code: str | None) -> list[bytes]: ...


def data_event(payload: object) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"


class ChatEncoder:
    """``chat.completion.chunk`` events; the trailer carries usage (``stream_options.include_usage``) and
    the ``fusion_of_n`` field when there is one."""

    def __init__(self, base: dict[str, Any], include_usage: bool, plan: Plan) -> None:
        self.base, self.include_usage, self.plan = base, include_usage, plan

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return data_event({**self.base, "choices": [choice]})

    def start(self, choices: int) -> list[bytes]:
        return [self._chunk(i, {"role": "assistant", "content": ""}) for i in range(choices)]

    def text(self, index: int, piece: str) -> list[bytes]:
        return [self._chunk(index, {"content": piece})]

    def finished(self, index: int, result: Result) -> list[bytes]:
        return [self._chunk(index, {}, finish_reason(result))]

    def end(self, results: list[Result]) -> list[bytes]:
        events = []
        extra = fusion_field(results, self.plan.with_candidates, self.plan.scrub)
        if self.include_usage or extra:
            last: dict[str, Any] = {**self.base, "choices": []}
            if self.include_usage:
                last["usage"] = usage_of(results)
            if extra:
                last["fusion_of_n"] = extra
            events.append(data_event(last))
        return [*events, b"data: [DONE]\n\n"]

    def failed(self, message: str, kind: str, code: str | None) -> list[bytes]:
        return [data_event(error_envelope(message, kind, code=code)), b"data: [DONE]\n\n"]


async def stream_choices(response: web.StreamResponse, encoder: Encoder, plan: Plan, pools: Sequence[Pool]) -> None:
    """Write every choice's events to the prepared ``response``, then the end; see the module docstring."""

    async def write(events: list[bytes]) -> None:
        for event in events:
            await response.write(event)

    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def run(index: int, pool: Pool) -> None:
        try:
            async for event in plan.pipeline.stream(plan.requests[index], pool, plan.method, fusor=plan.fusor):
                await queue.put((index, event))
        except Exception as exc:  # handed to the writer below, the stream's error boundary
            await queue.put((index, exc))
        await queue.put((index, _DONE))

    tasks: list[asyncio.Task[None]] = []
    try:
        await write(encoder.start(len(pools)))
        tasks = [asyncio.create_task(run(i, pool)) for i, pool in enumerate(pools)]
        results: list[Result | None] = [None] * len(pools)
        finished = 0
        while finished < len(tasks):
            index, event = await queue.get()
            if event is _DONE:
                finished += 1
            elif isinstance(event, Exception):
                await _fail(write, encoder, plan, event)
                return
            elif isinstance(event, Result):
                results[index] = event
                await write(encoder.finished(index, event))
            elif event:
                await write(encoder.text(index, event))
        await write(encoder.end([r for r in results if r is not None]))
    except ConnectionError:  # from a write: nobody is left to tell
        log.info("%s: the client went away during the stream", plan.preset)
    except Exception as exc:  # the stream's boundary: headers are out, so the error travels as an event
        await _fail(write, encoder, plan, exc)
    finally:
        await cancel_and_wait(tasks)


async def _fail(write: Callable[[list[bytes]], Any], encoder: Encoder, plan: Plan, exc: Exception) -> None:
    if isinstance(exc, FusionOfNError):
        log.warning("%s: stream failed after it started: %s", plan.preset, exc)
        failure = upstream_failure(exc, plan.scrub)
        message, kind, code = str(failure), failure.kind, failure.code
    else:
        log.error("%s: stream failed after it started", plan.preset, exc_info=exc)
        message, kind, code = "internal server error; see the server log", "server_error", "server_error"
    try:
        await write(encoder.failed(message, kind, code))
    except ConnectionError:
        log.info("%s: the client went away before the error event", plan.preset)
