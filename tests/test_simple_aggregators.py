"""The first and random baselines."""

from __future__ import annotations

from fusion_of_n.aggregators import AggregatorOptions, build_aggregator
from fusion_of_n.aggregators.simple import First, RandomPick
from fusion_of_n.types import Candidate, Request

REQUEST = Request.from_prompt("Name a colour.")


def pool(indices: list[int]) -> list[Candidate]:
    return [Candidate(f"text {i}", "m", "stop", index=i) for i in indices]


async def test_first_returns_the_lowest_pool_index_whatever_the_argument_order() -> None:
    result = await First().aggregate(REQUEST, pool([5, 2, 9]))
    assert (result.chosen, result.text, result.method) == (2, "text 2", "first")
    assert result.scores is None
    assert result.usage == {}


async def test_random_with_a_seed_repeats_its_pick_for_the_same_request() -> None:
    candidates = pool([1, 3, 4, 8, 12])
    picks = {(await RandomPick(seed=11).aggregate(REQUEST, candidates)).chosen for _ in range(10)}
    assert len(picks) == 1
    assert picks <= {1, 3, 4, 8, 12}


async def test_random_with_a_seed_varies_its_pick_across_prompts() -> None:
    candidates = pool([0, 1, 2, 3])
    requests = [Request.from_prompt(f"question {i}") for i in range(40)]
    picks = [(await RandomPick(seed=11).aggregate(r, candidates)).chosen for r in requests]
    assert set(picks) == {0, 1, 2, 3}
    again = [(await RandomPick(seed=11).aggregate(r, candidates)).chosen for r in requests]
    assert again == picks


async def test_different_seeds_give_different_pick_sequences() -> None:
    candidates = pool([0, 1, 2, 3])
    requests = [Request.from_prompt(f"question {i}") for i in range(40)]
    first = [(await RandomPick(seed=1).aggregate(r, candidates)).chosen for r in requests]
    second = [(await RandomPick(seed=2).aggregate(r, candidates)).chosen for r in requests]
    assert first != second


async def test_random_without_a_seed_picks_afresh_each_call() -> None:
    candidates = pool([2, 5, 7])
    picks = {(await RandomPick(seed=None).aggregate(REQUEST, candidates)).chosen for _ in range(200)}
    assert picks == {2, 5, 7}  # missing one in 200 draws has probability < 1e-34


async def test_random_returns_the_picked_candidates_text() -> None:
    candidates = pool([4, 6])
    result = await RandomPick(seed=0).aggregate(REQUEST, candidates)
    assert result.text == f"text {result.chosen}"
    assert result.method == "random"


def test_registry_passes_the_seed_to_random() -> None:
    aggregator = build_aggregator("random", AggregatorOptions(seed=42))
    assert aggregator == RandomPick(seed=42)
    assert isinstance(build_aggregator("first", AggregatorOptions()), First)
