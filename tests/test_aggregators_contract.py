"""Every registered aggregator goes through the same checks."""

from __future__ import annotations

import pytest

from fusion_of_n.aggregators import AggregatorOptions, build_aggregator, methods
from fusion_of_n.scorers.factory import create_scorer
from fusion_of_n.testing import FakeBackend
from fusion_of_n.types import STAGES, Candidate, Params, Request

SELECTION = {"bon", "vote", "usc", "mbr", "first", "random"}


ALL = SELECTION | {"fusion", "auto"}


def test_registry_has_fusion_auto_and_every_baseline() -> None:
    assert set(methods()) == ALL


def _options() -> AggregatorOptions:
    helper = FakeBackend(
        ["Comparison: all similar.\nRating: 6. The most consistent is response 2. [[The answer is 4.]]"]
    )
    return AggregatorOptions(fusor=helper, selector=helper, scorer=create_scorer(judge=helper), seed=7)


def _pool(*texts: str) -> list[Candidate]:
    # pool indices with gaps, as after excluding flagged candidates
    return [Candidate(t, f"m{i % 2}", "stop", index=2 * i + 1) for i, t in enumerate(texts)]


REQUEST = Request.from_prompt("What is 2+2? End with 'The answer is N'.", params=Params(seed=3))
POOL = _pool("2+2 is 4. The answer is 4.", "The answer is 4.", "I believe the answer is 5.")


@pytest.mark.parametrize("method", sorted(ALL))
async def test_aggregator_contract(method: str) -> None:
    aggregator = build_aggregator(method, _options())
    result = await aggregator.aggregate(REQUEST, POOL)
    indices = {c.index for c in POOL}
    assert result.method == method
    assert result.text.strip()
    assert set(result.usage) <= set(STAGES) - {"sampling"}
    if result.scores is not None:
        assert set(result.scores) <= indices
    if method in SELECTION:
        assert result.chosen in indices
        assert result.text == next(c.text for c in POOL if c.index == result.chosen)
    again = await build_aggregator(method, _options()).aggregate(REQUEST, POOL)
    assert (again.text, again.chosen) == (result.text, result.chosen)  # deterministic under a seed


@pytest.mark.parametrize("method", sorted(ALL))
async def test_aggregator_accepts_a_single_candidate(method: str) -> None:
    only = _pool("The answer is 4.")
    result = await build_aggregator(method, _options()).aggregate(REQUEST, only)
    assert result.text.strip()
    if method in SELECTION:
        assert result.chosen == only[0].index
