"""HTTPClient: retries, backoff, Retry-After, error messages, secrets. Only 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest
from aiohttp import web
from hypothesis import example, given
from hypothesis import strategies as st
from local_app import serve

from fusion_of_n.errors import BackendError, UpstreamHTTPError, UpstreamUnreachable
from fusion_of_n.http import HTTPClient, retry_after_seconds, upstream_message
from fusion_of_n.sse import SSEDecoder
from fusion_of_n.testing import FakeOpenAIServer, HTTPFault

BODY = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}
SECRET = "sk-test-secret-1234567890"


class Waits:
    """An injected sleep that records how long the client asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connecting is refused
    return f"http://127.0.0.1:{port}/v1"


async def test_post_json_sends_the_bearer_key_and_returns_the_json_object() -> None:
    async with FakeOpenAIServer(["hello"], api_key=SECRET) as srv:
        async with HTTPClient(srv.url, name="t", api_key=SECRET) as client:
            data = await client.post_json("/chat/completions", BODY)
    assert data["choices"][0]["message"]["content"] == "hello"
    assert srv.requests[0].headers["Authorization"] == f"Bearer {SECRET}"
    assert srv.requests[0].body == BODY


async def test_429_with_retry_after_waits_at_least_that_long_then_answers() -> None:
    waits = Waits()
    async with FakeOpenAIServer([HTTPFault(429, "slow down", retry_after=2), "ok"]) as srv:
        async with HTTPClient(srv.url, name="t", sleep=waits, backoff_base=0.01) as client:
            data = await client.post_json("/chat/completions", BODY)
    assert data["choices"][0]["message"]["content"] == "ok"
    assert len(srv.requests) == 2
    assert len(waits.waits) == 1 and waits.waits[0] >= 2


async def test_500_twice_then_success_retries_with_capped_full_jitter_backoff() -> None:
    waits = Waits()
    async with FakeOpenAIServer([HTTPFault(500), HTTPFault(500), "ok"]) as srv:
        async with HTTPClient(srv.url, name="t", sleep=waits, backoff_base=1.0, backoff_max=1.5) as client:
            data = await client.post_json("/chat/completions", BODY)
    assert data["choices"][0]["message"]["content"] == "ok"
    assert len(srv.requests) == 3
    assert len(waits.waits) == 2
    assert 0 <= waits.waits[0] <= 1.0 and 0 <= waits.waits[1] <= 1.5  # min(backoff_max, base * 2**attempt)


async def test_400_is_not_retried_and_the_error_carries_the_upstream_message() -> None:
    waits = Waits()
    async with FakeOpenAIServer([HTTPFault(400, "max_tokens is too large: 99999"), "ok"]) as srv:
        async with HTTPClient(srv.url, name="gen", sleep=waits) as client:
            with pytest.raises(UpstreamHTTPError) as caught:
                await client.post_json("/chat/completions", BODY)
    assert len(srv.requests) == 1 and waits.waits == []
    error = caught.value
    assert error.status == 400 and not error.retryable
    assert "max_tokens is too large: 99999" in str(error)
    assert f"{srv.url}/chat/completions" in str(error) and "'gen'" in str(error)


async def test_exhausted_retries_raise_the_last_error_with_the_attempt_count() -> None:
    waits = Waits()
    async with FakeOpenAIServer([HTTPFault(503, "overloaded")]) as srv:
        async with HTTPClient(srv.url, name="t", retries=2, sleep=waits) as client:
            with pytest.raises(UpstreamHTTPError, match="gave up after 3 attempts") as caught:
                await client.post_json("/chat/completions", BODY)
    assert caught.value.status == 503 and "overloaded" in str(caught.value)
    assert len(srv.requests) == 3 and len(waits.waits) == 2


async def test_retry_after_beyond_backoff_max_is_raised_instead_of_waited() -> None:
    waits = Waits()
    async with FakeOpenAIServer([HTTPFault(429, retry_after=120), "ok"]) as srv:
        async with HTTPClient(srv.url, name="t", backoff_max=30, sleep=waits) as client:
            with pytest.raises(UpstreamHTTPError, match="backoff_max") as caught:
                await client.post_json("/chat/completions", BODY)
    assert caught.value.retry_after == 120
    assert len(srv.requests) == 1 and waits.waits == []


async def test_refused_connection_raises_unreachable_naming_the_url_after_retries() -> None:
    waits = Waits()
    url = closed_port_url()
    async with HTTPClient(url, name="gen", retries=1, sleep=waits) as client:
        with pytest.raises(UpstreamUnreachable) as caught:
            await client.post_json("/chat/completions", BODY)
    assert f"{url}/chat/completions" in str(caught.value)
    assert "check that the server is running" in str(caught.value)
    assert len(waits.waits) == 1


async def test_dropped_connection_is_retried_then_answers() -> None:
    waits = Waits()
    async with FakeOpenAIServer([ConnectionResetError("drop"), "ok"]) as srv:
        async with HTTPClient(srv.url, name="t", sleep=waits) as client:
            data = await client.post_json("/chat/completions", BODY)
    assert data["choices"][0]["message"]["content"] == "ok"
    assert len(srv.requests) == 2 and len(waits.waits) == 1


async def test_read_timeout_raises_unreachable_that_names_the_timeout() -> None:
    async with FakeOpenAIServer(["late"], latency=5.0) as srv:
        async with HTTPClient(srv.url, name="t", read_timeout=0.2, retries=0) as client:
            with pytest.raises(UpstreamUnreachable, match=r"read_timeout=0\.2"):
                await client.post_json("/chat/completions", BODY)


async def test_401_and_404_errors_carry_a_hint_that_names_the_fix() -> None:
    async with FakeOpenAIServer({"m1": ["ok"]}, api_key="right") as srv:
        async with HTTPClient(srv.url, name="t", api_key="wrong") as client:
            with pytest.raises(UpstreamHTTPError, match="check the API key") as unauthorized:
                await client.post_json("/chat/completions", BODY)
        async with HTTPClient(srv.url, name="t", api_key="right") as client:
            with pytest.raises(UpstreamHTTPError, match=r"check the model name with GET .*/v1/models") as missing:
                await client.post_json("/chat/completions", {**BODY, "model": "nope"})
    assert unauthorized.value.status == 401
    assert missing.value.status == 404 and "The model 'nope' does not exist" in str(missing.value)


async def test_api_key_never_appears_in_errors_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    async def echo_auth(request: web.Request) -> web.Response:  # a server that leaks the header back
        return web.json_response({"error": {"message": f"bad key {request.headers['Authorization']}"}}, status=500)

    caplog.set_level(logging.DEBUG)
    waits = Waits()
    async with serve(echo_auth) as url:
        async with HTTPClient(url, name="t", api_key=SECRET, retries=2, sleep=waits) as client:
            with pytest.raises(UpstreamHTTPError) as caught:
                await client.post_json("/chat/completions", BODY)
            assert SECRET not in repr(client)
    assert "bad key Bearer ***" in str(caught.value)
    assert len(waits.waits) == 2
    assert [r.levelno for r in caplog.records if "retry" in r.getMessage()] == [logging.WARNING] * 2
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
    assert SECRET not in caplog.text


async def test_2xx_with_invalid_json_is_a_backend_error() -> None:
    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>welcome</html>", content_type="text/html")

    async with serve(html) as url:
        async with HTTPClient(url, name="t") as client:
            with pytest.raises(BackendError, match="not a JSON object") as caught:
                await client.post_json("/chat/completions", BODY)
    assert not isinstance(caught.value, (UpstreamHTTPError, UpstreamUnreachable))


async def test_get_json_reads_the_models_list() -> None:
    async with FakeOpenAIServer({"m1": ["a"], "m2": ["b"]}) as srv:
        async with HTTPClient(srv.url, name="t") as client:
            data = await client.get_json("/models")
    assert [m["id"] for m in data["data"]] == ["m1", "m2"]
    assert srv.requests[0].method == "GET"


async def test_requests_in_flight_never_exceed_max_concurrency() -> None:
    async with FakeOpenAIServer(["ok"], latency=0.1) as srv:
        async with HTTPClient(srv.url, name="t", max_concurrency=3) as client:
            await asyncio.gather(*(client.post_json("/chat/completions", BODY) for _ in range(12)))
    assert len(srv.requests) == 12
    assert srv.max_in_flight == 3


def test_client_closed_at_the_end_of_each_event_loop_is_reusable_in_the_next() -> None:
    async def call(client: HTTPClient) -> str:
        try:
            data = await client.post_json("/chat/completions", BODY)
            return str(data["choices"][0]["message"]["content"])
        finally:
            await client.aclose()

    with FakeOpenAIServer(["first", "second"]) as srv:
        client = HTTPClient(srv.url, name="t")
        answers = [asyncio.run(call(client)), asyncio.run(call(client))]
    assert answers == ["first", "second"]


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds("0.5") == 0.5
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_upstream_message_reads_the_openai_envelope_else_truncated_body() -> None:
    assert upstream_message(b'{"error": {"message": "model overloaded", "type": "x"}}') == "model overloaded"
    assert upstream_message(b'{"error": "plain"}') == "plain"
    assert upstream_message(b"Bad   Gateway\n") == "Bad Gateway"
    long = upstream_message(b"x" * 5000)
    assert long.endswith("...") and len(long) < 600
    assert upstream_message(b"") == "(empty body)"


# ---- post_stream: Server-Sent Events ------------------------------------------------------------------------

STREAM = (
    b": keep-alive\r\n\r\n"
    b'data: {"n": 1, "text": "caf\xc3\xa9"}\r\n\r\n'
    b"event: message\n"
    b'data: {"n": 2,\r\n'
    b'data: "text": "two lines"}\n\n'
    b'data:{"n": 3}\r\r'
    b"data: [DONE]\n\n"
)


def decode_in_pieces(raw: bytes, cuts: list[int]) -> list[str]:
    decoder = SSEDecoder()
    events: list[str] = []
    start = 0
    for cut in [*sorted(cuts), len(raw)]:
        events += decoder.feed(raw[start:cut])
        start = max(start, cut)
    return events + decoder.close()


@given(st.lists(st.integers(0, len(STREAM)), max_size=8))
@example(list(range(len(STREAM))))  # byte by byte
def test_sse_events_are_the_same_however_the_bytes_are_split(cuts: list[int]) -> None:
    events = decode_in_pieces(STREAM, cuts)

    assert events == ['{"n": 1, "text": "café"}', '{"n": 2,\n"text": "two lines"}', '{"n": 3}', "[DONE]"]


def test_sse_event_without_its_closing_blank_line_is_delivered_at_the_end() -> None:
    assert decode_in_pieces(b'data: {"last": true}', []) == ['{"last": true}']
    assert decode_in_pieces(b": only a comment\n\n", []) == []


def sse_upstream(body: bytes, *, drop: bool = False) -> Any:
    """An upstream that sends ``body`` as an event stream, then ends it or drops the connection."""
    calls: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        calls.append(1)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body)
        if drop:
            assert request.transport is not None
            request.transport.abort()
            return response
        await response.write_eof()
        return response

    handler.calls = calls  # type: ignore[attr-defined]
    return handler


async def test_post_stream_yields_each_event_until_done_and_ignores_what_follows() -> None:
    handler = sse_upstream(b'data: {"a": 1}\n\ndata: {"a": 2}\n\ndata: [DONE]\n\ndata: {"a": 3}\n\n')
    async with serve(handler) as url:
        async with HTTPClient(url, name="t", max_concurrency=1) as client:
            first = [event async for event in client.post_stream("/chat/completions", BODY)]
            second = [event async for event in client.post_stream("/chat/completions", BODY)]  # slot released

    assert first == second == [{"a": 1}, {"a": 2}]


async def test_post_stream_retries_a_connection_dropped_before_the_first_byte() -> None:
    waits = Waits()
    body = {**BODY, "stream": True}
    async with FakeOpenAIServer([ConnectionResetError("drop"), "fine"]) as srv:
        async with HTTPClient(srv.url, name="t", sleep=waits) as client:
            events = [event async for event in client.post_stream("/chat/completions", body)]

    text = "".join(c["choices"][0]["delta"].get("content", "") for c in events)
    assert text == "fine"
    assert len(srv.requests) == 2 and len(waits.waits) == 1


async def test_post_stream_connection_dropped_mid_stream_raises_without_a_retry() -> None:
    waits = Waits()
    handler = sse_upstream(b'data: {"a": 1}\n\n', drop=True)
    received: list[dict[str, Any]] = []
    async with serve(handler) as url:
        async with HTTPClient(url, name="gen", sleep=waits) as client:
            with pytest.raises(UpstreamUnreachable, match="not retried") as caught:
                async for event in client.post_stream("/chat/completions", BODY):
                    received.append(event)

    assert received == [{"a": 1}]
    assert handler.calls == [1] and waits.waits == []
    assert "'gen'" in str(caught.value)


async def test_post_stream_400_is_not_retried_and_carries_the_upstream_message() -> None:
    waits = Waits()
    async with FakeOpenAIServer([HTTPFault(400, "stream_options is not supported"), "ok"]) as srv:
        async with HTTPClient(srv.url, name="t", sleep=waits) as client:
            with pytest.raises(UpstreamHTTPError, match="stream_options is not supported") as caught:
                await anext(client.post_stream("/chat/completions", BODY))

    assert caught.value.status == 400 and len(srv.requests) == 1 and waits.waits == []


async def test_post_stream_event_that_is_not_json_is_a_backend_error() -> None:
    async with serve(sse_upstream(b"data: <html>oops</html>\n\n")) as url:
        async with HTTPClient(url, name="t") as client:
            with pytest.raises(BackendError, match="not a JSON object"):
                await anext(client.post_stream("/chat/completions", BODY))
