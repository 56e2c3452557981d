"""FakeOpenAIServer: the OpenAI wire format, streaming, faults and bookkeeping. Only 127.0.0.1."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import aiohttp
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fusion_of_n.testing import FakeOpenAIServer, HTTPFault, Reply
from fusion_of_n.testing.server import split_words

BODY: dict[str, Any] = {"model": "m1", "messages": [{"role": "user", "content": "say something"}]}


async def post(url: str, body: dict[str, Any], **headers: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/chat/completions", json=body, headers=headers) as response:
            return response.status, dict(response.headers), await response.read()


def sse_events(raw: bytes) -> list[str]:
    return [line[len("data: ") :] for line in raw.decode().split("\n\n") if line.startswith("data: ")]


async def test_stream_chunks_concatenate_to_each_choice_text() -> None:
    texts = ["  Hello there,  world!\n", "second answer"]
    async with FakeOpenAIServer(texts) as srv:
        status, headers, raw = await post(srv.url, {**BODY, "stream": True, "n": 2})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    pieces: dict[int, list[str]] = {0: [], 1: []}
    finish: dict[int, str] = {}
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        for choice in chunk["choices"]:
            pieces[choice["index"]].append(choice["delta"].get("content", ""))
            if choice["finish_reason"]:
                finish[choice["index"]] = choice["finish_reason"]
    assert ["".join(pieces[0]), "".join(pieces[1])] == texts
    assert len(pieces[0]) > 3  # word by word, not one final chunk
    assert finish == {0: "stop", 1: "stop"}
    assert all("usage" not in c for c in chunks)


async def test_stream_sends_a_usage_chunk_when_include_usage_is_asked() -> None:
    async with FakeOpenAIServer(["three word reply"]) as srv:
        _, _, raw = await post(srv.url, {**BODY, "stream": True, "stream_options": {"include_usage": True}})
    chunks = [json.loads(e) for e in sse_events(raw)[:-1]]
    last = chunks[-1]
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert all(c["usage"] is None for c in chunks[:-1])


async def test_unknown_model_gets_404_in_the_openai_error_envelope() -> None:
    async with FakeOpenAIServer({"m1": ["ok"]}) as srv:
        status, _, raw = await post(srv.url, {**BODY, "model": "m9"})
    assert status == 404
    assert json.loads(raw)["error"]["message"] == "The model 'm9' does not exist"


async def test_api_key_gates_requests_with_401() -> None:
    async with FakeOpenAIServer(["ok"], api_key="sk-right") as srv:
        missing, _, raw = await post(srv.url, BODY)
        wrong, _, _ = await post(srv.url, BODY, Authorization="Bearer sk-wrong")
        right, _, _ = await post(srv.url, BODY, Authorization="Bearer sk-right")
    assert (missing, wrong, right) == (401, 401, 200)
    assert "sk-right" not in raw.decode() and json.loads(raw)["error"]["code"] == "invalid_api_key"


async def test_http_fault_answers_its_status_envelope_and_retry_after() -> None:
    async with FakeOpenAIServer([HTTPFault(429, "slow down", retry_after=2), "ok"]) as srv:
        status, headers, raw = await post(srv.url, BODY)
        again, _, _ = await post(srv.url, BODY)
    assert (status, again) == (429, 200)
    assert headers["Retry-After"] == "2"
    assert json.loads(raw)["error"] == {"message": "slow down", "type": "rate_limit_error", "param": None, "code": None}


async def test_exception_step_drops_the_connection_without_a_response() -> None:
    async with FakeOpenAIServer([RuntimeError("boom"), "ok"]) as srv:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(srv.url, BODY)
        status, _, _ = await post(srv.url, BODY)
    assert status == 200


async def test_n_is_honoured_unless_honour_n_is_false() -> None:
    async with FakeOpenAIServer(["a", "b", "c"]) as srv:
        _, _, raw = await post(srv.url, {**BODY, "n": 3})
    assert [c["message"]["content"] for c in json.loads(raw)["choices"]] == ["a", "b", "c"]
    async with FakeOpenAIServer(["a", "b", "c"], honour_n=False) as srv:
        _, _, raw = await post(srv.url, {**BODY, "n": 3})
    assert [c["message"]["content"] for c in json.loads(raw)["choices"]] == ["a"]


async def test_usage_counts_message_words_and_reply_words_or_the_reply_overrides() -> None:
    async with FakeOpenAIServer(["one two", Reply("x", prompt_tokens=50, completion_tokens=9)]) as srv:
        _, _, first = await post(srv.url, BODY)
        _, _, second = await post(srv.url, BODY)
    assert json.loads(first)["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    assert json.loads(second)["usage"] == {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59}


async def test_logprobs_come_from_the_reply_and_are_cut_to_top_logprobs() -> None:
    reply = Reply("a", logprobs=((("a", -0.1), ("b", -1.0), ("c", -3.0)),))
    async with FakeOpenAIServer([reply]) as srv:
        _, _, plain = await post(srv.url, BODY)
        _, _, asked = await post(srv.url, {**BODY, "logprobs": True, "top_logprobs": 2})
    assert json.loads(plain)["choices"][0]["logprobs"] is None
    token = json.loads(asked)["choices"][0]["logprobs"]["content"][0]
    assert (token["token"], token["logprob"]) == ("a", -0.1)
    assert [(t["token"], t["logprob"]) for t in token["top_logprobs"]] == [("a", -0.1), ("b", -1.0)]


async def test_callable_steps_receive_the_json_body_and_requests_are_recorded() -> None:
    def shout(body: dict[str, Any]) -> str:
        return body["messages"][-1]["content"].upper()

    async with FakeOpenAIServer([shout]) as srv:
        _, _, raw = await post(srv.url, BODY, **{"X-Trace": "t1"})
    assert json.loads(raw)["choices"][0]["message"]["content"] == "SAY SOMETHING"
    recorded = srv.requests[0]
    assert (recorded.method, recorded.path, recorded.body) == ("POST", "/v1/chat/completions", BODY)
    assert recorded.headers["x-trace"] == "t1"


def test_sync_context_manager_serves_models_and_chat() -> None:
    with FakeOpenAIServer({"m1": ["hi"], "m2": ["yo"]}) as srv:
        with urllib.request.urlopen(f"{srv.url}/models") as response:
            models = json.load(response)
        request = urllib.request.Request(
            f"{srv.url}/chat/completions",
            data=json.dumps({**BODY, "model": "m2"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:
            chat = json.load(response)
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{srv.url}/nope")
        missing.value.close()
    assert [m["id"] for m in models["data"]] == ["m1", "m2"]
    assert chat["choices"][0]["message"]["content"] == "yo" and chat["model"] == "m2"
    assert missing.value.code == 404


def test_url_before_start_explains_how_to_start() -> None:
    with pytest.raises(RuntimeError, match="context manager"):
        _ = FakeOpenAIServer().url


async def test_the_official_openai_client_reads_plain_and_streamed_answers() -> None:
    async with FakeOpenAIServer(["fused answer here"], api_key="sk-x") as srv:
        client = openai.AsyncOpenAI(base_url=srv.url, api_key="sk-x", max_retries=0)
        completion = await client.chat.completions.create(model="m1", messages=BODY["messages"], n=2)
        stream = await client.chat.completions.create(
            model="m1", messages=BODY["messages"], stream=True, stream_options={"include_usage": True}
        )
        pieces, usage = [], None
        async for chunk in stream:
            pieces += [c.delta.content or "" for c in chunk.choices]
            usage = chunk.usage or usage
        await client.close()
    assert [c.message.content for c in completion.choices] == ["fused answer here"] * 2
    assert completion.usage is not None and completion.usage.completion_tokens == 6
    assert "".join(pieces) == "fused answer here"
    assert usage is not None and usage.completion_tokens == 3


@given(st.text())
def test_split_words_pieces_concatenate_to_the_text(text: str) -> None:
    pieces = split_words(text)
    assert "".join(pieces) == text
    assert all(piece.strip() or piece is pieces[-1] for piece in pieces)
