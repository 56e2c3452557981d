"""Universal self-consistency: prompt, reply parsing, re-ask and fallback."""

from __future__ import annotations

import pytest

from fusion_of_n.aggregators import AggregatorOptions, build_aggregator
from fusion_of_n.aggregators.usc import UniversalSelfConsistency, parse_choice, render_usc_prompt
from fusion_of_n.errors import ConfigError, UpstreamUnreachable
from fusion_of_n.testing import FakeBackend
from fusion_of_n.types import Candidate, Params, Request, message_text

QUESTION = "How many legs do 3 spiders have?"
TEXTS = [
    "Each spider has 8 legs, so 3 spiders have 24 legs.",
    "3 x $8 = 24 legs. {not a placeholder}",
    "Spiders have 6 legs, so the answer is 18.",
]


def pool(texts: list[str], indices: list[int]) -> list[Candidate]:
    return [Candidate(text, "m", "stop", index=i) for text, i in zip(texts, indices, strict=True)]


def test_prompt_matches_golden(golden) -> None:
    golden("usc_prompt.txt", render_usc_prompt(QUESTION + "\n", TEXTS))


def test_prompt_describes_the_reply_format_without_a_placeholder_to_copy() -> None:
    prompt = render_usc_prompt(QUESTION, TEXTS)
    assert "Response N" not in prompt and "Response X" not in prompt
    assert "from 1 to 3" in prompt


PARSED = [
    ("Response 3", 3),
    ("response #2", 2),
    ("Response number 1.", 1),
    ("[[3]]", 3),
    ("The most consistent response is 2", 2),
    ("The most consistent response is Response 3.", 3),
    ("Most consistent: 1", 1),
    ("Response 1 and Response 3 agree, but Response 2 is the most consistent.", 2),
    ("The third response.", 3),
    ("I choose 2.", 2),
    ("3", 3),
    ("**2**", 2),
    ("Response 9 is out of range, so Response 1", 1),
]


@pytest.mark.parametrize(("reply", "expected"), PARSED)
def test_parse_choice_reads_the_usual_formats(reply: str, expected: int) -> None:
    assert parse_choice(reply, 3) == expected


@pytest.mark.parametrize(
    "reply", ["", "I cannot decide.", "Response 0", "Response 4", "[[7]]", "The answer is 2.", "Response N", "12"]
)
def test_parse_choice_rejects_missing_or_out_of_range_numbers(reply: str) -> None:
    assert parse_choice(reply, 3) is None


async def test_selection_maps_the_displayed_number_to_the_pool_index() -> None:
    selector = FakeBackend(["The most consistent response is Response 2."])
    candidates = pool(TEXTS, [6, 1, 4])  # shown in pool order: 1, 4, 6
    result = await UniversalSelfConsistency(selector).aggregate(Request.from_prompt(QUESTION), candidates)
    assert result.method == "usc"
    assert result.chosen == 4
    assert result.text == TEXTS[2]
    assert result.flags == ()
    assert result.scores is None
    assert result.analysis == "The most consistent response is Response 2."
    assert result.usage["scoring"].calls == 1


async def test_selector_request_carries_the_question_and_every_candidate_in_pool_order() -> None:
    selector = FakeBackend(["Response 1"])
    candidates = pool(TEXTS, [5, 2, 9])
    await UniversalSelfConsistency(selector, max_tokens=16).aggregate(Request.from_prompt(QUESTION), candidates)
    (call,) = selector.calls
    assert call.n == 1
    assert call.request.params.temperature == 0.0
    assert call.request.params.max_tokens == 16
    turn = message_text(call.request.messages[-1])
    assert QUESTION in turn
    positions = [turn.index(text) for text in (TEXTS[1], TEXTS[0], TEXTS[2])]  # pool order 2, 5, 9
    assert positions == sorted(positions)


async def test_earlier_conversation_is_kept_as_a_prefix_and_user_params_do_not_leak() -> None:
    history = (
        {"role": "system", "content": "Answer like a pirate."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Ahoy"},
        {"role": "user", "content": QUESTION},
    )
    request = Request(tuple(history), Params(temperature=1.2, stop=("\n",), top_logprobs=3))
    selector = FakeBackend(["Response 2"])
    await UniversalSelfConsistency(selector).aggregate(request, pool(TEXTS, [0, 1, 2]))
    sent = selector.calls[0].request
    assert list(sent.messages[:3]) == list(history[:3])
    assert len(sent.messages) == 4 and sent.messages[-1]["role"] == "user"
    assert sent.params.stop is None and sent.params.top_logprobs is None and sent.params.temperature == 0.0


async def test_unparseable_reply_is_asked_once_more_with_a_follow_up() -> None:
    selector = FakeBackend(["They all look fine to me.", "3"])
    candidates = pool(TEXTS, [0, 2, 3])
    result = await UniversalSelfConsistency(selector).aggregate(Request.from_prompt(QUESTION), candidates)
    assert result.chosen == 3
    assert result.flags == ("usc_reasked",)
    assert len(selector.calls) == 2
    retry = selector.calls[1].request.messages
    assert retry[-2] == {"role": "assistant", "content": "They all look fine to me."}
    assert "1 to 3" in message_text(retry[-1])
    assert list(retry[:-2]) == list(selector.calls[0].request.messages)
    assert result.usage["scoring"].calls == 2


async def test_still_unparseable_falls_back_to_the_first_candidate_with_a_flag() -> None:
    selector = FakeBackend(["Response 7", "I would rather not say."])
    candidates = pool(TEXTS, [8, 3, 5])
    result = await UniversalSelfConsistency(selector).aggregate(Request.from_prompt(QUESTION), candidates)
    assert result.chosen == 3
    assert result.text == TEXTS[1]
    assert result.flags == ("usc_reasked", "usc_unparsed")
    assert result.usage["scoring"].calls == 2
    assert result.analysis is not None and "rather not say" in result.analysis


async def test_a_single_candidate_is_returned_without_asking() -> None:
    selector = FakeBackend(["Response 1"])
    result = await UniversalSelfConsistency(selector).aggregate(Request.from_prompt(QUESTION), pool(["only"], [4]))
    assert (result.chosen, result.text) == (4, "only")
    assert selector.calls == []


async def test_selector_errors_propagate_instead_of_becoming_an_answer() -> None:
    selector = FakeBackend([UpstreamUnreachable("selector down", backend="sel")])
    with pytest.raises(UpstreamUnreachable):
        await UniversalSelfConsistency(selector).aggregate(Request.from_prompt(QUESTION), pool(TEXTS, [0, 1, 2]))


def test_build_without_a_selector_names_the_fix() -> None:
    with pytest.raises(ConfigError, match="--fusor"):
        build_aggregator("usc", AggregatorOptions())


def test_build_uses_the_selector_option() -> None:
    selector = FakeBackend(["Response 1"])
    aggregator = build_aggregator("usc", AggregatorOptions(selector=selector))
    assert isinstance(aggregator, UniversalSelfConsistency) and aggregator.selector is selector
