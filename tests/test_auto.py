"""``--method auto``: select on closed-ended pools, fuse open-ended ones, and say which and why."""

from __future__ import annotations

import json

import pytest

from fusion_of_n.aggregators.auto import Auto, committed_answer, decide
from fusion_of_n.aggregators.base import AggregatorOptions, build_aggregator
from fusion_of_n.aggregators.fusion import Fusion
from fusion_of_n.api import Pipeline
from fusion_of_n.config import PipelineSettings
from fusion_of_n.errors import ConfigError
from fusion_of_n.scorers.judge import LLMJudge
from fusion_of_n.testing import FakeBackend, Reply
from fusion_of_n.types import Aggregation, Candidate, Request


def pool(*texts: str) -> list[Candidate]:
    return [Candidate(text, "m", "stop", index=i) for i, text in enumerate(texts)]


NUMERIC = pool(
    "Each box holds 6 eggs, so 4 boxes hold 24 eggs. The answer is 24.",
    "4 x 6 = 24, so she has \\boxed{24} eggs.",
    "She has 4 boxes of 6: 26 eggs.",
)
CHOICE = pool("The correct option is (B).", "Answer: B", "I would pick C because the others are wrong. Answer: C")
PROSE = pool(
    "Dear Sam,\n\nThank you for the lovely weekend in Lisbon. The tiles, the trams and the custard tarts "
    "were wonderful.\n\nWarm wishes,\nAna",
    "Hi Sam! Lisbon was great: we walked 20 km along the river. See you soon.\n\nAna",
    "Sam, thanks again for hosting me. I loved the old town and the music at night.",
)


@pytest.mark.parametrize(
    ("candidates", "choice", "evidence"),
    [
        (NUMERIC, "select", "3 of 3 candidates gave a numeric final answer"),
        (CHOICE, "select", "3 of 3 candidates gave a multiple-choice final answer"),
        (PROSE, "fuse", "0 of 3 candidates gave a numeric final answer"),
        (pool("42"), "select", "1 of 1 candidates gave a numeric final answer"),
        (pool("42", "No idea, sorry."), "fuse", "1 of 2 candidates gave a numeric final answer"),
    ],
)
def test_the_pool_decides_between_selection_and_fusion(candidates, choice, evidence) -> None:
    assert decide(candidates) == (choice, evidence)


def test_a_number_counts_only_when_it_is_marked_final_or_ends_the_answer() -> None:
    assert committed_answer("Die Antwort lautet 3,5 kg.") == ("3.5", "numeric")
    assert committed_answer("17 + 25 = 42.") == ("42", "numeric")
    assert committed_answer("In 2019 I moved to Lisbon.\n\nIt was the best decision of my life.") is None
    assert committed_answer("The capital of France is Paris.") is None


async def test_closed_ended_pools_are_voted_and_open_ended_ones_fused() -> None:
    fusor = FakeBackend([Reply("Comparison: all warm.\n[[Dear Sam, thank you for Lisbon!]]")])
    auto = build_aggregator("auto", AggregatorOptions(fusor=fusor))
    voted = await auto.aggregate(Request.from_prompt("How many eggs?"), NUMERIC)
    assert (voted.method, voted.chosen, voted.extra["strategy"]) == ("auto", 0, "vote")
    assert voted.extra["evidence"] == "3 of 3 candidates gave a numeric final answer" and not fusor.calls
    fused = await auto.aggregate(Request.from_prompt("Write a thank-you note to Sam."), PROSE)
    assert fused.text == "Dear Sam, thank you for Lisbon!" and fused.extra["strategy"] == "fusion"
    assert fused.usage["fusion"].calls == 1 and fused.extra["presentation_order"]


async def test_a_tied_vote_goes_to_bon_among_the_tied_candidates_when_a_scorer_is_set() -> None:
    tied = pool("The answer is 24.", "The answer is 26.", "I think it is 26. Or 24? The answer is 24.", "Answer: 26")
    judge = FakeBackend(["Rating: 3", "Rating: 8", "Rating: 5", "Rating: 2"])
    auto = Auto(Fusion(FakeBackend()), tie_break=build_aggregator("bon", AggregatorOptions(scorer=LLMJudge(judge))))
    decision = await auto.aggregate(Request.from_prompt("How many eggs?"), tied)
    assert decision.extra["strategy"] == "vote+bon" and decision.chosen == 1
    assert "vote_tie" in decision.flags and "BoN chose among 4" in decision.extra["evidence"]
    assert len(judge.calls) == 4 and decision.usage["scoring"].calls == 4


async def test_auto_streams_the_fused_answer_and_labels_the_final_aggregation() -> None:
    fusor = FakeBackend([Reply("Comparison: fine.\n[[Dear Sam, thank you for the lovely weekend.]]")])
    auto = Auto(Fusion(fusor))
    *texts, decision = [e async for e in auto.astream(Request.from_prompt("Write to Sam."), PROSE)]
    assert isinstance(decision, Aggregation) and decision.extra["strategy"] == "fusion"
    assert "".join(texts) == decision.text and len(texts) > 1


def test_auto_needs_a_fusor() -> None:
    with pytest.raises(ConfigError, match="auto fuses open-ended prompts"):
        build_aggregator("auto", AggregatorOptions())


async def test_the_pipeline_gives_auto_a_tie_breaker_only_when_a_judge_is_configured() -> None:
    model = FakeBackend(["The answer is 5."], name="m")
    async with Pipeline(PipelineSettings.of(models=(model,), n=2, method="auto")) as plain:
        assert plain.aggregator().tie_break is None  # type: ignore[attr-defined]
        result = await plain.run("What is 2 + 3?")
    assert result.method == "auto" and result.extra["strategy"] == "vote" and result.text == "The answer is 5."
    judged = PipelineSettings.of(models=(model,), method="auto", judge=FakeBackend(["Rating: 5"], name="j"))
    async with Pipeline(judged) as with_judge:
        assert with_judge.aggregator().tie_break is not None  # type: ignore[attr-defined]


def test_generate_records_the_strategy_and_its_evidence(tmp_path) -> None:
    from click.testing import CliRunner

    from fusion_of_n.cli import main

    rows = tmp_path / "in.jsonl"
    rows.write_text(json.dumps({"id": "q", "prompt": "What is 2 + 3?"}) + "\n")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        main, ["generate", str(rows), "-o", str(out), "--model", "fake:echo", "-n", "2", "--method", "auto"]
    )
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    entry = record["results"]["auto"]
    assert entry["strategy"] in ("vote", "fusion") and "candidates gave" in entry["evidence"]


def test_the_proxy_says_which_strategy_each_choice_ran_streamed_or_not() -> None:
    from test_server import CHAT, FUSED, UPSTREAM_KEY, client, proxy_for, upstream_step

    from fusion_of_n.testing import FakeOpenAIServer

    with FakeOpenAIServer({"m1": upstream_step}, api_key=UPSTREAM_KEY) as upstream, proxy_for(upstream.url) as proxy:
        extra = {"fusion_of_n": {"method": "auto"}}
        reply = client(proxy).chat.completions.create(model="fusion-of-n", messages=CHAT, extra_body=extra)
        chunks = list(
            client(proxy).chat.completions.create(model="fusion-of-n", messages=CHAT, extra_body=extra, stream=True)
        )
    assert reply.choices[0].message.content == FUSED  # "It is Paris." commits to no number: fused
    (pick,) = reply.model_extra["fusion_of_n"]["choices"]
    assert pick == {"strategy": "fusion", "evidence": "0 of 4 candidates gave a numeric final answer"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == FUSED
    assert chunks[-1].model_extra["fusion_of_n"]["choices"][0]["strategy"] == "fusion"
