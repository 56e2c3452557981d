"""Minimum-Bayes-risk selection with chrF."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest
from sacrebleu.metrics.chrf import CHRF

from fusion_of_n.aggregators import AggregatorOptions, build_aggregator, mbr
from fusion_of_n.aggregators.mbr import MBR, mbr_utilities
from fusion_of_n.types import Candidate, Request

REQUEST = Request.from_prompt("Translate to English: Le chat est assis sur le tapis.")


def pool(texts: list[str], indices: list[int] | None = None) -> list[Candidate]:
    indices = indices if indices is not None else list(range(len(texts)))
    return [Candidate(text, "m", "stop", index=i) for text, i in zip(texts, indices, strict=True)]


CONSENSUS = [
    "The cat is sitting on the mat.",
    "The cat sits on the mat.",
    "A cat is sitting on the carpet.",
    "Quantum chromodynamics describes the strong interaction.",
]


async def test_the_consensus_candidate_wins_and_the_outlier_scores_lowest() -> None:
    result = await MBR().aggregate(REQUEST, pool(CONSENSUS))
    assert result.method == "mbr"
    assert result.scores is not None
    scores = {index: float(score or 0.0) for index, score in result.scores.items()}
    assert result.chosen == max(scores, key=scores.__getitem__)
    assert result.chosen != 3
    assert min(scores, key=scores.__getitem__) == 3
    assert result.text == CONSENSUS[result.chosen]
    assert result.usage == {}


def test_utility_is_the_mean_chrf_of_the_hypothesis_against_each_pseudo_reference() -> None:
    texts = ["the cat sat", "the cat sat on the mat", "a dog ran"]
    chrf = CHRF()
    expected_first = (
        chrf.sentence_score(texts[0], [texts[1]]).score + chrf.sentence_score(texts[0], [texts[2]]).score
    ) / 2
    utilities = mbr_utilities(texts)
    assert utilities[0] == pytest.approx(expected_first)
    # chrF is not symmetric, so the direction matters
    assert chrf.sentence_score(texts[0], [texts[1]]).score != chrf.sentence_score(texts[1], [texts[0]]).score


async def test_ties_go_to_the_lowest_pool_index() -> None:
    candidates = pool(["Same words here.", "Same words here."], [4, 2])
    result = await MBR().aggregate(REQUEST, candidates)
    assert result.chosen == 2


async def test_indices_with_gaps_key_the_scores() -> None:
    candidates = pool(CONSENSUS, [10, 3, 7, 1])
    result = await MBR().aggregate(REQUEST, candidates)
    assert result.scores is not None and set(result.scores) == {10, 3, 7, 1}
    assert result.chosen != 1  # the outlier, now at pool index 1


async def test_a_single_candidate_is_chosen_without_scoring() -> None:
    result = await MBR().aggregate(REQUEST, pool(["Only one."], [5]))
    assert (result.chosen, result.text, result.scores) == (5, "Only one.", {5: None})


def test_mbr_utilities_needs_two_texts() -> None:
    with pytest.raises(ValueError, match="at least two"):
        mbr_utilities(["alone"])


def test_registry_builds_mbr() -> None:
    assert isinstance(build_aggregator("mbr", AggregatorOptions()), MBR)


async def test_the_chrf_matrix_is_computed_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop runs another coroutine while the utilities are computed: the computation waits for it."""
    loop = asyncio.get_running_loop()
    computing = asyncio.Event()
    loop_ran = threading.Event()
    seen: list[tuple[int, bool]] = []

    def watched(texts: Sequence[str], *, word_order: int = 0) -> list[float]:
        loop.call_soon_threadsafe(computing.set)
        seen.append((threading.get_ident(), loop_ran.wait(timeout=30)))  # the timeout only ends a failure
        return mbr_utilities(texts, word_order=word_order)

    async def meanwhile() -> None:
        await computing.wait()
        loop_ran.set()

    monkeypatch.setattr(mbr, "mbr_utilities", watched)
    long_pool = pool([text * 200 for text in CONSENSUS])
    result, _ = await asyncio.gather(MBR().aggregate(REQUEST, long_pool), meanwhile())
    assert result.chosen != 3
    assert [waited for _, waited in seen] == [True]
    assert seen[0][0] != threading.get_ident()
