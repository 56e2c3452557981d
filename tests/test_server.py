"""The proxy, driven by the official openai SDK (sync and async) against a fake upstream on 127.0.0.1."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from upstream_calls import fusing_step, is_fusor

from fusion_of_n.config import PipelineSettings
from fusion_of_n.server import create_app
from fusion_of_n.server.runner import BackgroundServer
from fusion_of_n.testing import FakeOpenAIServer, count_tokens
from fusion_of_n.types import message_text

PROXY_KEY = "proxy-key-123"
UPSTREAM_KEY = "sk-upstream-SECRET-999"
FUSED = "Paris is the capital of France, and it sits on the Seine."
CHAT = [
    {"role": "system", "content": "You answer in one sentence."},
    {"role": "user", "content": "Hi!"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "What is the capital of France?"},
]


upstream_step = fusing_step("It is Paris.", f"Comparison: candidate 2 adds the river.\nAnswer: [[{FUSED}]]", delay=0.01)


def upstream_usage(server: FakeOpenAIServer) -> tuple[int, int]:
    """What the fake upstream reported, summed over every call it answered (see FakeOpenAIServer)."""
    prompt = completion = 0
    for recorded in server.requests:
        body = recorded.body
        if recorded.path != "/v1/chat/completions":
            continue
        prompt += sum(count_tokens(message_text(m)) for m in body["messages"])
        text = f"Comparison: candidate 2 adds the river.\nAnswer: [[{FUSED}]]" if is_fusor(body) else None
        replies = [text] if text else [upstream_step(body).text] * body.get("n", 1)
        completion += sum(count_tokens(t) for t in replies)
    return prompt, completion


@pytest.fixture
def upstream() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer({"m1": upstream_step}, api_key=UPSTREAM_KEY) as server:
        yield server


def proxy_for(upstream_url: str, **settings: Any) -> BackgroundServer:
    presets = {
        "fusion-of-n": PipelineSettings.of(models=[f"openai:m1@{upstream_url}"], n=4, method="fusion", **settings),
        "pick": PipelineSettings.of(models=[f"openai:m1@{upstream_url}"], n=2, method="first"),
    }
    return BackgroundServer(lambda: create_app(presets, api_key=PROXY_KEY, env={"OPENAI_API_KEY": UPSTREAM_KEY}))


@pytest.fixture
def proxy(upstream: FakeOpenAIServer) -> Iterator[BackgroundServer]:
    with proxy_for(upstream.url) as server:
        yield server


def client(proxy: BackgroundServer, key: str = PROXY_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url, api_key=key, max_retries=0)


def test_four_message_chat_gets_the_fused_text_and_the_upstream_gets_those_messages(proxy, upstream) -> None:
    reply = client(proxy).chat.completions.create(model="fusion-of-n", messages=CHAT)
    assert reply.choices[0].message.content == FUSED
    assert reply.choices[0].finish_reason == "stop"
    generation = [r.body for r in upstream.requests if not is_fusor(r.body)]
    assert len(generation) == 1 and generation[0]["n"] == 4
    assert generation[0]["messages"] == CHAT  # exactly those four messages
    fusor_call = next(r.body for r in upstream.requests if is_fusor(r.body))
    assert fusor_call["messages"][:3] == CHAT[:3]  # the history is a prefix of the fusor's chat
    prompt, completion = upstream_usage(upstream)
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (prompt, completion)
    assert reply.usage.total_tokens == prompt + completion


def test_streaming_sends_only_the_fused_text_in_several_chunks_and_a_usage_chunk(proxy, upstream) -> None:
    stream = client(proxy).chat.completions.create(
        model="fusion-of-n", messages=CHAT, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 3
    assert "".join(pieces) == FUSED
    assert "Comparison" not in "".join(pieces)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    prompt, completion = upstream_usage(upstream)
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (prompt, completion)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]


def test_stream_without_include_usage_has_no_usage_chunk(proxy) -> None:
    chunks = list(client(proxy).chat.completions.create(model="fusion-of-n", messages=CHAT, stream=True))
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == FUSED


async def test_async_client_stream_and_non_stream(proxy) -> None:
    async with openai.AsyncOpenAI(base_url=proxy.url, api_key=PROXY_KEY, max_retries=0) as aclient:
        reply = await aclient.chat.completions.create(model="fusion-of-n", messages=CHAT)
        assert reply.choices[0].message.content == FUSED
        stream = await aclient.chat.completions.create(model="fusion-of-n", messages=CHAT, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == FUSED


def test_extra_body_method_first_makes_no_fusor_call(proxy, upstream) -> None:
    reply = client(proxy).chat.completions.create(
        model="fusion-of-n", messages=CHAT, extra_body={"fusion_of_n": {"method": "first", "n": 2}}
    )
    assert not any(is_fusor(r.body) for r in upstream.requests)
    assert [r.body["n"] for r in upstream.requests] == [2]
    assert reply.choices[0].message.content == "It is Paris."


def test_return_candidates_carries_candidates_scores_analysis_and_stage_usage(proxy) -> None:
    reply = client(proxy).chat.completions.create(
        model="fusion-of-n", messages=CHAT, extra_body={"fusion_of_n": {"return_candidates": True}}
    )
    extension = reply.model_extra["fusion_of_n"]
    choice = extension["choices"][0]
    assert extension["method"] == "fusion"
    assert len(choice["candidates"]) == 4 and {"text", "model", "score", "finish_reason"} <= set(
        choice["candidates"][0]
    )
    assert choice["analysis"] == "candidate 2 adds the river."
    assert set(choice["usage"]) == {"sampling", "fusion", "total"}


def test_streamed_return_candidates_arrive_in_the_last_chunk(proxy) -> None:
    chunks = list(
        client(proxy).chat.completions.create(
            model="fusion-of-n", messages=CHAT, stream=True, extra_body={"fusion_of_n": {"return_candidates": True}}
        )
    )
    extension = chunks[-1].model_extra["fusion_of_n"]
    assert extension["choices"][0]["analysis"] == "candidate 2 adds the river."


def test_per_request_parameters_reach_candidate_generation(proxy, upstream) -> None:
    client(proxy).chat.completions.create(
        model="pick", messages=CHAT, temperature=0.2, top_p=0.5, max_completion_tokens=40, seed=11, stop=["\n\n"]
    )
    body = upstream.requests[0].body
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"], body["stop"]) == (
        0.2,
        0.5,
        40,
        11,
        ["\n\n"],
    )


def test_n_choices_are_independent_aggregations(proxy, upstream) -> None:
    reply = client(proxy).chat.completions.create(model="fusion-of-n", messages=CHAT, n=2)
    assert [c.index for c in reply.choices] == [0, 1]
    assert all(c.message.content == FUSED for c in reply.choices)
    assert sum(1 for r in upstream.requests if is_fusor(r.body)) == 2
    assert sum(1 for r in upstream.requests if not is_fusor(r.body)) == 2


def test_streamed_n_choices_each_concatenate_to_their_text(proxy) -> None:
    chunks = list(client(proxy).chat.completions.create(model="fusion-of-n", messages=CHAT, n=2, stream=True))
    for index in (0, 1):
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == index)
        assert text == FUSED


def test_models_and_health(proxy) -> None:
    assert sorted(m.id for m in client(proxy).models.list()) == ["fusion-of-n", "pick"]
    assert httpx.get(proxy.url.removesuffix("/v1") + "/health").json()["status"] == "ok"


def envelope(response: httpx.Response) -> dict[str, Any]:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Basic {PROXY_KEY}"])
def test_missing_or_wrong_key_is_401_in_the_envelope(proxy, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    response = httpx.post(proxy.url + "/chat/completions", json={"model": "pick", "messages": CHAT}, headers=headers)
    assert response.status_code == 401
    assert envelope(response)["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(proxy, key="wrong").chat.completions.create(model="pick", messages=CHAT)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "pick"}, "messages"),
        ({"model": "pick", "messages": "hello"}, "messages"),
        ({"model": "pick", "messages": []}, "messages"),
        ({"model": "pick", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({"model": "pick", "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"model": "pick", "messages": CHAT, "temperature": "hot"}, "temperature"),
        ({"model": "pick", "messages": CHAT, "max_tokens": 0}, "max_tokens"),
        ({"model": "pick", "messages": CHAT, "tools": [{"type": "function"}]}, "tools"),
        ({"model": "pick", "messages": CHAT, "fusion_of_n": {"nn": 3}}, "fusion_of_n.nn"),
        ({"model": "pick", "messages": CHAT, "fusion_of_n": {"method": "best"}}, "fusion_of_n.method"),
        ({"model": "pick", "messages": CHAT, "fusion_of_n": {"fusor": "local:/etc/passwd"}}, "fusion_of_n.fusor"),
        ({"messages": CHAT}, "model"),
    ],
)
def test_invalid_body_is_400_naming_the_field(proxy, upstream, body: dict[str, Any], param: str) -> None:
    response = httpx.post(proxy.url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {PROXY_KEY}"})
    assert response.status_code == 400, response.text
    error = envelope(response)
    assert error["param"] == param and param.split(".")[-1] in error["message"]
    assert upstream.requests == []


def test_unknown_model_is_404_listing_the_presets(proxy) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client(proxy).chat.completions.create(model="gpt-9", messages=CHAT)
    assert "fusion-of-n" in str(info.value) and "pick" in str(info.value)


def test_non_json_body_is_400(proxy) -> None:
    response = httpx.post(
        proxy.url + "/chat/completions",
        content=b"{nope",
        headers={"Authorization": f"Bearer {PROXY_KEY}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and "JSON" in envelope(response)["message"]


def test_upstream_down_is_a_502_envelope_naming_the_model_alias_and_the_log_has_the_url(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeOpenAIServer(["x"]) as dead:
        url = dead.url
    with proxy_for(url + "#retries=0") as proxy:
        response = httpx.post(
            proxy.url + "/chat/completions",
            json={"model": "pick", "messages": CHAT},
            headers={"Authorization": f"Bearer {PROXY_KEY}"},
        )
    assert response.status_code == 502
    error = envelope(response)
    host = url.split("/v1")[0].removeprefix("http://")
    assert "openai:m1" in error["message"] and "could not be reached" in error["message"]
    assert host not in response.text and "retries=0" not in response.text  # clients see aliases only
    assert host in caplog.text  # the server log has the full detail
    assert UPSTREAM_KEY not in response.text
    assert UPSTREAM_KEY not in caplog.text and PROXY_KEY not in caplog.text


def test_upstream_key_never_appears_in_server_logs(proxy, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client(proxy).chat.completions.create(model="fusion-of-n", messages=CHAT)
    list(client(proxy).chat.completions.create(model="fusion-of-n", messages=CHAT, stream=True))
    assert caplog.records  # the server did log
    assert UPSTREAM_KEY not in caplog.text and PROXY_KEY not in caplog.text


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# the fusor takes 30 s to answer: the client always leaves first
SLOW_FUSOR = fusing_step("candidate", "Comparison: x\n[[" + "word " * 50 + "]]", delay=30)


def test_client_disconnect_cancels_the_upstream_fusor_call() -> None:
    with FakeOpenAIServer({"m1": SLOW_FUSOR}) as upstream, proxy_for(upstream.url) as proxy:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                proxy.url + "/chat/completions",
                json={"model": "fusion-of-n", "messages": CHAT},
                headers={"Authorization": f"Bearer {PROXY_KEY}"},
                timeout=1.0,
            )
        assert wait_for(lambda: upstream.cancelled >= 1)  # the proxy dropped its upstream request


def test_closing_a_stream_cancels_the_upstream_fusor_stream() -> None:
    with FakeOpenAIServer({"m1": SLOW_FUSOR}) as upstream, proxy_for(upstream.url) as proxy:
        with httpx.stream(
            "POST",
            proxy.url + "/chat/completions",
            json={"model": "fusion-of-n", "messages": CHAT, "stream": True},
            headers={"Authorization": f"Bearer {PROXY_KEY}"},
            timeout=10,
        ) as response:
            assert response.status_code == 200
            first = next(response.iter_lines())
            assert first.startswith("data: ")  # the role chunk came; now the client leaves
        assert wait_for(lambda: upstream.cancelled >= 1)
