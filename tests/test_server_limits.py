"""The proxy's bounds and guarantees: refused requests name the field and the limit, requests beyond
max_in_flight get a 429 (never a queue), every stream ends, and clients never see upstream URLs or specs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from test_serve_cli import start, stop
from test_server import CHAT, PROXY_KEY, UPSTREAM_KEY, client, envelope, proxy_for, upstream_step

from fusion_of_n.config import PipelineSettings, RequestLimits
from fusion_of_n.errors import ConfigError, UpstreamHTTPError
from fusion_of_n.server import create_app
from fusion_of_n.server.runner import BackgroundServer, start_site
from fusion_of_n.testing import FakeBackend, FakeOpenAIServer, HTTPFault
from fusion_of_n.types import Delta, Generation, Request

AUTH = {"Authorization": f"Bearer {PROXY_KEY}"}


def post(proxy: BackgroundServer, body: dict[str, Any], path: str = "/chat/completions") -> httpx.Response:
    return httpx.post(proxy.url + path, json=body, headers=AUTH, timeout=30)


@pytest.mark.parametrize(
    ("extra", "param", "limit"),
    [
        ({"max_tokens": 10**12}, "max_tokens", "32768"),
        ({"max_completion_tokens": 32769}, "max_completion_tokens", "32768"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "4"),
        ({"n": 16, "fusion_of_n": {"n": 64}}, "fusion_of_n.n", "64"),
        ({"n": 13, "fusion_of_n": {"n": 5}}, "fusion_of_n.n", "65 samples"),
        ({"messages": [{"role": "user", "content": "hi"}] * 1001}, "messages", "1000"),
        ({"messages": [{"role": "user", "content": "x" * 1_000_001}]}, "messages", "1000000"),
    ],
)
def test_requests_beyond_the_default_limits_are_400_naming_the_field_and_the_limit(
    extra: dict[str, Any], param: str, limit: str
) -> None:
    with FakeOpenAIServer({"m1": upstream_step}) as upstream, proxy_for(upstream.url) as proxy:
        response = post(proxy, {"model": "fusion-of-n", "messages": CHAT, **extra})
    assert response.status_code == 400, response.text
    error = envelope(response)
    assert error["param"] == param and param.split(".")[-1] in error["message"] and limit in error["message"]
    assert upstream.requests == []  # refused before any sample was drawn


def test_server_limits_and_a_presets_limits_table_are_both_honoured() -> None:
    with FakeOpenAIServer({"m1": upstream_step}) as upstream:
        roomy = RequestLimits(max_request_tokens=1000)
        presets = {
            "tight": PipelineSettings.of(models=[f"openai:m1@{upstream.url}"], n=1, method="first"),
            "roomy": PipelineSettings.of(models=[f"openai:m1@{upstream.url}"], n=1, method="first", limits=roomy),
        }
        limits = RequestLimits(max_request_tokens=100, max_stop=1)
        with BackgroundServer(lambda: create_app(presets, env={}, limits=limits)) as proxy:
            over = httpx.post(
                proxy.url + "/chat/completions", json={"model": "tight", "messages": CHAT, "max_tokens": 101}
            )
            at = httpx.post(
                proxy.url + "/chat/completions", json={"model": "tight", "messages": CHAT, "max_tokens": 100}
            )
            roomier = {"model": "roomy", "messages": CHAT, "max_tokens": 500, "stop": ["x", "y"]}
            preset = httpx.post(proxy.url + "/chat/completions", json=roomier)
    assert over.status_code == 400 and "100" in envelope(over)["message"]
    assert at.status_code == 200
    assert preset.status_code == 400 and envelope(preset)["param"] == "stop"  # max_stop=1 still the server's
    assert [r.body["max_tokens"] for r in upstream.requests] == [100]


def test_a_preset_whose_own_pool_exceeds_max_samples_fails_at_start_naming_the_fix() -> None:
    presets = {"huge": PipelineSettings.of(models=["fake:echo", "fake:echo#delay=0"], n=40)}
    with pytest.raises(ConfigError) as info:
        create_app(presets, env={})
    assert "max_samples" in str(info.value) and "80" in str(info.value) and "huge" in str(info.value)


def test_serve_limit_flags_and_a_toml_limits_table(tmp_path: Path) -> None:
    with FakeOpenAIServer({"m1": upstream_step}) as upstream:
        config = tmp_path / "presets.toml"
        config.write_text(
            f'[presets.tight]\nmodels = ["openai:m1@{upstream.url}"]\nn = 1\nmethod = "first"\n'
            "[presets.tight.limits]\nmax_request_tokens = 5\n\n"
            f'[presets.loose]\nmodels = ["openai:m1@{upstream.url}"]\nn = 1\nmethod = "first"\n'
        )
        proc, url = start("--config", str(config), "--max-request-tokens", "10", env={})
        try:
            codes = {
                (model, tokens): httpx.post(
                    url + "/chat/completions", json={"model": model, "messages": CHAT, "max_tokens": tokens}
                ).status_code
                for model, tokens in [("tight", 6), ("tight", 5), ("loose", 11), ("loose", 10)]
            }
            models = httpx.get(url + "/models").json()["data"]
        finally:
            stop(proc)
    assert codes == {("tight", 6): 400, ("tight", 5): 200, ("loose", 11): 400, ("loose", 10): 200}
    assert sorted(m["id"] for m in models) == ["loose", "tight"]  # the limit flag made no extra preset


class Gated(FakeBackend):
    """Holds every generate call until ``gate`` is set; ``arrived`` is set once ``expected`` calls wait."""

    def __init__(self, gate: asyncio.Event, arrived: asyncio.Event, expected: int) -> None:
        super().__init__(["It is Paris."], name="gated")
        self.gate, self.arrived, self.expected, self.waiting = gate, arrived, expected, 0

    async def generate(self, request: Request, *, n: int = 1) -> Generation:
        self.waiting += 1
        if self.waiting == self.expected:
            self.arrived.set()
        await self.gate.wait()
        return await super().generate(request, n=n)


async def test_requests_beyond_max_in_flight_get_429_with_retry_after_and_are_not_queued() -> None:
    gate, arrived = asyncio.Event(), asyncio.Event()
    backend = Gated(gate, arrived, expected=2)
    app = create_app({"p": PipelineSettings.of(models=[backend], n=1, method="first")}, env={}, max_in_flight=2)
    runner, port = await start_site(app, "127.0.0.1", 0)
    body = {"model": "p", "messages": CHAT}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            held = [asyncio.create_task(http.post("/v1/chat/completions", json=body)) for _ in range(2)]
            await arrived.wait()
            refused = await http.post("/v1/chat/completions", json=body)
            streamed = await http.post("/v1/chat/completions", json={**body, "stream": True})
            health = await http.get("/health")
            waiting = backend.waiting
            gate.set()
            answered = await asyncio.gather(*held)
            again = await http.post("/v1/chat/completions", json=body)
    finally:
        await runner.cleanup()
    for response in (refused, streamed):
        assert response.status_code == 429 and response.headers["Retry-After"] == "1"
        error = envelope(response)
        assert error["type"] == "rate_limit_error" and "max_in_flight" in error["message"]
    assert waiting == 2  # the refused requests never reached the backend
    assert health.status_code == 200
    assert [r.status_code for r in answered] == [200, 200] and again.status_code == 200


class BreaksMidStream(FakeBackend):
    """A fusor whose stream sends the start of an answer, then raises ``error``."""

    def __init__(self, error: Exception) -> None:
        super().__init__(["unused"], name="breaking-fusor")
        self.error = error

    async def stream(self, request: Request) -> AsyncIterator[Delta]:
        yield Delta("Comparison: they agree.\nAnswer: [[It is")
        raise self.error


SECRET_URL = "http://10.9.8.7:4321/v1"
FAILURES = [
    RuntimeError(f"fusor bug while talking to {SECRET_URL}"),
    UpstreamHTTPError(f"backend 'openai:big@{SECRET_URL}#key_env=K' returned 500: oops", status=500),
]


def breaking_proxy(error: Exception) -> BackgroundServer:
    settings = PipelineSettings.of(
        models=[FakeBackend(["It is Paris."], name="gen")], n=2, method="fusion", fusor=BreaksMidStream(error)
    )
    return BackgroundServer(lambda: create_app({"p": settings}, env={}))


def data_lines(response: httpx.Response) -> list[str]:
    return [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]


@pytest.mark.parametrize("error", FAILURES, ids=["RuntimeError", "UpstreamHTTPError"])
def test_any_failure_mid_stream_ends_it_with_an_error_event_then_done_and_is_logged(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with breaking_proxy(error) as proxy:
        with httpx.stream(
            "POST", proxy.url + "/chat/completions", json={"model": "p", "messages": CHAT, "stream": True}, timeout=30
        ) as response:
            lines = data_lines(response)
        with pytest.raises(openai.APIError):  # the SDK raises the error event instead of waiting
            list(openai.OpenAI(base_url=proxy.url, api_key="x", max_retries=0).chat.completions.create(
                model="p", messages=CHAT, stream=True
            ))  # fmt: skip
    assert response.status_code == 200 and lines[-1] == "[DONE]"
    failure = json.loads(lines[-2])["error"]
    assert set(failure) == {"message", "type", "param", "code"}
    assert "10.9.8.7" not in "\n".join(lines) and "key_env" not in "\n".join(lines)
    logged = [r for r in caplog.records if r.name == "fusion_of_n.server.streaming" and "stream failed" in r.message]
    assert logged
    if isinstance(error, RuntimeError):
        assert failure["type"] == "server_error" and logged[0].exc_info and logged[0].exc_info[1] is error
    else:
        assert failure["type"] == "upstream_error" and "openai:big" in failure["message"]
        assert SECRET_URL in caplog.text  # full detail in the server log


def test_responses_api_stream_failing_mid_way_ends_with_error_and_response_failed() -> None:
    with breaking_proxy(FAILURES[0]) as proxy:
        with httpx.stream(
            "POST", proxy.url + "/responses", json={"model": "p", "input": "Capital?", "stream": True}, timeout=30
        ) as response:
            events = [json.loads(line) for line in data_lines(response)]
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1]["response"]["status"] == "failed" and "10.9.8.7" not in json.dumps(events)


def test_models_and_errors_show_aliases_never_upstream_urls_or_spec_options() -> None:
    steps = {"m1": upstream_step, "judge": ["fine"], "broken": [HTTPFault(500, "down")]}
    with FakeOpenAIServer(steps, api_key=UPSTREAM_KEY) as upstream:
        host = upstream.url.split("/v1")[0].removeprefix("http://")
        specs = [f"openai:m1@{upstream.url}#key_env=UPSTREAM_VAR,retries=0", f"openai:broken@{upstream.url}#retries=0"]
        settings = PipelineSettings.of(models=specs, n=1, method="first", judge=f"openai:judge@{upstream.url}")
        env = {"UPSTREAM_VAR": UPSTREAM_KEY, "OPENAI_API_KEY": UPSTREAM_KEY}
        app = lambda: create_app({"p": settings}, env=env)  # noqa: E731
        with BackgroundServer(app) as proxy:
            listed = httpx.get(proxy.url + "/models")
            one = httpx.get(proxy.url + "/models/p")
            bad_fusor = post(proxy, {"model": "p", "messages": CHAT, "fusion_of_n": {"fusor": "openai:nope"}})
            detailed = post(proxy, {"model": "p", "messages": CHAT, "fusion_of_n": {"return_candidates": True}})
    for response in (listed, one, bad_fusor, detailed):
        assert host not in response.text and "key_env" not in response.text and "retries" not in response.text
    assert listed.json()["data"][0]["fusion_of_n"]["models"] == ["openai:m1", "openai:broken"]
    assert one.json()["fusion_of_n"]["models"] == ["openai:m1", "openai:broken"]
    assert bad_fusor.status_code == 400 and "openai:broken, openai:judge, openai:m1" in envelope(bad_fusor)["message"]
    choice = detailed.json()["fusion_of_n"]["choices"][0]
    assert [c["model"] for c in choice["candidates"]] == ["openai:m1"]
    assert choice["failures"][0]["model"] == "openai:broken" and "500" in choice["failures"][0]["error"]


def test_a_fusor_can_be_named_by_its_alias() -> None:
    with FakeOpenAIServer({"m1": ["It is Paris."], "m2": ["Answer: [[Fused by m2.]]"]}) as upstream:
        fusor = f"openai:m2@{upstream.url}"
        presets = {"p": PipelineSettings.of(models=[f"openai:m1@{upstream.url}"], n=2, judge=fusor)}
        with BackgroundServer(lambda: create_app(presets, env={})) as proxy:
            reply = client(proxy).chat.completions.create(
                model="p", messages=CHAT, extra_body={"fusion_of_n": {"fusor": "openai:m2"}}
            )
    assert reply.choices[0].message.content == "Fused by m2."
    assert [r.body["model"] for r in upstream.requests] == ["m1", "m2"]
