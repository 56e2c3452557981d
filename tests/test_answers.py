"""Final-answer extraction and number normalization, as tables."""

# The tables hold non-ASCII digits and punctuation on purpose (Arabic, Devanagari, full-width forms).

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fusion_of_n import answers
from fusion_of_n.answers import extract_answer, majority_answer, normalize_number

BOXED = [
    ("So the total is \\boxed{18}.", "18"),
    ("First \\boxed{3}; on reflection \\boxed{4}", "4"),
    ("\\boxed{\\frac{3}{4}}", "3/4"),
    ("\\boxed{\\dfrac{1}{2}}", "1/2"),
    ("\\boxed{x = -2}", "-2"),
    ("\\boxed{\\text{(B)}}", "B"),
    ("\\boxed{18 \\text{ dollars}}", "18"),
    ("\\boxed{\\$1,250}", "1250"),
    ("\\boxed{{2}^{3}}", "2^3"),
    ("The capital is \\boxed{Paris}.", "paris"),
    ("The answer is 7, or rather \\boxed{8}", "8"),
    ("\\boxed{} hmm, the answer is 5", "5"),
    ("$\\boxed{42}$ is it", "42"),
]

HASHES = [
    ("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72"),
    ("#### 1,234", "1234"),
    ("#### $18.00", "18"),
    ("#### 2. Plan the route\nWe need 5 buses.", "5"),
    ("#### 72\nThe answer is 70", "72"),
]

PHRASES = [
    ("The answer is 42.", "42"),
    ("The final answer is: 3.50", "3.5"),
    ("Therefore, the answer is 10 - 2 = 8.", "8"),
    ("Answer: 1 234 567", "1234567"),
    ("**Final Answer:** 27", "27"),
    ("The answer is 12. Next we check 13.", "12"),
    ("Janet has 16 eggs. The answer is $18 per day.", "18"),
    ("The answer is Paris.", "paris"),
    ("The answer is not obvious. We add 3 + 4 = 7.", "7"),
    ("Answer:\nFirst we add the 3 red apples to the 4 green apples in the basket, giving 7", "7"),
    ("Donc la réponse est 1 234,5 €.", "1234.5"),
    ("Réponse finale : 12", "12"),
    ("Die Antwort lautet 3,5 kg.", "3.5"),
    ("Die richtige Antwort ist 1.234.567 Euro.", "1234567"),
    ("Also ist das Ergebnis 7 Äpfel.", "7"),
    ("La respuesta correcta es 15.", "15"),
    ("Quindi la risposta è 9.", "9"),
    ("Portanto, a resposta é 11.", "11"),
    ("Ответ: 42 рубля.", "42"),
    ("Итоговый ответ — 3,25", "3.25"),
    ("したがって、答えは４２個です。", "42"),
    ("所以答案是 18 元。然后还有 3 个。", "18"),
    ("答：-2.50", "-2.5"),
    ("정답은 5입니다", "5"),
    ("إذن الإجابة هي ٤٢ دولارًا.", "42"),
    ("الجواب هو ۱۲۵", "125"),
    ("الإجابة: ٣٫٥", "3.5"),
    ("\u200fالإجابة هي \u200e٧\u200e", "7"),
    ("अतः उत्तर है ४२", "42"),
    ("उत्तर: १,२५०", "1250"),
]

LETTERS = [
    ("Answer: (B)", "B"),
    ("The correct option is C.", "C"),
    ("The correct option is (c).", "C"),
    ("After weighing the options:\n**D**", "D"),
    ("Option B is correct because 3 > 2.", "B"),
    ("La bonne réponse est (C)", "C"),
    ("The answer is B) Paris", "B"),
    ("The answer is [A].", "A"),
    ("The answer is a bit subtle: 6", "6"),
]

LAST_NUMBER = [
    ("She has 5 apples and buys 7 more, 12 in total", "12"),
    ("Total: 1,234.50 dollars", "1234.5"),
    ("It costs €3,5 per kilo", "3.5"),
    ("Rooms 4-6 are free", "6"),
    ("COVID-19 began in 2019", "2019"),
    ("The temperature fell to -3 degrees", "-3"),
    ("The temperature fell to \u22123 degrees", "-3"),
    ("The area is 25 m²", "25"),
    ("Half of it: 1/2", "1/2"),
    ("कुल १२३ सेब", "123"),
    ("ราคา ๔๒ บาท", "42"),
    ("合計は１２３４５円", "12345"),
    ("Он заплатил 1 500 рублей", "1500"),
    ("We get 50%", "50"),
]

NO_ANSWER = [
    "",
    "I do not know.",
    "No numbers here at all!",
    "The answer is unclear because the question is ambiguous and lacks details",
    "A bit of text without a choice",
    "\\boxed{}",
    "#### Step one",
]


@pytest.mark.parametrize(("text", "expected"), BOXED)
def test_boxed_answer_wins_and_is_normalized(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(("text", "expected"), HASHES)
def test_gsm8k_hash_line_is_read_but_markdown_headings_are_not(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(("text", "expected"), PHRASES)
def test_answer_phrases_in_many_languages(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(("text", "expected"), LETTERS)
def test_multiple_choice_letters_come_back_upper_case(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(("text", "expected"), LAST_NUMBER)
def test_last_number_is_the_fallback(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text", NO_ANSWER)
def test_texts_without_an_answer_give_none(text: str) -> None:
    assert extract_answer(text) is None


def test_precedence_boxed_over_hashes_over_phrase_over_letter_over_number() -> None:
    layers = ["There are 1 or 2 ways.", "**E**", "The answer is 3.", "#### 4", "\\boxed{5}"]
    for depth, expected in enumerate(["2", "E", "3", "4", "5"], 1):
        assert extract_answer("\n".join(layers[:depth])) == expected


def test_last_answer_phrase_wins_over_earlier_ones() -> None:
    text = "At first I thought the answer is 10. Checking again, the answer is 12."
    assert extract_answer(text) == "12"


NORMALIZED = [
    ("1,234", "1234"),
    ("1 234", "1234"),
    ("1\u00a0234", "1234"),
    ("1\u202f234,5", "1234.5"),
    ("3,5", "3.5"),
    ("0,25", "0.25"),
    ("1,234.5", "1234.5"),
    ("1.234,5", "1234.5"),
    ("1.234.567", "1234567"),
    ("1.234", "1.234"),
    ("5.0", "5"),
    ("5.50", "5.5"),
    ("0.0", "0"),
    ("-0", "0"),
    ("007", "7"),
    ("-3", "-3"),
    ("\u22123", "-3"),
    ("1/2", "1/2"),
    ("-3/4", "-3/4"),
    ("$18.00", "18"),
    ("18 USD", "18"),
    ("£7.50", "7.5"),
    ("₹१,२५०", "1250"),
    ("٣٥", "35"),
    ("۱۲", "12"),
    ("١٢٬٥٠٠", "12500"),
    ("٣٫٥", "3.5"),
    ("१२३", "123"),
    ("１２３", "123"),
    ("50%", "50"),
    ("12 kg", "12"),
]


@pytest.mark.parametrize(("text", "expected"), NORMALIZED)
def test_normalize_number(text: str, expected: str) -> None:
    assert normalize_number(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "2 or 3", "between 1 and 2", "x²"])
def test_normalize_number_refuses_zero_or_several_numbers(text: str) -> None:
    assert normalize_number(text) is None


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_grouped_integers_normalize_to_plain_digits(value: int) -> None:
    assert normalize_number(f"{value:,}") == str(value)
    assert normalize_number(f"{value:,}".replace(",", " ")) == str(value)


@given(st.integers(min_value=0, max_value=10**9))
def test_arabic_indic_and_devanagari_digits_read_like_ascii(value: int) -> None:
    arabic = str(value).translate({ord(str(d)): chr(0x0660 + d) for d in range(10)})
    devanagari = str(value).translate({ord(str(d)): chr(0x0966 + d) for d in range(10)})
    assert normalize_number(arabic) == normalize_number(devanagari) == str(value)


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=1, max_value=99))
def test_european_decimal_comma_equals_decimal_point(whole: int, cents: int) -> None:
    assert normalize_number(f"{whole},{cents:02d}") == normalize_number(f"{whole}.{cents:02d}")


def test_extract_answer_is_pure() -> None:
    text = "Die Antwort lautet 3,5 kg."
    assert [extract_answer(text) for _ in range(3)] == ["3.5"] * 3


def test_docstring_examples_hold() -> None:
    failures, tried = doctest.testmod(answers, raise_on_error=False, report=True)
    assert tried > 0
    assert failures == 0


@pytest.mark.parametrize(
    ("votes", "winner"),
    [
        (["3", "4", "4"], "4"),
        (["3", "4", "4", "3"], "3"),  # a tie goes to the answer that occurs first
        (["4", "3", "3", "4"], "4"),
        ([None, "7", None, "8", "8", "7"], "7"),  # None casts no vote
        ([None, None], None),
        ([], None),
    ],
)
def test_majority_answer_is_the_most_frequent_with_ties_to_the_earliest(
    votes: list[str | None], winner: str | None
) -> None:
    assert majority_answer(votes) == winner
