"""What real OpenAI clients expect of the proxy: tool_choice "none", models.retrieve, the Responses API
(text and message input, streamed or not, on the chat-completions data path) and independent n choices."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from test_server import CHAT, FUSED, PROXY_KEY, client, envelope, proxy_for, upstream_step
from upstream_calls import is_fusor

from fusion_of_n.config import PipelineSettings
from fusion_of_n.server import create_app
from fusion_of_n.server.plan import choice_seed
from fusion_of_n.server.runner import BackgroundServer
from fusion_of_n.testing import FakeOpenAIServer

AUTH = {"Authorization": f"Bearer {PROXY_KEY}"}


@pytest.fixture
def upstream() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer({"m1": upstream_step}) as server:
        yield server


@pytest.fixture
def proxy(upstream: FakeOpenAIServer) -> Iterator[BackgroundServer]:
    with proxy_for(upstream.url) as server:
        yield server


def post(proxy: BackgroundServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(proxy.url + path, json=body, headers=AUTH, timeout=30)


@pytest.mark.parametrize("choice", ["none", "auto"])
def test_tool_choice_without_tools_is_accepted(proxy, choice: str) -> None:
    reply = client(proxy).chat.completions.create(model="pick", messages=CHAT, tool_choice=choice)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "It is Paris."


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"tool_choice": "required"}, "tool_choice"), ({"tool_choice": "none", "tools": [{"type": "function"}]}, "tools")],
)
def test_tool_use_is_still_refused(proxy, extra: dict[str, Any], param: str) -> None:
    response = post(proxy, "/chat/completions", {"model": "pick", "messages": CHAT, **extra})
    assert response.status_code == 400 and envelope(response)["param"] == param


def test_models_retrieve_returns_the_model_object_and_404_names_the_ids(proxy) -> None:
    model = client(proxy).models.retrieve("fusion-of-n")
    assert model.id == "fusion-of-n" and model.object == "model"
    with pytest.raises(openai.NotFoundError):
        client(proxy).models.retrieve("gpt-9")
    response = httpx.get(proxy.url + "/models/gpt-9", headers=AUTH)
    error = envelope(response)
    assert response.status_code == 404 and error["code"] == "model_not_found"
    assert "fusion-of-n" in error["message"] and "pick" in error["message"]


def test_responses_text_input_is_fused_through_the_chat_data_path(proxy, upstream) -> None:
    reply = client(proxy).responses.create(model="fusion-of-n", input="What is the capital of France?")
    assert reply.output_text == FUSED and reply.status == "completed" and reply.model == "fusion-of-n"
    assert reply.usage is not None and reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    sampling = [r.body for r in upstream.requests if not is_fusor(r.body)]
    assert sampling[0]["messages"] == [{"role": "user", "content": "What is the capital of France?"}]
    assert sampling[0]["n"] == 4 and any(is_fusor(r.body) for r in upstream.requests)


def test_responses_message_input_with_instructions_reaches_the_candidates(proxy, upstream) -> None:
    reply = client(proxy).responses.create(
        model="pick",
        instructions="You answer in one sentence.",
        input=[
            {"role": "user", "content": "Hi!"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello!"}]},
            {"role": "user", "content": [{"type": "input_text", "text": "What is the capital of France?"}]},
        ],
        max_output_tokens=40,
        temperature=0.2,
    )
    assert reply.output_text == "It is Paris."
    body = upstream.requests[0].body
    assert body["messages"] == [
        {"role": "system", "content": "You answer in one sentence."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
        {"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]},
    ]
    assert (body["max_tokens"], body["temperature"]) == (40, 0.2)


def test_responses_stream_sends_the_responses_api_events(proxy) -> None:
    events = list(client(proxy).responses.create(model="fusion-of-n", input="Capital of France?", stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) >= 3 and "".join(deltas) == FUSED
    done = next(e for e in events if e.type == "response.output_text.done")
    assert done.text == FUSED and kinds.index("response.output_text.done") > kinds.index("response.output_text.delta")
    assert events[-1].response.output_text == FUSED
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_responses_stream_helper_gets_the_final_response(proxy) -> None:
    with client(proxy).responses.stream(model="fusion-of-n", input="Capital of France?") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == FUSED and final.output_text == FUSED


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"tools": [{"type": "web_search"}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"reasoning": {"effort": "high"}}, "reasoning"),
        ({"include": ["reasoning.encrypted_content"]}, "include"),
        ({"background": True}, "background"),
        ({"text": {"format": {"type": "json_object"}}}, "text.format"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": "1"}]}, "input.0.type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input.0.content.0.type",
        ),
        ({"input": []}, "input"),
        ({"max_output_tokens": 10**9}, "max_output_tokens"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"temperature": "hot"}, "temperature"),
    ],
)
def test_responses_unsupported_or_invalid_fields_are_400_naming_them(proxy, upstream, extra, param) -> None:
    response = post(proxy, "/responses", {"model": "pick", "input": "Hi", **extra})
    assert response.status_code == 400, response.text
    error = envelope(response)
    assert error["param"] == param and param.split(".")[-1] in error["message"]
    assert upstream.requests == []


def test_choice_seed_keeps_choice_zero_and_spreads_the_others() -> None:
    assert choice_seed(7, 0) == 7 and choice_seed(None, 3) is None
    seeds = [choice_seed(7, i) for i in range(1, 200)]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**31 and s not in range(7, 7 + 256) for s in seeds)


def test_n_choices_sample_with_distinct_seeds_so_a_seeded_upstream_gives_distinct_choices() -> None:
    with FakeOpenAIServer(lambda body: f"drawn with seed {body.get('seed')}") as upstream:
        presets = {"p": PipelineSettings.of(models=[f"openai:m1@{upstream.url}"], n=1, method="first")}
        with BackgroundServer(lambda: create_app(presets, env={})) as proxy:
            reply = client(proxy).chat.completions.create(model="p", messages=CHAT, n=3, seed=7)
            chunks = list(client(proxy).chat.completions.create(model="p", messages=CHAT, n=2, seed=7, stream=True))
    texts = [c.message.content for c in reply.choices]
    assert texts[0] == "drawn with seed 7" and len(set(texts)) == 3
    streamed = {i: "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == i)
                for i in (0, 1)}  # fmt: skip
    assert streamed[0] == "drawn with seed 7" and streamed[1] == texts[1]
