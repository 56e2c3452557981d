"""OpenAIBackend against the fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from local_app import serve

from fusion_of_n.backends import ModelSpec, create_backend
from fusion_of_n.backends.openai import OpenAIBackend, parse_logprobs
from fusion_of_n.errors import BackendError, ConfigError, UpstreamHTTPError
from fusion_of_n.testing import FakeOpenAIServer, HTTPFault, Reply
from fusion_of_n.types import Params, Request

PROMPT = Request.from_prompt("two plus two", params=Params(temperature=0.7))


@asynccontextmanager
async def answering(data: dict[str, Any]) -> AsyncIterator[str]:
    """A server on 127.0.0.1 that answers every POST with ``data``; yields its base URL."""

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(data)

    async with serve(handler, "/v1/chat/completions", "POST") as url:
        yield url


@asynccontextmanager
async def backend_for(srv: FakeOpenAIServer, model: str = "m1", **kwargs: Any) -> AsyncIterator[OpenAIBackend]:
    backend = OpenAIBackend(model, base_url=srv.url, **kwargs)
    try:
        yield backend
    finally:
        await backend.aclose()


async def test_n5_is_sent_as_one_request_with_n5_and_returns_five_candidates() -> None:
    async with FakeOpenAIServer(["a", "b", "c", "d", "e"]) as srv, backend_for(srv) as backend:
        generation = await backend.generate(PROMPT, n=5)
    assert len(srv.requests) == 1 and srv.requests[0].body["n"] == 5
    assert [c.text for c in generation.candidates] == ["a", "b", "c", "d", "e"]
    assert [c.index for c in generation.candidates] == [0, 1, 2, 3, 4]
    assert {c.model for c in generation.candidates} == {backend.name}
    assert generation.usage.calls == 1


async def test_server_ignoring_n_gets_concurrent_singles_warned_once_and_remembered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="fusion_of_n.backends.openai")
    async with FakeOpenAIServer(["a", "b", "c", "d", "e"], honour_n=False, latency=0.3) as srv:
        async with backend_for(srv) as backend:
            first = await backend.generate(PROMPT, n=5)
            assert [r.body.get("n") for r in srv.requests] == [5, None, None, None, None]
            assert srv.max_in_flight == 4  # the four fallback singles were in flight together
            second = await backend.generate(PROMPT, n=3)
    assert [c.text for c in first.candidates] == ["a", "b", "c", "d", "e"]
    assert first.usage.calls == 5
    assert [r.body.get("n") for r in srv.requests[5:]] == [None, None, None]  # straight to singles
    assert len(second.candidates) == 3 and second.usage.calls == 3
    warnings = [r for r in caplog.records if "ignores n" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


async def test_fallback_singles_get_distinct_seeds_counting_up_from_the_request_seed() -> None:
    request = Request.from_prompt("hi", params=Params(seed=40))
    async with FakeOpenAIServer(["x"], honour_n=False) as srv, backend_for(srv) as backend:
        await backend.generate(request, n=4)
        await backend.generate(request, n=3)
    assert [r.body["seed"] for r in srv.requests] == [40, 41, 42, 43, 40, 41, 42]


async def test_fallback_without_a_seed_sends_no_seed() -> None:
    async with FakeOpenAIServer(["x"], honour_n=False) as srv, backend_for(srv) as backend:
        await backend.generate(PROMPT, n=3)
    assert all("seed" not in r.body for r in srv.requests)


async def test_server_returning_some_choices_gets_only_the_missing_ones_as_singles() -> None:
    two_choices = {"choices": [{"message": {"content": "p"}}, {"message": {"content": "q"}}]}
    async with answering(two_choices) as url:
        backend = OpenAIBackend("m1", base_url=url)
        generation = await backend.generate(PROMPT, n=4)
        await backend.aclose()
    assert [c.text for c in generation.candidates] == ["p", "q", "p", "p"]  # each single keeps its first choice
    assert generation.usage.calls == 3
    assert not backend.ignores_n  # it honours n partly: later calls still ask for n


async def test_params_are_mapped_and_none_values_omitted() -> None:
    params = Params(temperature=0.3, top_p=0.9, max_tokens=64, seed=7, stop=("\n\n", "END"), top_logprobs=2)
    async with FakeOpenAIServer(["x"]) as srv, backend_for(srv) as backend:
        await backend.generate(Request.from_prompt("hi", params=params), n=2)
        await backend.generate(Request.from_prompt("hi"))
    full, bare = srv.requests[0].body, srv.requests[1].body
    assert full == {
        "model": "m1",
        "messages": [{"role": "user", "content": "hi"}],
        "n": 2,
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 64,
        "seed": 7,
        "stop": ["\n\n", "END"],
        "logprobs": True,
        "top_logprobs": 2,
    }
    assert bare == {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}


async def test_multi_turn_messages_with_system_and_content_parts_arrive_intact() -> None:
    messages = (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Name a prime."}, {"type": "text", "text": "Odd."}]},
        {"role": "assistant", "content": "3"},
        {"role": "user", "content": "Another?", "name": "alice"},
    )
    async with FakeOpenAIServer(["5"]) as srv, backend_for(srv) as backend:
        await backend.generate(Request(messages))
    assert srv.requests[0].body["messages"] == [dict(m) for m in messages]


async def test_logprobs_are_parsed_per_token_from_top_logprobs() -> None:
    alternatives = ((("4", -0.1), ("four", -2.5)), ((".", -0.01), ("!", -4.0)))
    request = Request.from_prompt("2+2?", params=Params(top_logprobs=2))
    async with FakeOpenAIServer([Reply("4.", logprobs=alternatives)]) as srv, backend_for(srv) as backend:
        generation = await backend.generate(request)
    assert generation.candidates[0].logprobs == alternatives


def test_parse_logprobs_handles_absent_and_zero_top_logprobs() -> None:
    assert parse_logprobs(None) is None
    assert parse_logprobs({"content": None}) is None
    assert parse_logprobs({"content": [{"token": "a", "logprob": -0.5, "top_logprobs": []}]}) == ((("a", -0.5),),)


async def test_usage_is_the_sum_of_what_the_server_reported() -> None:
    reply = Reply("some words here", prompt_tokens=7, completion_tokens=11)
    async with FakeOpenAIServer([reply], honour_n=False) as srv, backend_for(srv) as backend:
        generation = await backend.generate(PROMPT, n=3)
    assert generation.usage.calls == 3
    assert generation.usage.prompt_tokens == 21 and generation.usage.completion_tokens == 33
    assert generation.usage.seconds > 0
    assert [c.completion_tokens for c in generation.candidates] == [11, 11, 11]


async def test_completion_tokens_per_candidate_only_when_a_request_made_one_choice() -> None:
    async with FakeOpenAIServer(["one two", "three"]) as srv, backend_for(srv) as backend:
        generation = await backend.generate(PROMPT, n=2)
    assert [c.completion_tokens for c in generation.candidates] == [None, None]
    assert generation.usage.completion_tokens == 3
    assert generation.usage.prompt_tokens == 3  # "two plus two", as the server counted it


async def test_200_without_choices_is_an_error_never_an_answer() -> None:
    async with answering({"id": "x", "choices": [], "usage": {"prompt_tokens": 3}}) as url:
        backend = OpenAIBackend("m1", base_url=url)
        with pytest.raises(BackendError, match="without choices"):
            await backend.generate(PROMPT)
        await backend.aclose()


async def test_null_content_becomes_empty_text_with_its_finish_reason() -> None:
    answer = {"choices": [{"message": {"role": "assistant", "content": None}, "finish_reason": "content_filter"}]}
    async with answering(answer) as url:
        backend = OpenAIBackend("m1", base_url=url)
        generation = await backend.generate(PROMPT)
        await backend.aclose()
    assert generation.candidates[0].text == ""
    assert generation.candidates[0].finish_reason == "content_filter"


async def test_unknown_model_error_names_the_model_and_the_models_endpoint() -> None:
    async with FakeOpenAIServer({"m1": ["ok"]}) as srv, backend_for(srv, "gpt-oops") as backend:
        with pytest.raises(UpstreamHTTPError, match=r"GET .*/models") as caught:
            await backend.generate(PROMPT)
    assert caught.value.status == 404 and "gpt-oops" in str(caught.value)


async def test_wrong_key_error_names_the_key_variable_but_not_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeOpenAIServer(["ok"], api_key="right") as srv:
        backend = OpenAIBackend.from_spec(
            ModelSpec.parse(f"openai:m1@{srv.url}#key_env=MY_KEY"), {"MY_KEY": "sk-wrong-9876"}
        )
        with pytest.raises(UpstreamHTTPError, match="MY_KEY") as caught:
            await backend.generate(PROMPT)
        await backend.aclose()
    assert srv.requests[0].headers["Authorization"] == "Bearer sk-wrong-9876"
    assert "sk-wrong-9876" not in str(caught.value) and "sk-wrong-9876" not in caplog.text


async def test_retryable_fault_is_retried_inside_generate() -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async with FakeOpenAIServer([HTTPFault(502), "ok"]) as srv, backend_for(srv, sleep=record) as backend:
        generation = await backend.generate(PROMPT)
    assert generation.candidates[0].text == "ok" and generation.usage.calls == 1
    assert len(srv.requests) == 2 and len(waits) == 1


def test_from_spec_takes_the_url_from_the_spec_then_env_then_the_default() -> None:
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1/", "OPENAI_API_KEY": "k"}
    assert OpenAIBackend.from_spec(ModelSpec.parse("openai:m1@http://127.0.0.1:8080/v1"), env).name == (
        "openai:m1@http://127.0.0.1:8080/v1"
    )
    assert OpenAIBackend.from_spec(ModelSpec.parse("openai:m1"), env).base_url == "http://127.0.0.1:9/v1"
    assert OpenAIBackend.from_spec(ModelSpec.parse("openai:m1"), {}).base_url == "https://api.openai.com/v1"


def test_from_spec_key_env_must_be_set_and_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="MY_KEY is not set"):
        OpenAIBackend.from_spec(ModelSpec.parse("openai:m1#key_env=MY_KEY"), {"OPENAI_API_KEY": "k"})


def test_from_spec_options_are_parsed_and_others_rejected() -> None:
    spec = "openai:m1@http://127.0.0.1:8080/v1#max_concurrency=4,timeout=30,connect_timeout=2,retries=0"
    backend = create_backend(spec, {})
    assert isinstance(backend, OpenAIBackend)
    client = backend.client
    assert (client.max_concurrency, client.read_timeout, client.connect_timeout, client.retries) == (4, 30, 2, 0)
    with pytest.raises(ConfigError, match="unknown option"):
        create_backend("openai:m1#temperature=1", {})
    with pytest.raises(ConfigError, match="max_concurrency=zero"):
        create_backend("openai:m1#max_concurrency=zero", {})


async def test_the_api_key_from_openai_api_key_is_sent_as_a_bearer_header() -> None:
    async with FakeOpenAIServer(["ok"], api_key="sk-env") as srv:
        backend = create_backend(f"openai:m1@{srv.url}", {"OPENAI_API_KEY": "sk-env"})
        generation = await backend.generate(PROMPT)
        await backend.aclose()
    assert generation.candidates[0].text == "ok"
    assert srv.requests[0].headers["Authorization"] == "Bearer sk-env"
    assert "sk-env" not in repr(backend)
