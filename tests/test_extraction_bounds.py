"""Answer extraction on adversarial texts: sane answers, a bounded input, linear work, off the event loop.

Nothing here measures time: the inputs are ones the old quadratic scan took minutes on, and the
bound is checked by what the extractors are handed, not by how long they take.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fusion_of_n import answers
from fusion_of_n.aggregators import auto
from fusion_of_n.aggregators.auto import Auto, committed_answer
from fusion_of_n.aggregators.fusion import Fusion
from fusion_of_n.answers import MAX_EXAMINED_CHARS, examined_tail, explicit_answer, extract_answer
from fusion_of_n.testing import FakeBackend
from fusion_of_n.types import Candidate, Request

UNCLOSED_BOX = "\\boxed{"

ADVERSARIAL = [
    pytest.param(UNCLOSED_BOX * 20_000, None, id="20000-unclosed-boxes"),
    pytest.param(UNCLOSED_BOX * 4_000 + " so \\boxed{18}", "18", id="28KB-unclosed-boxes-then-a-box"),
    pytest.param(UNCLOSED_BOX * 1_000 + "42", "42", id="unclosed-boxes-then-a-number"),
    pytest.param((UNCLOSED_BOX + " ") * 3_500, None, id="28KB-unclosed-boxes-all-examined"),
    pytest.param((UNCLOSED_BOX + " ") * 3_500 + "\\boxed{18}", "18", id="unclosed-boxes-all-examined-then-a-box"),
    pytest.param(UNCLOSED_BOX * 500 + "9" + "}" * 500, "9", id="500-nested-boxes"),
    pytest.param("\\boxed{" + "{" * 3_000 + "3" + "}" * 3_000 + "}", "3", id="3000-nested-braces"),
    pytest.param("}" * 5_000 + "\\boxed{7}" + "{" * 2_000, "7", id="stray-braces-around-a-box"),
    pytest.param("7" * 1_000_000, None, id="1MB-of-digits"),
    pytest.param("7" * 1_000_000 + " \\boxed{5}", "5", id="1MB-of-digits-then-a-box"),
    pytest.param("1234567890 " * 100_000, "1234567890", id="1MB-of-numbers"),
    pytest.param("1" + ",234" * 1_500 + "5", None, id="malformed-digit-groups-are-no-number"),
    pytest.param("####" * 50_000 + "\n#### 72", "72", id="hash-marks"),
    pytest.param("#### x\n" * 20_000, None, id="hash-lines-without-numbers"),
    pytest.param("the answer is " * 50_000 + "42.", "42", id="answer-phrase-repeated"),
    pytest.param("answer: x x x x x x x x x 1 " * 10_000, "1", id="answer-phrases-without-a-full-stop"),
    pytest.param("答:a b c d e f g h i 1 " * 10_000, "1", id="cjk-answer-phrases-without-a-full-stop"),
    pytest.param("The answer is" + " " * 1_000_000 + "5", "5", id="1MB-of-spaces"),
    pytest.param("correct option is" + " " * 7_000 + "(B)", "B", id="spaces-before-a-choice"),
    pytest.param("correct option is" + " " * 7_000 + "!", None, id="spaces-before-nothing"),
    pytest.param("\n" * 1_000_000, None, id="1MB-of-newlines"),
    pytest.param("(" * 7_000 + "x", None, id="a-line-of-brackets"),
    pytest.param("\\text{" * 1_300 + "4", "4", id="unclosed-latex-wrappers"),
]


@pytest.mark.parametrize(("text", "expected"), ADVERSARIAL)
def test_adversarial_texts_give_a_sane_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_twenty_thousand_unclosed_boxes_mark_no_answer() -> None:
    assert explicit_answer(UNCLOSED_BOX * 20_000) is None
    assert committed_answer(UNCLOSED_BOX * 20_000) is None


def test_extractors_are_handed_at_most_the_examined_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    handed: list[int] = []
    fold = answers._fold_chars
    monkeypatch.setattr(answers, "_fold_chars", lambda text: handed.append(len(text)) or fold(text))
    for text in (UNCLOSED_BOX * 20_000, "7" * 1_000_000, "the answer is " * 50_000):
        extract_answer(text)
        explicit_answer(text)
    assert handed and max(handed) <= MAX_EXAMINED_CHARS


def test_a_long_text_is_read_from_its_end_only() -> None:
    filler = " and so on" * (MAX_EXAMINED_CHARS // 10 + 10)
    assert extract_answer("\\boxed{3}" + filler) is None  # the box is beyond the examined tail
    assert extract_answer("\\boxed{3}" + filler + " so \\boxed{4}") == "4"
    assert extract_answer("\\boxed{3}" + filler[: MAX_EXAMINED_CHARS - 20]) == "3"  # within the bound


def test_the_tail_starts_at_whitespace_so_no_number_is_read_cut_in_half() -> None:
    words = " word" * (MAX_EXAMINED_CHARS // 5)
    text = "123456789" + words[: MAX_EXAMINED_CHARS - 4]  # the cut falls inside the number
    assert len(text) == MAX_EXAMINED_CHARS + 5
    assert examined_tail(text).startswith(" word")
    assert extract_answer(text) is None  # not "56789"
    assert examined_tail("x" * MAX_EXAMINED_CHARS) == "x" * MAX_EXAMINED_CHARS
    assert examined_tail("x" * (MAX_EXAMINED_CHARS + 1)) == ""
    assert examined_tail("x " + "y" * (MAX_EXAMINED_CHARS - 1)) == " " + "y" * (MAX_EXAMINED_CHARS - 1)


def _boxed_contents_by_scanning(text: str) -> list[str]:
    """The old definition: from each box, count braces forward until its own closes."""
    contents = []
    for match in answers._BOXED.finditer(text):
        depth = 1
        for pos in range(match.end(), len(text)):
            depth += {"{": 1, "}": -1}.get(text[pos], 0)
            if depth == 0:
                contents.append(text[match.end() : pos])
                break
    return contents


@given(st.lists(st.sampled_from(["\\boxed{", "\\fbox {", "{", "}", "x", "1", " "]), max_size=40).map("".join))
def test_one_pass_brace_matching_finds_what_scanning_forward_finds(text: str) -> None:
    assert list(answers._boxed_contents(text)) == _boxed_contents_by_scanning(text)[::-1]


def _pool(*texts: str) -> list[Candidate]:
    return [Candidate(text, "m", "stop", index=i) for i, text in enumerate(texts)]


async def test_auto_inspects_the_pool_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool is read in a worker thread, and the loop runs other coroutines meanwhile."""
    loop = asyncio.get_running_loop()
    reading = asyncio.Event()
    loop_ran = threading.Event()
    seen: list[tuple[int, bool]] = []
    decide = auto.decide

    def watched(candidates: Sequence[Candidate]) -> tuple[str, str]:
        loop.call_soon_threadsafe(reading.set)
        seen.append((threading.get_ident(), loop_ran.wait(timeout=30)))  # the timeout only ends a failure
        return decide(candidates)

    async def meanwhile() -> None:
        await reading.wait()
        loop_ran.set()

    monkeypatch.setattr(auto, "decide", watched)
    candidates = _pool(UNCLOSED_BOX * 4_000 + " \\boxed{5}", "#### 5", "The answer is 4.")
    decision, _ = await asyncio.gather(
        Auto(Fusion(FakeBackend())).aggregate(Request.from_prompt("2 + 3?"), candidates), meanwhile()
    )
    assert (decision.extra["strategy"], decision.chosen) == ("vote", 0)
    assert [waited for _, waited in seen] == [True]
    assert seen[0][0] != threading.get_ident()


_UNGUARDED_PHRASE = re.compile("|".join(f"(?:{p})" for _, p in answers._ANSWER_PHRASES) + r"\s*:?", re.IGNORECASE)


@given(
    st.text(max_size=4),
    st.sampled_from([pattern for _, pattern in answers._ANSWER_PHRASES]).flatmap(
        lambda pattern: st.from_regex(re.compile(pattern, re.IGNORECASE), fullmatch=True)
    ),
)
def test_the_first_letter_guard_finds_every_answer_phrase(before: str, phrase: str) -> None:
    text = f"{before} {phrase} 7. {phrase.upper()}: 8"
    assert [m.span() for m in answers._PHRASE.finditer(text)] == [m.span() for m in _UNGUARDED_PHRASE.finditer(text)]
