"""Secrets: one redaction function (keys in use and key shapes, redacted before any cut) at every
boundary where upstream text becomes an error or a log line, and a warning when a key would travel
unencrypted. Only 127.0.0.1 is contacted; the remote hosts below are never connected to."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from local_app import serve

from fusion_of_n.backends import ModelSpec
from fusion_of_n.backends.openai import OpenAIBackend
from fusion_of_n.errors import BackendError, UpstreamHTTPError, redact
from fusion_of_n.http import MAX_MESSAGE_CHARS, HTTPClient, upstream_message
from fusion_of_n.testing import FakeOpenAIServer, HTTPFault
from fusion_of_n.types import Params, Request

KEY = "QXZ7KWV9JY3PQXZ7KWV9JY3P"  # no key shape: only the exact-value match can catch it
KEY_CHARS = set(KEY)
PROMPT = Request.from_prompt("two plus two", params=Params(temperature=0.7))
BODY = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}


def leaked(text: str) -> bool:
    """Whether any 3 consecutive characters of KEY appear in ``text`` (a cut-off prefix counts)."""
    return any(KEY[i : i + 3] in text for i in range(len(KEY) - 2))


def remote_host() -> str:
    return f"gpu-box-{uuid.uuid4().hex[:8]}.invalid"  # a fresh host per test: the warning is once per host


# ---- the redaction function ----------------------------------------------------------------------------


def test_redact_masks_the_exact_keys_in_use_and_their_escaped_forms() -> None:
    slashed = "abc/def+ghi=jkl"

    assert redact(f"key {KEY} rejected", [KEY]) == "key *** rejected"
    assert redact('{"detail": "abc\\/def+ghi=jkl"}', [slashed]) == '{"detail": "***"}'
    assert redact("GET /v1?auth=abc%2Fdef%2Bghi%3Djkl", [slashed]) == "GET /v1?auth=***"
    assert redact("nothing here", [None, ""]) == "nothing here"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Incorrect API key provided: sk-proj-abcdefghijklmnop", "Incorrect API key provided: sk-***"),
        ("got Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload", "got Authorization: Bearer ***"),
        ("hf_abcdefghijklmnopqrst and gsk_abcdefghijklmnopqrst", "hf_*** and gsk_***"),
        ('{"api_key": "local-secret-123"}', '{"api_key": "***"}'),
        (
            "POST https://host/v1/models/x:generate?key=AIzaSyA1234567890abcdefghij",
            "POST https://host/v1/models/x:generate?key=***",
        ),
        ("connect to http://alice:hunter22@gpu-box:8000/v1 failed", "connect to http://***@gpu-box:8000/v1 failed"),
    ],
)
def test_redact_masks_common_key_shapes(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_leaves_ordinary_error_text_alone() -> None:
    text = "This model's maximum context length is 4096 tokens (max_tokens=5); Bearer token required"

    assert redact(text) == text


def test_placeholder_keys_shorter_than_four_characters_are_not_masked() -> None:
    assert redact("max_tokens exceeded", ["x"]) == "max_tokens exceeded"


@given(st.integers(min_value=0, max_value=60))
def test_redact_masks_before_cutting_so_a_key_straddling_the_limit_leaves_no_prefix(offset: int) -> None:
    text = "." * (MAX_MESSAGE_CHARS - 30 + offset) + KEY + "." * 20

    shown = redact(text, [KEY], limit=MAX_MESSAGE_CHARS)

    assert set(shown) <= {".", "*"} and len(shown) <= MAX_MESSAGE_CHARS + 3


def test_upstream_message_redacts_a_key_straddling_its_500_character_cut() -> None:
    raw = b'{"error": {"message": "' + b"." * (MAX_MESSAGE_CHARS - 5) + KEY.encode() + b"." * 20 + b'"}}'

    shown = upstream_message(raw, [KEY])

    assert not leaked(shown) and shown.endswith("...")


# ---- the boundaries: errors built from upstream text ----------------------------------------------------


async def test_a_4xx_body_quoting_the_key_across_the_500_character_cut_leaks_no_part_of_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    message = "." * (MAX_MESSAGE_CHARS - 10) + KEY
    async with FakeOpenAIServer([HTTPFault(400, message)]) as srv:
        backend = OpenAIBackend("m1", base_url=srv.url, api_key=KEY)
        with pytest.raises(UpstreamHTTPError) as caught:
            await backend.generate(PROMPT)
        await backend.aclose()

    assert caught.value.status == 400
    assert not leaked(str(caught.value)) and not leaked(caplog.text)


async def test_a_5xx_body_echoing_the_key_is_redacted_in_the_error_and_the_retry_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeOpenAIServer([HTTPFault(503, f"upstream saw key {KEY}")] * 2) as srv:
        async with HTTPClient(srv.url, name="t", api_key=KEY, retries=1, sleep=_no_wait) as client:
            with pytest.raises(UpstreamHTTPError, match=r"upstream saw key \*\*\*"):
                await client.post_json("/chat/completions", BODY)

    assert "retry 1/1" in caplog.text and not leaked(caplog.text)


async def test_an_error_event_mid_stream_quoting_the_key_past_the_cut_leaks_no_part_of_it() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        message = "." * (MAX_MESSAGE_CHARS - 10) + KEY
        await response.write(b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n')
        await response.write(b'data: {"error": {"message": "' + message.encode() + b'"}}\n\n')
        return response

    async with serve(handler) as url:
        backend = OpenAIBackend("m1", base_url=url, api_key=KEY)
        with pytest.raises(UpstreamHTTPError, match="in the middle of the stream") as caught:
            async for _ in backend.stream(PROMPT):
                pass
        await backend.aclose()

    assert not leaked(str(caught.value))


@pytest.mark.parametrize(
    "reply",
    [
        {"echo": {"authorization": f"Bearer {KEY}"}, "note": "no choices here"},
        {"choices": [{"index": 0, "text": "." * 170 + KEY}]},  # the key straddles the 200-character quote
    ],
)
async def test_an_unexpected_200_quoted_in_an_error_is_redacted_before_it_is_cut(reply: dict[str, Any]) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(reply)

    async with serve(handler, "/v1/chat/completions", "POST") as url:
        backend = OpenAIBackend("m1", base_url=url, api_key=KEY)
        with pytest.raises(BackendError) as caught:
            await backend.generate(PROMPT)
        await backend.aclose()

    assert "***" in str(caught.value) and not leaked(str(caught.value))


async def test_a_non_json_body_quoting_the_key_is_redacted() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=f"<html>proxy login for {KEY}</html>", content_type="text/html")

    async with serve(handler) as url:
        async with HTTPClient(url, name="t", api_key=KEY) as client:
            with pytest.raises(BackendError, match="not a JSON object") as caught:
                await client.post_json("/chat/completions", BODY)

    assert "proxy login for ***" in str(caught.value) and not leaked(str(caught.value))


async def _no_wait(seconds: float) -> None:
    return None


# ---- the warning: a key bound for plain http ------------------------------------------------------------


def _clear_text_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "unencrypted" in r.getMessage()]


def test_a_key_bound_for_a_remote_plain_http_url_is_warned_once_per_host(caplog: pytest.LogCaptureFixture) -> None:
    first, second = remote_host(), remote_host()
    with caplog.at_level(logging.WARNING, logger="fusion_of_n.http"):
        HTTPClient(f"http://{first}:8000/v1", name="a", api_key=KEY)
        HTTPClient(f"http://{first}:9000/v1", name="b", api_key=KEY)
        HTTPClient(f"http://{second}/v1", name="c", api_key=KEY)

    warnings = _clear_text_warnings(caplog)
    assert len(warnings) == 2
    assert first in warnings[0] and second in warnings[1]
    assert all("https://" in w and "key_env=NO_KEY" in w for w in warnings)
    assert not leaked(caplog.text)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/v1",
        "http://127.8.9.10:8080/v1",
        "http://localhost:8080/v1",
        "http://[::1]:8080/v1",
        "http://[::ffff:127.0.0.1]:8080/v1",
        "https://{remote}/v1",
    ],
)
def test_no_warning_for_loopback_or_https(url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fusion_of_n.http"):
        HTTPClient(url.format(remote=remote_host()), name="t", api_key=KEY)

    assert _clear_text_warnings(caplog) == []


def test_no_warning_when_no_key_is_sent(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fusion_of_n.http"):
        HTTPClient(f"http://{remote_host()}/v1", name="t", api_key=None)
        HTTPClient(f"http://{remote_host()}/v1", name="t", api_key="")

    assert _clear_text_warnings(caplog) == []


def test_the_backend_warning_names_its_key_variable_and_the_fix(caplog: pytest.LogCaptureFixture) -> None:
    host = remote_host()
    spec = ModelSpec.parse(f"openai:m1@http://{host}:8000/v1#key_env=LAN_KEY")
    with caplog.at_level(logging.WARNING, logger="fusion_of_n.http"):
        OpenAIBackend.from_spec(spec, {"LAN_KEY": KEY, "OPENAI_API_KEY": "sk-openai-abcdefghijkl"})

    (warning,) = _clear_text_warnings(caplog)
    assert "LAN_KEY" in warning and host in warning and "https://" in warning
    assert not leaked(caplog.text) and "abcdefghijkl" not in caplog.text


async def test_key_env_naming_an_empty_variable_sends_no_key_and_no_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    env = {"OPENAI_API_KEY": "sk-openai-abcdefghijkl", "NO_KEY": ""}
    async with FakeOpenAIServer(["ok"]) as srv:
        backend = OpenAIBackend.from_spec(ModelSpec.parse(f"openai:m1@{srv.url}#key_env=NO_KEY"), env)
        generation = await backend.generate(PROMPT)
        await backend.aclose()
    remote = OpenAIBackend.from_spec(ModelSpec.parse(f"openai:m1@http://{remote_host()}/v1#key_env=NO_KEY"), env)

    assert generation.candidates[0].text == "ok"
    assert "Authorization" not in srv.requests[0].headers
    assert remote.client._api_key is None
    assert _clear_text_warnings(caplog) == []
