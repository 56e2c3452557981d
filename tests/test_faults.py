"""Fault injection under load: ``generate`` over 500 rows at 64 in flight and the proxy under 200
concurrent requests (stream and not), against an upstream that fails by a seeded plan (FaultPlan: 429 with
Retry-After, 500/502/503, stalls past the client's timeout, malformed bodies and streams, cut and dropped
connections) and quotes the API key in some of its error bodies.

Nothing crashes or hangs (a generous ``asyncio.wait_for`` is the only clock), every row is exactly once
in the output or the errors file, every request gets a 200 or an OpenAI error envelope and every stream
its ``[DONE]``, the key is in no output, response or log line, and memory does not grow from one batch to
the next. Loopback only; seeds fixed.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from upstream_calls import fusing_step, is_fusor

from fusion_of_n import Pipeline, PipelineSettings
from fusion_of_n.backends.openai import OpenAIBackend
from fusion_of_n.errors import BackendError, UpstreamHTTPError, UpstreamUnreachable
from fusion_of_n.pipeline.inputs import read_rows
from fusion_of_n.pipeline.runner import BatchRunner, Summary, secrets_of
from fusion_of_n.records import read_records
from fusion_of_n.server import create_app
from fusion_of_n.server.runner import start_site
from fusion_of_n.sse import SSEDecoder
from fusion_of_n.testing import FakeOpenAIServer, FaultPlan
from fusion_of_n.testing.faults import FAULTS
from fusion_of_n.types import Request

SECRET = "fault-key-SECRET-7c1e9a"  # not shaped like a key: only redaction of the exact value hides it
ENV = {"OPENAI_API_KEY": SECRET}
FUSED = "Paris is the capital of France."
HANG_GUARD = 120.0  # seconds; a hang guard only, never a speed check
UPSTREAM = fusing_step("It is Paris, on the Seine.", f"Comparison: both agree.\n[[{FUSED}]]")


def spec(model: str, url: str) -> str:
    """An upstream model with a short read timeout (the plan's stalls outlast it) and two retries."""
    return f"openai:{model}@{url}#timeout=1,retries=2,max_concurrency=64"


def settings(url: str) -> PipelineSettings:
    return PipelineSettings.of(models=[spec("teacher", url)], fusor=spec("fusor", url), n=2, method="fusion")


# -- the fault plan ----------------------------------------------------------------------------------


def test_a_fault_plans_draws_depend_on_the_seed_the_body_and_the_attempt_not_on_arrival_order() -> None:
    bodies = [{"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(40)]

    def draws(plan: FaultPlan, order: list[dict[str, Any]]) -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {}
        for body in order:
            seen.setdefault(body["messages"][0]["content"], []).append(plan.draw(body)[0])
        return seen

    forward = draws(FaultPlan(seed=3), bodies * 3)
    assert forward == draws(FaultPlan(seed=3), list(reversed(bodies)) * 3)
    assert forward != draws(FaultPlan(seed=4), bodies * 3)
    assert any(len(set(kinds)) > 1 for kinds in forward.values())  # a retry of one body draws anew


# What the library makes of each fault: the retryable ones are UpstreamHTTPError (429, 5xx) and
# UpstreamUnreachable (stalls, cut and dropped connections); a malformed reply is a plain BackendError.
SEEN_AS: dict[str, set[type[Exception]]] = {
    "rate_limited": {UpstreamHTTPError},
    "server_error": {UpstreamHTTPError},
    "timeout": {UpstreamUnreachable},
    "malformed": {BackendError},
    "truncated": {UpstreamUnreachable},
    "dropped": {UpstreamUnreachable},
}
STREAM_SEEN_AS: dict[str, set[type[Exception]]] = {
    **SEEN_AS,
    "malformed": {BackendError, UpstreamHTTPError},  # or an error event in the middle of the stream
    "truncated": {UpstreamUnreachable, BackendError},  # or a clean end without finish_reason
}


@pytest.mark.parametrize("kind", sorted(SEEN_AS))
async def test_each_fault_reaches_the_openai_backend_as_the_error_it_stands_for(kind: str) -> None:
    plan = FaultPlan(seed=1, weights={kind: 1}, hang=5.0, leak=SECRET)
    async with FakeOpenAIServer(UPSTREAM, faults=plan) as upstream:
        backend = OpenAIBackend("m", base_url=upstream.url, api_key=SECRET, timeout=0.3, retries=0)
        try:
            for i in range(4):
                request = Request(({"role": "user", "content": f"question {i}"},))
                with pytest.raises(BackendError) as caught:
                    await backend.generate(request)
                assert type(caught.value) in SEEN_AS[kind], caught.value
                with pytest.raises(BackendError) as caught:
                    async for _ in backend.stream(request):
                        pass
                assert type(caught.value) in STREAM_SEEN_AS[kind], caught.value
                assert SECRET not in str(caught.value)
        finally:
            await backend.aclose()
    if kind == "rate_limited":
        assert isinstance(caught.value, UpstreamHTTPError) and caught.value.retry_after == 0
    assert plan.counts == {kind: 8}


# -- generate ----------------------------------------------------------------------------------------


def write_rows(path: Path, count: int) -> set[str]:
    rows = [{"id": f"q{i}", "prompt": f"Question {i}: what is the capital of France?"} for i in range(count)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return {row["id"] for row in rows}


async def generate(pipeline: Pipeline, config: PipelineSettings, rows: Path, output: Path) -> Summary:
    runner = BatchRunner(pipeline, ("fusion",), str(output), concurrency=64, secrets=secrets_of(config, ENV))
    return await asyncio.wait_for(runner.run(read_rows(str(rows))), HANG_GUARD)


def ids_of(path: Path) -> list[str]:
    return [str(record["id"]) for record in read_records(str(path))]


def errors_file(output: Path) -> Path:
    return Path(str(output) + ".errors.jsonl")


def assert_each_row_once(output: Path, expected: set[str]) -> None:
    written, failed = ids_of(output), ids_of(errors_file(output))
    assert len(written) == len(set(written)), "a row was written twice"
    assert len(failed) == len(set(failed)), "a row failed twice in one errors file"
    assert not set(written) & set(failed), "a row is both written and failed"
    assert set(written) | set(failed) == expected, "a row was lost"


async def test_generate_under_faults_keeps_every_row_exactly_once_and_never_writes_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows, output = tmp_path / "rows.jsonl", tmp_path / "out.jsonl"
    expected = write_rows(rows, 500)
    plan = FaultPlan(seed=11, leak=SECRET)
    caplog.set_level(logging.DEBUG)
    async with FakeOpenAIServer(UPSTREAM, api_key=SECRET, faults=plan) as upstream:
        config = settings(upstream.url)
        async with Pipeline(config, ENV) as pipeline:
            first = await generate(pipeline, config, rows, output)
            assert_each_row_once(output, expected)
            failed_first = set(ids_of(errors_file(output)))
            texts = {"output": output.read_text(), "errors": errors_file(output).read_text()}
            seen = len(upstream.requests)
            second = await generate(pipeline, config, rows, output)  # resume: only the failed rows again
        redone = {r.body["messages"][-1]["content"] for r in upstream.requests[seen:] if not is_fusor(r.body)}

    assert (first.read, first.done + first.failed) == (500, 500)
    assert first.done > 0 and first.failed > 0, "the mix should let some rows through and fail others"
    assert set(plan.counts) == set(FAULTS), f"every kind of fault was injected: {plan.counts}"
    assert (second.skipped, second.attempted) == (first.done, first.failed)
    assert redone == {f"Question {i[1:]}: what is the capital of France?" for i in failed_first}
    assert_each_row_once(output, expected)
    assert len(set(ids_of(output))) == first.done + second.done
    for record in read_records(str(output)):
        assert record["results"]["fusion"]["text"] == FUSED  # an error is never written as an answer
    for record in read_records(str(errors_file(output))):
        assert record["error"]["stage"] in ("sampling", "fusion") and record["error"]["message"]
    texts |= {"output again": output.read_text(), "errors again": errors_file(output).read_text()}
    texts["log"] = caplog.text
    assert "retry" in caplog.text  # the log was captured (retries are logged)
    assert [name for name, text in texts.items() if SECRET in text] == []


async def test_generate_memory_does_not_grow_across_runs_on_one_pipeline(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    write_rows(rows, 60)
    async with FakeOpenAIServer(UPSTREAM, api_key=SECRET, faults=FaultPlan(seed=13), record=False) as upstream:
        config = settings(upstream.url)
        async with Pipeline(config, ENV) as pipeline:

            async def batch(k: int) -> None:
                await generate(pipeline, config, rows, tmp_path / f"out{k}.jsonl")

            growth = await memory_growth(batch)
    assert growth.bytes < 1_000_000 and not growth.objects, growth.report


# -- serve -------------------------------------------------------------------------------------------


@asynccontextmanager
async def proxy(upstream_url: str) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """The proxy as ``serve`` runs it (handler cancellation on), on this loop; a client without a pool limit."""
    app = create_app({"fusion-of-n": settings(upstream_url)}, env=ENV, max_in_flight=256)
    runner, port = await start_site(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as session:
            yield f"http://127.0.0.1:{port}/v1", session
    finally:
        await runner.cleanup()


async def ask(session: aiohttp.ClientSession, url: str, i: int, stream: bool) -> tuple[int, str, bytes]:
    body = {
        "model": "fusion-of-n",
        "messages": [{"role": "user", "content": f"Question {i}: what is the capital of France?"}],
        "stream": stream,
        "max_tokens": 64,
    }
    async with session.post(url + "/chat/completions", json=body) as response:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        return response.status, headers, await response.read()


def verdict(status: int, raw: bytes, stream: bool) -> str:
    """``ok`` (the fused answer), ``envelope`` (an error status with an OpenAI error envelope), ``event``
    (a stream that ended with an error event then [DONE]); anything else says what was wrong."""
    if status != 200:
        try:
            error = json.loads(raw)["error"]
        except (ValueError, KeyError, TypeError):
            return f"bad: {status} without an error envelope: {raw[:200]!r}"
        good = 400 <= status <= 599 and isinstance(error.get("message"), str) and error["message"]
        return "envelope" if good else f"bad: {status} envelope {error!r}"
    if not stream:
        reply = json.loads(raw)
        text = reply["choices"][0]["message"]["content"]
        return "ok" if text == FUSED else f"bad: 200 with {text!r}"
    decoder = SSEDecoder()
    events = decoder.feed(raw) + decoder.close()
    if not events or events[-1] != "[DONE]" or "[DONE]" in events[:-1]:
        return f"bad: a stream that does not end with one [DONE]: {events[-3:]!r}"
    chunks = [json.loads(event) for event in events[:-1]]
    errors = [i for i, chunk in enumerate(chunks) if "error" in chunk]
    if errors:
        message = chunks[-1]["error"].get("message") if errors == [len(chunks) - 1] else None
        return "event" if isinstance(message, str) and message else f"bad: error events {chunks[-2:]!r}"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    return "ok" if text == FUSED else f"bad: streamed {text!r}"


async def test_proxy_under_200_concurrent_faulty_requests_answers_each_properly_and_never_shows_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plan = FaultPlan(seed=23, leak=SECRET)
    caplog.set_level(logging.DEBUG)
    async with FakeOpenAIServer(UPSTREAM, api_key=SECRET, faults=plan) as upstream, proxy(upstream.url) as (url, s):
        modes = [i % 2 == 0 for i in range(200)]
        work = asyncio.gather(*(ask(s, url, i, stream) for i, stream in enumerate(modes)))
        answers = await asyncio.wait_for(work, HANG_GUARD)
        async with s.get(url.removesuffix("/v1") + "/health") as health:
            alive = health.status
        hidden = (SECRET, upstream.url, f"127.0.0.1:{upstream.port}")

    pairs = zip(answers, modes, strict=True)
    verdicts = Counter((stream, verdict(status, raw, stream)) for (status, _, raw), stream in pairs)
    assert [v for v in verdicts if v[1].startswith("bad")] == []
    assert alive == 200  # the proxy survived the storm
    assert set(plan.counts) == set(FAULTS), f"every kind of fault was injected: {plan.counts}"
    assert {v for v in verdicts if v[1] == "ok"} == {(True, "ok"), (False, "ok")}, verdicts
    assert {(False, "envelope"), (True, "event")} <= set(verdicts), verdicts  # failures of both kinds happened
    shown = [headers + raw.decode() for _, headers, raw in answers]
    assert [(i, h) for i, text in enumerate(shown) for h in hidden if h in text] == []
    assert SECRET not in caplog.text
    assert "stream failed after it started" in caplog.text  # the log was captured


async def test_proxy_memory_does_not_grow_across_batches_of_faulty_requests() -> None:
    async with (
        FakeOpenAIServer(UPSTREAM, api_key=SECRET, faults=FaultPlan(seed=5), record=False) as upstream,
        proxy(upstream.url) as (url, session),
    ):

        async def batch(_: int) -> None:
            work = asyncio.gather(*(ask(session, url, i, i % 2 == 0) for i in range(60)))
            await asyncio.wait_for(work, HANG_GUARD)

        growth = await memory_growth(batch)
    assert growth.bytes < 1_000_000 and not growth.objects, growth.report


# -- memory ------------------------------------------------------------------------------------------


class Growth:
    """Traced memory and the library's live objects after the third run of a batch minus after the second."""

    def __init__(self, before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, objects: list[Counter[str]]) -> None:
        stats = after.compare_to(before, "lineno")
        self.bytes = sum(stat.size_diff for stat in stats)
        self.objects = objects[2] - objects[1]  # instances of the library's classes left behind
        self.report = f"grew {self.bytes} bytes, objects {dict(self.objects)}; most:\n" + "\n".join(
            str(s) for s in stats[:15]
        )


def library_objects() -> Counter[str]:
    """Live instances of the library's classes (not its fakes, whose stalled handlers may lag behind)."""
    found: Counter[str] = Counter()
    for item in gc.get_objects():
        module = getattr(type(item), "__module__", None)
        if isinstance(module, str) and module.startswith("fusion_of_n.") and ".testing." not in module:
            found[type(item).__qualname__] += 1
    return found


@contextmanager
def quiet() -> Iterator[None]:
    """No log records while memory is measured: a log kept in memory (pytest keeps every record) is the
    caller's memory, not a leak of ours."""
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


async def memory_growth(batch: Callable[[int], Awaitable[None]]) -> Growth:
    """Run ``batch`` three times (the first warms caches and pools), each followed by a full collection,
    a tracemalloc snapshot and a count of the library's live objects; the growth from the second to the third."""
    snapshots, objects = [], []
    with quiet():
        tracemalloc.start()
        try:
            for k in range(3):
                await batch(k)
                gc.collect()
                snapshots.append(tracemalloc.take_snapshot())
                objects.append(library_objects())
        finally:
            tracemalloc.stop()
    return Growth(snapshots[1], snapshots[2], objects)
