from __future__ import annotations

import asyncio

import pytest

import fusion_of_n
from fusion_of_n import ConfigError, NotEnoughCandidates, Pipeline, PipelineSettings
from fusion_of_n.testing import FakeBackend, HTTPFault, Reply


def test_public_api_is_sorted_and_importable() -> None:
    assert fusion_of_n.__all__ == sorted(fusion_of_n.__all__)
    for name in fusion_of_n.__all__:
        assert hasattr(fusion_of_n, name), name


async def test_arun_fuses_and_reports_usage_per_stage_and_total() -> None:
    gen = FakeBackend(["four", "4", "5"], name="gen")
    fusor = FakeBackend(["Comparison: 3 is wrong.\n[[4]]"], name="fusor")
    result = await fusion_of_n.arun("What is 2+2?", models=[gen], fusor=fusor, n=3)
    assert result.text == "4" and result.method == "fusion"
    assert set(result.usage) == {"sampling", "fusion"}
    total = result.total_usage
    assert total.calls == 2
    assert total.prompt_tokens == result.usage["sampling"].prompt_tokens + result.usage["fusion"].prompt_tokens
    assert total.completion_tokens == 3 + 5  # 3 one-word candidates + the fusor reply's 5 words
    as_dict = result.to_dict()
    assert as_dict["usage"]["total"]["prompt_tokens"] == total.prompt_tokens
    assert [c["text"] for c in as_dict["candidates"]] == ["four", "4", "5"]


def test_run_is_the_sync_edge() -> None:
    result = fusion_of_n.run("q", models=[FakeBackend(["a", "a", "b"])], n=3, method="vote")
    assert result.method == "vote"


async def test_run_inside_an_event_loop_says_to_await_arun() -> None:
    with pytest.raises(RuntimeError, match=r"await fusion_of_n\.arun"):
        fusion_of_n.run("q", models=[FakeBackend()], method="first")


async def test_all_methods_aggregate_one_shared_pool() -> None:
    gen = FakeBackend(["The answer is 4.", "It is 4.", "I think 5."], name="gen")
    fusor = FakeBackend(["Comparison: ok\n[[2]]"], name="fusor")  # fuses, rates and selects "2"
    settings = PipelineSettings.of(models=[gen], fusor=fusor, n=3, seed=1)
    async with Pipeline(settings) as pipeline:
        request = pipeline.request("What is 2+2?")
        pool = await pipeline.sample(request)
        results = {m: await pipeline.aggregate(request, pool, m) for m in fusion_of_n.aggregators.methods()}
    assert len(gen.calls) == 1  # sampled once
    for result in results.values():
        assert [c.text for c in result.candidates] == [c.text for c in pool.candidates]
        assert result.usage["sampling"] == pool.usage
        assert result.text
    assert results["vote"].text in {"The answer is 4.", "It is 4."}
    assert results["first"].chosen == 0


async def test_flagged_candidates_are_left_out_unless_all_are_flagged() -> None:
    gen = FakeBackend(["", Reply("cut", finish_reason="length"), "good"])
    result = await fusion_of_n.arun("q", models=[gen], n=3, method="first")
    assert result.text == "good" and result.chosen == 2 and "all_candidates_flagged" not in result.flags
    gen = FakeBackend([Reply("cut a", finish_reason="length"), Reply("cut b", finish_reason="length")])
    result = await fusion_of_n.arun("q", models=[gen], n=2, method="first")
    assert result.text == "cut a" and "all_candidates_flagged" in result.flags


async def test_teacher_pool_asks_each_model_once_and_records_partial_failure() -> None:
    models = [
        FakeBackend(["a"], name="m1"),
        FakeBackend([HTTPFault(500, "down")], name="m2"),
        FakeBackend(["c"], name="m3"),
    ]
    result = await fusion_of_n.arun("q", models=models, n=2, method="first")
    assert [len(m.calls) for m in models] == [1, 1, 1]
    assert {c.model for c in result.candidates} == {"m1", "m3"}
    assert [f.model for f in result.failures] == ["m2"]


async def test_min_candidates_not_met_fails_with_the_upstream_errors() -> None:
    models = [FakeBackend([HTTPFault(502, "bad gateway")], name="m1"), FakeBackend(["ok"], name="m2")]
    with pytest.raises(NotEnoughCandidates, match="bad gateway"):
        await fusion_of_n.arun("q", models=models, n=1, min_candidates=2, method="first")


async def test_bad_method_fails_before_any_sampling() -> None:
    gen = FakeBackend()
    with pytest.raises(ConfigError, match="unknown method 'best'"):
        await fusion_of_n.arun("q", models=[gen], method="best")
    assert gen.calls == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"n": 0}, "n"), ({"temperature": -1}, "temperature"), ({"bogus": 1}, "unknown setting 'bogus'")],
)
def test_invalid_settings_are_config_errors_naming_the_field(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PipelineSettings.of(**settings)


async def test_specs_are_built_once_and_closed_on_exit() -> None:
    settings = PipelineSettings.of(models=["fake:echo", "fake:echo"], n=1, method="first")
    pipeline = Pipeline(settings, env={})
    assert pipeline.backends[0] is pipeline.backends[1] is pipeline.fusor
    result = await pipeline.run("hello")
    await pipeline.aclose()
    assert result.text == "hello"
    assert pipeline.backends[0].closed  # type: ignore[attr-defined]


async def test_system_prompt_and_chat_messages_reach_the_backend_intact() -> None:
    gen = FakeBackend()
    chat = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": [{"type": "text", "text": "2+2?"}]},
    ]
    await fusion_of_n.arun(chat, models=[gen], system="Be brief.", n=1, method="first")
    sent = gen.calls[0].request.messages
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert list(sent[1:]) == chat


def test_concurrent_pipelines_do_not_share_state() -> None:
    async def one(i: int) -> str:
        result = await fusion_of_n.arun(f"q{i}", models=["fake:echo"], n=1, method="first", env={})
        return result.text

    async def main() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(5)))

    assert asyncio.run(main()) == [f"q{i}" for i in range(5)]


async def test_rate_limits_wrap_every_backend_once_and_keep_callers_backends_open() -> None:
    from fusion_of_n.backends.ratelimit import RateLimited

    mine = FakeBackend(["a"], name="mine")
    settings = PipelineSettings.of(models=[mine, "fake:echo"], n=1, method="first", rpm=600, tpm=100_000)
    async with Pipeline(settings, env={}) as pipeline:
        assert all(isinstance(b, RateLimited) for b in pipeline.backends)
        assert pipeline.fusor is pipeline.backends[0]
        result = await pipeline.run("hello")
    assert result.text == "a"
    assert not mine.closed


def test_the_settings_system_prompt_is_added_only_when_the_chat_has_none() -> None:
    pipeline = Pipeline(PipelineSettings.of(models=["fake:echo"], system="Be brief."), env={})
    assert pipeline.request("hi").messages[0] == {"role": "system", "content": "Be brief."}
    developer = [{"role": "developer", "content": "Answer in French."}, {"role": "user", "content": "hi"}]
    assert list(pipeline.request(developer).messages) == developer
    assert pipeline.request("hi", language="de").language == "de"
