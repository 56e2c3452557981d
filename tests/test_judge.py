"""LLMJudge: pointwise 1-9 ratings read from logprobs or text, one re-ask, never 0 for a non-answer."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from fusion_of_n.errors import UpstreamHTTPError
from fusion_of_n.scorers.base import Scorer
from fusion_of_n.scorers.judge import REMINDER, LLMJudge, parse_rating, read_verdict, render_prompt
from fusion_of_n.testing import FakeBackend, HTTPFault, Reply, count_tokens
from fusion_of_n.types import Candidate, Request, message_text

GOLDEN = Path(__file__).parent / "golden" / "judge_prompt.txt"
REQUEST = Request.from_prompt("How many legs does a spider have?")


def pool(*texts: str, first_index: int = 0) -> list[Candidate]:
    return [Candidate(text, "gen", "stop", index=first_index + i) for i, text in enumerate(texts)]


def by_response(ratings: dict[str, str]):
    """A script step answering with the rating assigned to the response shown in the judge prompt."""

    def step(request: Request) -> str:
        prompt = message_text(request.messages[0])
        response = prompt.split("The response:\n", 1)[1].split("\n\nHow to reply", 1)[0]
        return ratings[response]

    return step


def test_judge_prompt_matches_golden_file():
    prompt = render_prompt(REQUEST, "A spider has eight legs.")
    assert prompt == GOLDEN.read_text(encoding="utf-8")


def test_judge_prompt_renders_a_multi_turn_chat_as_role_paragraphs():
    request = Request(
        (
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Bonjour"},
            {"role": "user", "content": [{"type": "text", "text": "Count to three"}]},
        )
    )
    prompt = render_prompt(request, "un, deux, trois")
    assert "System: Answer in French.\n\nUser: Hi\n\nAssistant: Bonjour\n\nUser: Count to three" in prompt
    assert "$" not in prompt


def test_judge_prompt_keeps_dollar_signs_and_braces_of_the_content_verbatim():
    prompt = render_prompt(Request.from_prompt("Price of $x {y}?"), "It costs $5 {approx}.")
    assert "Price of $x {y}?" in prompt
    assert "It costs $5 {approx}." in prompt


def test_judge_is_a_scorer():
    assert isinstance(LLMJudge(FakeBackend(["Rating: 5"])), Scorer)


async def test_judge_rates_each_candidate_in_its_own_greedy_call_with_logprobs():
    backend = FakeBackend(by_response({"Eight.": "Rating: 9", "Six.": "Rating: 2"}), name="j")
    judge = LLMJudge(backend)
    scoring = await judge.score(REQUEST, pool("Eight.", "Six."))
    assert scoring.scores == (9.0, 2.0)
    assert scoring.flags == ()
    assert len(backend.calls) == 2
    shown = []
    for call in backend.calls:
        assert call.n == 1
        assert call.request.params.temperature == 0.0
        assert call.request.params.top_logprobs == 10
        assert call.request.params.max_tokens is not None and call.request.params.max_tokens <= 32
        assert len(call.request.messages) == 1
        shown.append(message_text(call.request.messages[0]))
    assert sorted(shown) == sorted([render_prompt(REQUEST, "Eight."), render_prompt(REQUEST, "Six.")])


async def test_judge_can_be_told_not_to_ask_for_logprobs():
    backend = FakeBackend(["Rating: 4"])
    await LLMJudge(backend, top_logprobs=None).score(REQUEST, pool("x"))
    assert backend.calls[0].request.params.top_logprobs is None


def _alts(*pairs: tuple[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple((token, math.log(p)) for token, p in pairs)


async def test_judge_score_is_the_expected_rating_over_the_digit_alternatives():
    logprobs = (
        _alts(("Rating", 0.99), ("Score", 0.01)),
        _alts((":", 1.0)),
        _alts((" 7", 0.5), (" 8", 0.25), (" maybe", 0.2), ("7", 0.05)),
    )
    judge = LLMJudge(FakeBackend([Reply("Rating: 7", logprobs=logprobs)]))
    scoring = await judge.score(REQUEST, pool("Eight."))
    # digits only, " 7" and "7" pooled, renormalized: (7 * 0.55 + 8 * 0.25) / 0.8
    assert scoring.scores[0] == pytest.approx((7 * 0.55 + 8 * 0.25) / 0.8)


def test_expected_rating_finds_the_digit_token_after_reasoning_text():
    logprobs = (
        _alts(("Good", 0.9), ("Bad", 0.1)),
        _alts((" answer", 1.0)),
        _alts((".", 1.0)),
        _alts((" Rating", 1.0)),
        _alts((":", 1.0)),
        _alts((" 3", 0.6), (" 4", 0.4)),
    )
    reply = Candidate("Good answer. Rating: 3", "judge", logprobs=logprobs)
    assert read_verdict(reply) == pytest.approx(3 * 0.6 + 4 * 0.4)


def test_expected_rating_falls_back_to_the_written_digit_when_no_token_holds_it():
    logprobs = (_alts(("Rating", 1.0)), _alts((":", 1.0)), _alts((" seven", 1.0)))
    reply = Candidate("Rating: 7", "judge", logprobs=logprobs)
    assert read_verdict(reply) == 7.0


def test_expected_rating_copes_with_text_the_backend_stripped():
    logprobs = (_alts(("\n", 1.0)), _alts(("[[", 1.0)), _alts(("6", 0.5), ("5", 0.5)), _alts(("]]", 1.0)))
    reply = Candidate("[[6]]", "judge", logprobs=logprobs)
    assert read_verdict(reply) == pytest.approx(5.5)


@pytest.mark.parametrize(
    ("reply", "rating"),
    [
        ("Rating: 7", 7.0),
        ("rating:7", 7.0),
        ("**Rating:** 8", 8.0),
        ("Rating: **6**", 6.0),
        ("My rating is 5.", 5.0),
        ("The answer is right.\nRating: 9", 9.0),
        ("A score of 3 would be too harsh. Rating: 8", 8.0),
        ("7/9", 7.0),
        ("I give it 4 / 9.", 4.0),
        ("[[7]]", 7.0),
        ("Verdict: [[2]]", 2.0),
        ("**7**", 7.0),
        ("Score: 7 out of 9", 7.0),
        ("Score: 6", 6.0),
        ("Grade - 3", 3.0),
        ("7", 7.0),
        ("  7.  ", 7.0),
        ("8\nThe response is correct but terse.", 8.0),
        ("Rating: 7.5", 7.5),
        ("The answer is 9.", 9.0),
        ("I give it a 7 because it is right but terse.", 7.0),
    ],
)
def test_parse_rating_reads_the_known_formats(reply, rating):
    parsed = parse_rating(reply)
    assert parsed is not None
    assert parsed.value == rating
    assert float(reply[parsed.start : parsed.end]) == rating


@pytest.mark.parametrize(
    "reply",
    [
        "Rating: 10",
        "Rating: 0",
        "[[12]]",
        "8/10",
        "Score: 7 out of 10",
        "The response is good.",
        "",
        "-3",
        "1. The response is correct. 2. It is short.",
        "The response says that 2 + 2 is 4.",
        "It deserves 7 because " + "it is right and " * 10 + "clear.",
    ],
)
def test_parse_rating_rejects_missing_and_out_of_range_ratings(reply):
    assert parse_rating(reply) is None


async def test_judge_asks_once_more_with_a_reminder_when_the_reply_has_no_rating():
    backend = FakeBackend(["It is a fine answer.", "Rating: 6"])
    scoring = await LLMJudge(backend).score(REQUEST, pool("Eight."))
    assert scoring.scores == (6.0,)
    assert scoring.flags == ()
    assert len(backend.calls) == 2
    follow_up = backend.calls[1].request.messages
    assert [m["role"] for m in follow_up] == ["user", "assistant", "user"]
    assert follow_up[0]["content"] == render_prompt(REQUEST, "Eight.")
    assert follow_up[1]["content"] == "It is a fine answer."
    assert follow_up[2]["content"] == REMINDER
    assert backend.calls[1].request.params.temperature == 0.0


async def test_judge_leaves_a_candidate_unscored_not_zero_when_the_re_ask_also_fails():
    backend = FakeBackend(["It is a fine answer.", "Really fine!"])
    scoring = await LLMJudge(backend).score(REQUEST, pool("Eight.", first_index=3))
    assert scoring.scores == (None,)
    assert scoring.scores[0] != 0
    assert scoring.flags == ("unscored:3",)
    assert len(backend.calls) == 2


async def test_judge_flags_only_the_candidates_it_could_not_score():
    backend = FakeBackend(by_response({"A": "Rating: 5", "B": "no idea", "C": "Rating: 11"}))
    scoring = await LLMJudge(backend).score(REQUEST, pool("A", "B", "C"))
    assert scoring.scores == (5.0, None, None)
    assert scoring.flags == ("unscored:1", "unscored:2")


async def test_judge_usage_sums_every_call_including_re_asks():
    backend = FakeBackend(by_response({"A": "Rating: 5", "B": "hmm, good"}))
    scoring = await LLMJudge(backend).score(REQUEST, pool("A", "B"))
    assert len(backend.calls) == 3  # A once, B twice
    prompt_tokens = sum(count_tokens(message_text(m)) for call in backend.calls for m in call.request.messages)
    completion_tokens = count_tokens("Rating: 5") + 2 * count_tokens("hmm, good")
    assert scoring.usage.calls == 3
    assert scoring.usage.prompt_tokens == prompt_tokens
    assert scoring.usage.completion_tokens == completion_tokens
    assert scoring.usage.seconds >= 0.0


async def test_judge_lets_a_backend_failure_propagate():
    backend = FakeBackend([HTTPFault(500, "judge down")])
    with pytest.raises(UpstreamHTTPError, match="judge down"):
        await LLMJudge(backend).score(REQUEST, pool("A", "B"))


async def test_judge_closes_only_a_backend_it_owns():
    borrowed, owned = FakeBackend(["Rating: 1"]), FakeBackend(["Rating: 1"])
    await LLMJudge(borrowed).aclose()
    await LLMJudge(owned, close_backend=True).aclose()
    assert not borrowed.closed
    assert owned.closed
