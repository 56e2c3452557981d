"""eval accuracy: gold normalization, per-method/per-language accuracy, maj@k/pass@k/single, language correctness."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from fusion_of_n.aggregators.vote import MajorityVote
from fusion_of_n.answers import extract_answer
from fusion_of_n.cli.eval import accuracy_command as command
from fusion_of_n.errors import ConfigError
from fusion_of_n.eval.accuracy import (
    answer_language,
    answers_match,
    evaluate_accuracy,
    field_value,
    majority_answer,
    normalize_gold,
)
from fusion_of_n.types import Aggregation, Candidate, Request


def record(
    key: str, language: str | None, gold: Any, candidates: list[str | tuple[str, bool]], **results: str
) -> dict[str, Any]:
    pool = []
    for i, entry in enumerate(candidates):
        text, excluded = entry if isinstance(entry, tuple) else (entry, False)
        pool.append({"index": i, "text": text, "excluded": excluded})
    return {
        "id": key,
        "language": language,
        "prompt": f"question {key}",
        "meta": {"answer": gold},
        "candidates": pool,
        "results": {m: {"text": t, "chosen": None} for m, t in results.items()},
        "error": None,
    }


def hand_fixture() -> list[dict[str, Any]]:
    return [
        record(
            "eggs",
            "en",
            "18",
            ["She sells 9 eggs and earns \\boxed{18} dollars.", "The answer is 17.", "#### 18"],
            vote="She sells 9 eggs and earns \\boxed{18} dollars.",
            fusion="She earns 9 * 2 = 17 dollars. The answer is 17.",
        ),
        record(
            "arabic",
            "ar",
            "٤٢",  # Arabic-Indic gold
            ["الإجابة هي ٤١", "الإجابة هي ٤٢", "الإجابة هي ٤١"],
            vote="الإجابة هي ٤١",
            fusion="الإجابة هي ٤٢.",
        ),
        record(
            "choice",
            "en",
            "(c)",  # a lower-case letter in parentheses
            ["The correct option is (B).", "The correct option is (C).", "Option C is the correct answer."],
            vote="The correct option is (C).",
            fusion="The correct option is (B).",
        ),
        record(
            "total",
            "en",
            26.0,  # a JSON number
            ["I am not sure.", "The answer is 25.", ("The answer is 26", True)],  # the right one was truncated
            vote="The answer is 25.",
            fusion="The total is 26.0 apples.",
        ),
    ]


def scores(table: dict[str, Any]) -> dict[str, float]:
    return {method: entry["accuracy"]["score"] for method, entry in table.items()}


def test_accuracy_per_method_and_language_on_a_hand_computed_fixture() -> None:
    result = evaluate_accuracy(hand_fixture(), "meta.answer", resamples=100)
    assert result["kind"] == "accuracy"
    assert result["methods"] == ["vote", "fusion", "maj@k", "pass@k", "single"]
    assert scores(result["overall"]) == {"vote": 0.5, "fusion": 0.5, "maj@k": 0.5, "pass@k": 1.0, "single": 0.25}
    assert scores(result["languages"]["ar"]) == {"vote": 0.0, "fusion": 1.0, "maj@k": 0.0, "pass@k": 1.0, "single": 0.0}
    english = scores(result["languages"]["en"])
    assert english == pytest.approx({"vote": 2 / 3, "fusion": 1 / 3, "maj@k": 2 / 3, "pass@k": 1.0, "single": 1 / 3})
    assert result["overall"]["single"]["no_answer"] == 1  # "I am not sure."
    assert result["overall"]["vote"]["accuracy"]["n"] == 4
    assert result["k"] == {"min": 3, "max": 3}
    low, high = result["overall"]["fusion"]["accuracy"]["ci"]
    assert 0 <= low <= 0.5 <= high <= 1
    json.dumps(result, allow_nan=False)


def test_majority_ignores_excluded_candidates_but_pass_at_k_counts_them() -> None:
    rows = [record("x", "en", "7", [("#### 7", True), ("#### 7", True), "#### 3"], first="#### 3")]
    result = evaluate_accuracy(rows, "meta.answer", resamples=10)
    assert scores(result["overall"]) == {"first": 0.0, "maj@k": 0.0, "pass@k": 1.0, "single": 1.0}
    all_flagged = [record("y", "en", "7", [("#### 7", True), ("#### 3", True)], first="#### 7")]
    assert scores(evaluate_accuracy(all_flagged, "meta.answer", resamples=10)["overall"])["maj@k"] == 1.0


def test_maj_at_k_and_vote_share_one_majority_rule() -> None:
    from fusion_of_n import answers
    from fusion_of_n.aggregators import vote

    assert majority_answer is answers.majority_answer is vote.majority_answer


def test_maj_at_k_breaks_a_tie_like_vote_toward_the_earliest_answer() -> None:
    texts = ["#### 3", "#### 7", "#### 7", "#### 3"]
    picked = asyncio.run(vote_on(texts))
    assert picked.chosen == 0 and "vote_tie" in picked.flags
    rows = [record("t", "en", "3", texts, first="#### 7")]
    assert scores(evaluate_accuracy(rows, "meta.answer", resamples=10)["overall"])["maj@k"] == 1.0


async def vote_on(texts: list[str]) -> Aggregation:
    return await MajorityVote().aggregate(
        Request.from_prompt("q"), [Candidate(t, "m", index=i) for i, t in enumerate(texts)]
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["1", "2", "3", "B", None]), min_size=1, max_size=7))
def test_majority_answer_is_what_vote_picks(answers: list[str | None]) -> None:
    texts = [f"#### {a}" if a else "no idea" for a in answers]
    pool = [Candidate(text, "m", "stop", index=i) for i, text in enumerate(texts)]
    picked = asyncio.run(MajorityVote().aggregate(Request.from_prompt("q"), pool))
    expected = extract_answer(picked.text) if "no_extractable_answer" not in picked.flags else None
    assert majority_answer([extract_answer(t) for t in texts]) == expected


@pytest.mark.parametrize(
    ("gold", "normal"),
    [
        *[("42", "42"), ("26.0", "26"), (26.0, "26"), (7, "7"), ("٤٢", "42"), ("#### 1,234", "1234")],
        *[("(b)", "B"), ("c", "C"), ("D.", "D"), ("Paris", "paris"), ("", None), (None, None)],
    ],
)
def test_gold_is_normalized_like_predictions(gold: Any, normal: str | None) -> None:
    assert normalize_gold(gold) == normal


def test_answers_match_numerically_and_by_normal_form() -> None:
    assert answers_match("26", "26.0") and answers_match("1/2", "0.5") and answers_match("C", "C")
    assert answers_match(extract_answer("Die Antwort lautet 3,5 kg."), normalize_gold("3.5"))
    assert not answers_match("26", "27") and not answers_match("B", "C")
    assert not answers_match(None, "1") and not answers_match(None, None)


def test_field_value_follows_a_dotted_path() -> None:
    row = {"meta": {"answer": "5", "choices": ["a", "b"]}}
    assert field_value(row, "meta.answer") == "5" and field_value(row, "meta.choices.1") == "b"
    assert field_value(row, "meta.missing") is None and field_value(row, "meta.answer.x") is None


GERMAN_PROMPT = "Anna hat 3 Körbe mit je 4 Äpfeln. Wie viele Äpfel hat sie insgesamt?"
GERMAN_ANSWER = (
    "Zuerst multiplizieren wir die Anzahl der Körbe mit den Äpfeln pro Korb: $3 \\times 4 = 12$. "
    "Die Antwort ist \\boxed{12}."
)
JAPANESE_PROMPT = "アンナはリンゴが4個ずつ入ったかごを3つ持っています。リンゴは全部で何個ありますか？"
ENGLISH_ANSWER = (
    "Anna has three baskets with four apples in each basket, so she has twelve apples in total. The answer is 12."
)


def test_answer_language_ignores_digits_and_latex() -> None:
    assert answer_language(GERMAN_ANSWER) == "de"
    assert answer_language(ENGLISH_ANSWER) == "en"
    assert answer_language("42") is None and answer_language("$\\frac{84}{2} = 42$") is None


def test_language_correctness_counts_right_wrong_and_undetermined() -> None:
    rows = [
        {**record("de", "de", "12", ["#### 12"], fusion=GERMAN_ANSWER), "prompt": GERMAN_PROMPT},
        {**record("ja", None, "12", ["#### 12"], fusion=ENGLISH_ANSWER), "prompt": JAPANESE_PROMPT},  # detected: ja
        record("en", "en", "42", ["#### 42"], fusion="42"),
    ]
    fidelity = evaluate_accuracy(rows, "meta.answer", resamples=10)["language_correctness"]
    overall = fidelity["overall"]["fusion"]
    assert (overall["n_correct"], overall["n_wrong"], overall["n_undetermined"]) == (1, 1, 1)
    assert overall["correct"]["score"] == 0.5 and overall["correct"]["n"] == 2  # undetermined is not wrong
    assert fidelity["languages"]["de"]["fusion"]["correct"]["score"] == 1.0
    assert fidelity["languages"]["ja"]["fusion"]["correct"]["score"] == 0.0
    assert fidelity["languages"]["en"]["fusion"]["correct"] == {"score": None, "ci": None, "n": 0}


def test_missing_gold_and_failed_rows_are_counted() -> None:
    rows = [
        *hand_fixture(),
        record("nogold", "en", None, ["#### 1"], vote="#### 1", fusion="#### 1"),
        {"id": "failed", "error": {"stage": "fusion", "message": "timeout"}},
    ]
    counts = evaluate_accuracy(rows, "meta.answer", resamples=10)["counts"]
    assert counts == {"records": 6, "error": 1, "no_gold": 1, "missing_method": {}, "evaluated": 4}


def test_a_wrong_field_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"meta\.gold"):
        evaluate_accuracy(hand_fixture(), "meta.gold")


def test_command_writes_the_result_json(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    output.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in hand_fixture()), encoding="utf-8")
    target = tmp_path / "accuracy.json"
    run = CliRunner().invoke(command, [str(output), "--answers", "meta.answer", "-o", str(target)])
    assert run.exit_code == 0, run.output
    result = json.loads(target.read_text(encoding="utf-8"))
    assert result["kind"] == "accuracy" and result["answers_field"] == "meta.answer"
    assert result["overall"]["pass@k"]["accuracy"]["score"] == 1.0
    failing = CliRunner().invoke(command, [str(output), "--answers", "meta.nothing"])
    assert failing.exit_code == 1 and "meta.nothing" in failing.output
