"""Majority vote over extracted final answers."""

from __future__ import annotations

import asyncio
import threading

from fusion_of_n.aggregators import AggregatorOptions, build_aggregator
from fusion_of_n.aggregators.vote import MajorityVote
from fusion_of_n.answers import extract_answer
from fusion_of_n.types import Candidate, Request

REQUEST = Request.from_prompt("What is 2 + 3?")


def pool(texts: list[str], indices: list[int] | None = None) -> list[Candidate]:
    indices = indices if indices is not None else list(range(len(texts)))
    return [Candidate(text, "m", "stop", index=i) for text, i in zip(texts, indices, strict=True)]


async def test_most_frequent_answer_wins_and_its_first_carrier_is_returned() -> None:
    texts = ["The answer is 4.", "2 + 3 = 5, the answer is 5.", "\\boxed{5}", "#### 5"]
    result = await MajorityVote().aggregate(REQUEST, pool(texts))
    assert result.method == "vote"
    assert result.chosen == 1
    assert result.text == texts[1]
    assert result.scores == {0: 0.25, 1: 0.75, 2: 0.75, 3: 0.75}
    assert result.flags == ()
    assert result.usage == {}


async def test_equivalent_spellings_of_a_number_vote_together() -> None:
    texts = ["The answer is 1,234.", "#### 7", "\\boxed{1234}", "So the answer is 1234.0 dollars"]
    result = await MajorityVote().aggregate(REQUEST, pool(texts))
    assert result.chosen == 0
    assert result.scores is not None and result.scores[1] == 0.25


async def test_tie_goes_to_the_answer_seen_first_in_pool_order() -> None:
    texts = ["no idea", "#### 3", "#### 7", "#### 7", "#### 3"]
    result = await MajorityVote().aggregate(REQUEST, pool(texts))
    assert result.chosen == 1
    assert "vote_tie" in result.flags


async def test_tie_break_uses_pool_index_not_argument_order() -> None:
    candidates = pool(["#### 7", "#### 3", "#### 3", "#### 7"], [9, 2, 5, 4])
    result = await MajorityVote().aggregate(REQUEST, candidates)
    assert result.chosen == 2  # answer 3 first appears at pool index 2, answer 7 at 4
    assert result.text == "#### 3"


async def test_candidates_without_an_answer_do_not_vote() -> None:
    texts = ["I am not sure.", "Hard to say.", "#### 9"]
    result = await MajorityVote().aggregate(REQUEST, pool(texts))
    assert result.chosen == 2
    assert result.scores == {0: None, 1: None, 2: 1.0}


async def test_indices_with_gaps_are_reported_as_pool_indices() -> None:
    candidates = pool(["#### 8", "#### 5", "#### 5"], [7, 3, 11])
    result = await MajorityVote().aggregate(REQUEST, candidates)
    assert result.chosen == 3
    assert result.scores is not None and set(result.scores) == {3, 7, 11}


async def test_no_extractable_answer_returns_the_lowest_index_candidate_with_a_flag() -> None:
    candidates = pool(["Hello there.", "I cannot help with that."], [6, 4])
    result = await MajorityVote().aggregate(REQUEST, candidates)
    assert result.chosen == 4
    assert result.text == "I cannot help with that."
    assert result.flags == ("no_extractable_answer",)
    assert result.scores == {4: None, 6: None}


async def test_a_custom_extractor_decides_the_votes() -> None:
    def first_word(text: str) -> str | None:
        words = text.replace(",", " ").split()
        return words[0].lower() if words else None

    result = await MajorityVote(extract=first_word).aggregate(REQUEST, pool(["Yes, 1", "No, 2", "no 3"]))
    assert result.chosen == 1
    assert result.scores == {0: 1 / 3, 1: 2 / 3, 2: 2 / 3}


async def test_registry_builds_vote_without_any_model() -> None:
    aggregator = build_aggregator("vote", AggregatorOptions())
    assert isinstance(aggregator, MajorityVote)


ADVERSARIAL = "\\boxed{" * 4_000  # 28 KB of unclosed boxes: minutes for the old forward scan


async def test_a_pool_of_adversarial_candidates_is_voted_correctly() -> None:
    texts = [ADVERSARIAL, ADVERSARIAL + " so \\boxed{5}", "#### 5", "The answer is 4.", "\\boxed{" * 20_000]
    result = await MajorityVote().aggregate(REQUEST, pool(texts))
    assert (result.chosen, result.scores) == (1, {0: None, 1: 2 / 3, 2: 2 / 3, 3: 1 / 3, 4: None})


async def test_extraction_runs_in_a_worker_thread_while_the_event_loop_keeps_running() -> None:
    """The loop runs another coroutine while a candidate is being read: the extractor waits for it."""
    loop = asyncio.get_running_loop()
    extracting = asyncio.Event()
    loop_ran = threading.Event()
    seen: list[tuple[int, bool]] = []

    def extract(text: str) -> str | None:
        if not seen:
            loop.call_soon_threadsafe(extracting.set)
            seen.append((threading.get_ident(), loop_ran.wait(timeout=30)))  # the timeout only ends a failure
        else:
            seen.append((threading.get_ident(), loop_ran.is_set()))
        return extract_answer(text)

    async def meanwhile() -> None:
        await extracting.wait()
        loop_ran.set()

    texts = [ADVERSARIAL + " so \\boxed{5}", "#### 5", "The answer is 4."]
    result, _ = await asyncio.gather(MajorityVote(extract=extract).aggregate(REQUEST, pool(texts)), meanwhile())
    assert result.chosen == 0
    assert [waited for _, waited in seen] == [True, True, True]
    assert threading.get_ident() not in {thread for thread, _ in seen}
