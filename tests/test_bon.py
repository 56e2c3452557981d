"""BestOfN: highest score wins, ties to the lowest pool index, unscored candidates never win."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from fusion_of_n.aggregators.base import Aggregator, AggregatorOptions, build_aggregator
from fusion_of_n.aggregators.bon import BestOfN
from fusion_of_n.errors import ConfigError, FusionOfNError
from fusion_of_n.scorers.base import Scoring
from fusion_of_n.scorers.judge import LLMJudge
from fusion_of_n.testing import FakeBackend
from fusion_of_n.types import Candidate, Request, Usage

REQUEST = Request.from_prompt("Name a prime number.")


class FixedScorer:
    """Returns the given scores (by pool index) and records what it was asked."""

    name = "fixed"

    def __init__(self, scores: dict[int, float | None], flags: tuple[str, ...] = (), usage: Usage | None = None):
        self.scores = scores
        self.flags = flags
        self.usage = usage or Usage(calls=len(scores), prompt_tokens=10, completion_tokens=2, seconds=0.5)
        self.seen: list[list[int]] = []

    async def score(self, request: Request, candidates: Sequence[Candidate]) -> Scoring:
        self.seen.append([c.index for c in candidates])
        return Scoring(tuple(self.scores[c.index] for c in candidates), self.usage, self.flags)

    async def aclose(self) -> None:
        pass


def pool(indices: Sequence[int]) -> list[Candidate]:
    return [Candidate(f"answer {i}", "gen", "stop", index=i) for i in indices]


def test_bon_is_registered_under_its_name():
    scorer = FixedScorer({})
    aggregator = build_aggregator("bon", AggregatorOptions(scorer=scorer))
    assert isinstance(aggregator, BestOfN)
    assert aggregator.scorer is scorer
    with pytest.raises(ConfigError, match="bon needs a scorer"):
        build_aggregator("bon", AggregatorOptions())


def test_bon_needs_a_scorer():
    with pytest.raises(ConfigError, match=r"bon needs a scorer: pass --judge SPEC or --reward SPEC"):
        BestOfN.build(AggregatorOptions())
    scorer = FixedScorer({})
    aggregator = BestOfN.build(AggregatorOptions(scorer=scorer))
    assert isinstance(aggregator, BestOfN)
    assert isinstance(aggregator, Aggregator)
    assert aggregator.scorer is scorer
    assert aggregator.name == "bon"


async def test_bon_returns_the_highest_scored_candidate_unchanged():
    scorer = FixedScorer({0: 2.0, 1: 7.5, 2: -1.0})
    candidates = pool([0, 1, 2])
    result = await BestOfN(scorer).aggregate(REQUEST, candidates)
    assert result.method == "bon"
    assert result.chosen == 1
    assert result.text == candidates[1].text
    assert result.scores == {0: 2.0, 1: 7.5, 2: -1.0}
    assert scorer.seen == [[0, 1, 2]]


async def test_bon_breaks_ties_by_the_lowest_pool_index():
    scorer = FixedScorer({5: 3.0, 2: 8.0, 7: 8.0, 4: 8.0})
    result = await BestOfN(scorer).aggregate(REQUEST, pool([5, 7, 2, 4]))
    assert result.chosen == 2
    assert result.text == "answer 2"


async def test_bon_uses_pool_indices_of_the_usable_candidates_it_was_given():
    scorer = FixedScorer({1: 4.0, 3: 6.0})  # pool entries 0 and 2 were dropped by hygiene
    result = await BestOfN(scorer).aggregate(REQUEST, pool([1, 3]))
    assert result.chosen == 3
    assert result.scores == {1: 4.0, 3: 6.0}


async def test_bon_never_picks_an_unscored_candidate_and_keeps_its_none():
    scorer = FixedScorer({0: None, 1: 1.0, 2: None}, flags=("unscored:0", "unscored:2"))
    result = await BestOfN(scorer).aggregate(REQUEST, pool([0, 1, 2]))
    assert result.chosen == 1
    assert result.scores == {0: None, 1: 1.0, 2: None}
    assert result.flags == ("unscored:0", "unscored:2")


async def test_bon_treats_a_nan_score_as_unscored():
    scorer = FixedScorer({0: float("nan"), 1: -5.0})
    result = await BestOfN(scorer).aggregate(REQUEST, pool([0, 1]))
    assert result.chosen == 1


async def test_bon_with_nothing_scored_returns_the_first_candidate_flagged():
    scorer = FixedScorer({4: None, 6: None}, flags=("unscored:4", "unscored:6"))
    result = await BestOfN(scorer).aggregate(REQUEST, pool([4, 6]))
    assert result.chosen == 4
    assert result.text == "answer 4"
    assert result.scores == {4: None, 6: None}
    assert result.flags == ("unscored:4", "unscored:6", "all_unscored")


async def test_bon_reports_the_scorer_usage_under_the_scoring_stage():
    usage = Usage(calls=3, prompt_tokens=120, completion_tokens=9, seconds=1.25)
    result = await BestOfN(FixedScorer({0: 1.0, 1: 2.0}, usage=usage)).aggregate(REQUEST, pool([0, 1]))
    assert dict(result.usage) == {"scoring": usage}


async def test_bon_rejects_a_scorer_that_returns_the_wrong_number_of_scores():
    class Short(FixedScorer):
        async def score(self, request: Request, candidates: Sequence[Candidate]) -> Scoring:
            return Scoring((1.0,))

    with pytest.raises(FusionOfNError, match="returned 1 score"):
        await BestOfN(Short({})).aggregate(REQUEST, pool([0, 1]))


async def test_bon_with_an_llm_judge_picks_the_best_rated_answer():
    def rate(request: Request) -> str:
        prompt = str(request.messages[0]["content"])
        return "Rating: 8" if "The response:\n7\n" in prompt else "Rating: 3"

    backend = FakeBackend(rate)
    candidates = [Candidate("9", "gen", index=0), Candidate("7", "gen", index=1), Candidate("15", "gen", index=2)]
    result = await BestOfN(LLMJudge(backend)).aggregate(REQUEST, candidates)
    assert result.chosen == 1
    assert result.scores == {0: 3.0, 1: 8.0, 2: 3.0}
    assert result.usage["scoring"].calls == 3
