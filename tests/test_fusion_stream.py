"""Streaming fusion: only the answer inside [[ ]] is streamed, and it always matches parse_fusion."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fusion_of_n.aggregators.fusion import AnswerStream, Fusion, parse_fusion
from fusion_of_n.testing import FakeBackend, Reply
from fusion_of_n.types import Aggregation, Candidate, Request

PIECES = [
    "Comparison",
    ":",
    " ",
    "\n",
    "\n\n",
    "[[",
    "]]",
    "[",
    "]",
    "Answer:",
    "Final response:",
    "Candidate 2",
    "Das",
    "Wetter",
    "ist",
    "schön",
    ".",
    "x = [[1, 2]]",
    "comparison",
]


def stream_all(reply: str, cuts: list[int]) -> tuple[str, list[str]]:
    answer = AnswerStream()
    pieces, last = [], 0
    for cut in [*sorted(set(cuts)), len(reply)]:
        cut = min(cut, len(reply))
        pieces.append(answer.feed(reply[last:cut]))
        last = max(last, cut)
    return answer.emitted, pieces


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=25), st.lists(st.integers(0, 200), max_size=30))
def test_streamed_text_is_always_a_prefix_of_the_parsed_answer(parts: list[str], cuts: list[int]) -> None:
    reply = "".join(parts)
    emitted, pieces = stream_all(reply, cuts)
    assert "".join(pieces) == emitted
    assert parse_fusion(reply).text.startswith(emitted)


def test_answer_is_streamed_before_the_reply_is_complete() -> None:
    answer = AnswerStream()
    assert answer.feed("Comparison: 2 is odd.\nAnswer: [[Das Wetter ") == ""  # too early to tell
    assert answer.feed("ist heute ") == "Das Wetter ist heute"
    assert answer.feed("schön.]]") == " schön."
    assert answer.feed(" trailing") == ""


def test_bracketed_comparison_is_not_streamed() -> None:
    answer = AnswerStream()
    reply = "Final response:\nDas Wetter ist schön. [[Comparison: 1 is odd and 2 is fine.]]"
    assert answer.feed(reply) == ""
    assert parse_fusion(reply).text == "Das Wetter ist schön."


def _pool() -> list[Candidate]:
    return [
        Candidate("Das Wetter ist schön.", "m", "stop", index=0),
        Candidate("Schönes Wetter.", "m", "stop", index=1),
    ]


async def test_fusion_astream_yields_pieces_then_the_aggregation_with_usage() -> None:
    fusor = FakeBackend([Reply("Comparison: 2 is short.\nAnswer: [[Das Wetter ist heute wirklich schön.]] Done.")])
    events = [e async for e in Fusion(fusor).astream(Request.from_prompt("Translate into German: ..."), _pool())]
    *texts, decision = events
    assert isinstance(decision, Aggregation)
    assert len(texts) >= 2  # really streamed, not one final chunk
    assert "".join(texts) == decision.text == "Das Wetter ist heute wirklich schön."
    assert decision.analysis == "2 is short."
    assert decision.usage["fusion"].calls == 1 and decision.usage["fusion"].completion_tokens > 0


async def test_fusion_astream_unbracketed_reply_still_ends_with_the_parsed_answer() -> None:
    fusor = FakeBackend([Reply("Comparison: fine.\n\nFinal answer: 42")])
    events = [e async for e in Fusion(fusor).astream(Request.from_prompt("q"), _pool())]
    *texts, decision = events
    assert "".join(texts) == decision.text == "42" and "missing_brackets" in decision.flags


async def test_fusion_astream_empty_reply_streams_the_fallback_candidate() -> None:
    fusor = FakeBackend([Reply("[[ ]]")])
    *texts, decision = [e async for e in Fusion(fusor).astream(Request.from_prompt("q"), _pool())]
    assert "".join(texts) == decision.text == "Das Wetter ist schön." and decision.chosen == 0
