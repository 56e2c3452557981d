"""Server-sent events for ``stream: true``: every choice's answer pieces as ``chat.completion.chunk``s.

Each choice runs :meth:`Pipeline.stream` in its own task; pieces are forwarded as they arrive
(interleaved across choices, each tagged with its index). An upstream failure after the headers went
out becomes an ``error`` event (the OpenAI SDK raises it); a client that goes away cancels every task,
which closes the upstream requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from ..api import Pipeline
from ..errors import FusionOfNError
from ..sampling import Pool
from ..types import Request, Result
from .responses import extension, finish_reason, strategies, upstream_failure, usage_of
from .schema import error_envelope

log = logging.getLogger(__name__)
_DONE = object()


async def stream_choices(
    response: web.StreamResponse,
    base: dict[str, Any],
    pipeline: Pipeline,
    request: Request,
    pools: Sequence[Pool],
    method: str,
    fusor: str | None,
    include_usage: bool,
    with_candidates: bool,
) -> None:
    async def send(payload: dict[str, Any]) -> None:
        await response.write(b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n")

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def run(index: int, pool: Pool) -> None:
        try:
            async for event in pipeline.stream(request, pool, method, fusor=fusor):
                await queue.put((index, event))
        except FusionOfNError as exc:
            await queue.put((index, exc))
        await queue.put((index, _DONE))

    for index in range(len(pools)):
        await send(chunk(index, {"role": "assistant", "content": ""}))
    tasks = [asyncio.create_task(run(i, pool)) for i, pool in enumerate(pools)]
    results: list[Result | None] = [None] * len(pools)
    try:
        finished = 0
        while finished < len(tasks):
            index, event = await queue.get()
            if event is _DONE:
                finished += 1
            elif isinstance(event, FusionOfNError):
                failure = upstream_failure(event)
                log.warning("stream failed after it started: %s", event)
                await send(error_envelope(str(failure), failure.kind, code=failure.code))
                break
            elif isinstance(event, Result):
                results[index] = event
                await send(chunk(index, {}, finish_reason(event)))
            elif event:
                await send(chunk(index, {"content": event}))
        else:
            await _trailer(send, base, [r for r in results if r is not None], method, include_usage, with_candidates)
        await response.write(b"data: [DONE]\n\n")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _trailer(
    send: Any, base: dict[str, Any], results: list[Result], method: str, include_usage: bool, with_candidates: bool
) -> None:
    """The usage chunk (``stream_options.include_usage``) and the candidates extension, if asked for;
    ``auto``'s strategies always."""
    picked = None if with_candidates else strategies(results)
    if not (include_usage or with_candidates or picked):
        return
    last: dict[str, Any] = {**base, "choices": []}
    if include_usage:
        last["usage"] = usage_of(results)
    if with_candidates:
        last["fusion_of_n"] = extension(results, method)
    elif picked:
        last["fusion_of_n"] = picked
    await send(last)
