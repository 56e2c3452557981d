"""Adaptive N: sample in rounds, stop once more samples cannot change the majority, report the saving."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fusion_of_n.api import Pipeline
from fusion_of_n.cli import main
from fusion_of_n.config import PipelineSettings
from fusion_of_n.errors import NotEnoughCandidates
from fusion_of_n.sampling import majority_is_settled, round_sizes, sample, sample_adaptive
from fusion_of_n.testing import FakeBackend, HTTPFault, Reply
from fusion_of_n.types import Candidate, Params, Request

REQUEST = Request.from_prompt("What is 2 + 3?", params=Params(seed=10))


def texts(*items: str) -> list[Candidate]:
    return [Candidate(t, "m", "stop", index=i) for i, t in enumerate(items)]


def test_round_sizes_start_small_and_take_at_most_four_rounds() -> None:
    assert round_sizes(1) == [1] and round_sizes(3) == [3]
    assert round_sizes(5) == [3, 1, 1]
    assert round_sizes(16) == [3, 5, 5, 3]
    assert all(sum(round_sizes(n)) == n and len(round_sizes(n)) <= 4 for n in range(1, 65))


def test_the_majority_is_settled_only_when_the_rest_cannot_overturn_it() -> None:
    agree = texts("The answer is 5.", "The answer is 5.", "The answer is 5.")
    assert majority_is_settled(agree, remaining=2)
    assert not majority_is_settled(agree, remaining=3)  # three more votes for 6 would tie
    split = texts("The answer is 5.", "The answer is 6.", "The answer is 5.")
    assert not majority_is_settled(split, remaining=1) and majority_is_settled(split, remaining=0)
    prose = texts("Lisbon is lovely in spring.", "Porto has the best views.", "Both cities are great.")
    assert not majority_is_settled(prose, remaining=0)  # open-ended pools never stop early


async def test_agreeing_candidates_stop_after_the_first_round_and_report_the_saving() -> None:
    model = FakeBackend([Reply("The answer is 5.", completion_tokens=40)], name="m")
    pool = await sample_adaptive([model], REQUEST, 5)
    assert len(pool.candidates) == 3 and [call.n for call in model.calls] == [3]
    assert pool.adaptive == {"planned": 5, "drawn": 3, "rounds": 1, "saved_samples": 2, "saved_completion_tokens": 80}
    assert pool.usage.completion_tokens == 120 and pool.usage.calls == 1


async def test_disagreeing_candidates_are_drawn_in_full_with_fresh_seeds() -> None:
    model = FakeBackend([Reply("The answer is 5."), Reply("The answer is 6."), Reply("The answer is 7.")], name="m")
    pool = await sample_adaptive([model], REQUEST, 5)
    assert len(pool.candidates) == 5 and [call.n for call in model.calls] == [3, 1, 1]
    assert [call.request.params.seed for call in model.calls] == [10, 13, 14]  # as one request of 5 would
    assert [c.index for c in pool.candidates] == [0, 1, 2, 3, 4]
    assert pool.adaptive is not None and pool.adaptive["saved_samples"] == 0 and pool.adaptive["rounds"] == 3


async def test_open_ended_pools_are_never_cut_short() -> None:
    model = FakeBackend(["Lisbon is lovely in spring."], name="m")
    pool = await sample_adaptive([model], REQUEST, 4)
    assert len(pool.candidates) == 4 and pool.adaptive is not None and pool.adaptive["drawn"] == 4


async def test_a_teacher_pool_counts_every_model_in_the_remaining_votes() -> None:
    a, b = FakeBackend(["The answer is 5."], name="a"), FakeBackend(["The answer is 5."], name="b")
    pool = await sample_adaptive([a, b], REQUEST, 5)
    assert len(pool.candidates) == 6 and pool.adaptive["saved_samples"] == 4  # type: ignore[index]
    assert {c.model for c in pool.candidates} == {"a", "b"}


async def test_a_failing_later_round_keeps_what_was_drawn_and_records_the_failure() -> None:
    model = FakeBackend([Reply("The answer is 5."), Reply("The answer is 6."), Reply("The answer is 5."),
                         HTTPFault(500, "down")], name="m")  # fmt: skip
    pool = await sample_adaptive([model], REQUEST, 5)
    assert len(pool.candidates) >= 3 and pool.failures and "down" in pool.failures[0].error
    with pytest.raises(NotEnoughCandidates):
        await sample_adaptive([FakeBackend([HTTPFault(400, "bad")], name="x")], REQUEST, 3)


async def test_without_adaptive_nothing_changes() -> None:
    pool = await sample([FakeBackend(["The answer is 5."], name="m")], REQUEST, 5)
    assert len(pool.candidates) == 5 and pool.adaptive is None


async def test_the_result_and_the_cli_say_how_many_samples_were_drawn() -> None:
    settings = PipelineSettings.of(models=(FakeBackend(["The answer is 5."], name="m"),), method="vote", adaptive=True)
    async with Pipeline(settings) as pipeline:
        result = await pipeline.run("What is 2 + 3?")
    assert result.extra["adaptive"]["drawn"] == 3 and result.to_dict()["extra"]["adaptive"]["planned"] == 5


def test_generate_records_the_adaptive_sampling(tmp_path) -> None:
    rows = tmp_path / "in.jsonl"
    rows.write_text(json.dumps({"id": "q", "prompt": "Say 7"}) + "\n")
    out = tmp_path / "out.jsonl"
    args = ["generate", str(rows), "-o", str(out), "--model", "fake:echo", "-n", "4", "--method", "first"]
    result = CliRunner().invoke(main, [*args, "--adaptive"])
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["adaptive"]["planned"] == 4 and len(record["candidates"]) == record["adaptive"]["drawn"]
    assert json.loads((tmp_path / "out.jsonl.run.json").read_text())["adaptive"] is True
    again = CliRunner().invoke(main, args)  # the same output without --adaptive: another run, refused
    assert again.exit_code != 0 and "--force" in again.output


def test_the_proxy_takes_adaptive_per_request_and_reports_it() -> None:
    from test_server import CHAT, UPSTREAM_KEY, client, proxy_for

    from fusion_of_n.testing import FakeOpenAIServer

    with (
        FakeOpenAIServer({"m1": ["The answer is 5."]}, api_key=UPSTREAM_KEY) as upstream,
        proxy_for(upstream.url) as proxy,
    ):
        extra = {"fusion_of_n": {"method": "vote", "adaptive": True, "return_candidates": True}}
        reply = client(proxy).chat.completions.create(model="fusion-of-n", messages=CHAT, extra_body=extra)
        asked = [r.body.get("n", 1) for r in upstream.requests if r.path.endswith("/chat/completions")]
    (choice,) = reply.model_extra["fusion_of_n"]["choices"]
    assert choice["extra"]["adaptive"]["planned"] == 4 and choice["extra"]["adaptive"]["drawn"] == 3
    assert asked == [3]  # the preset's n=4 was the maximum; three agreeing samples settled it
