"""Attribution of fused answers to the candidates they copy from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fusion_of_n.cli.eval import attribution_command as command
from fusion_of_n.eval.attribution import (
    attribute,
    attribute_record,
    attribution_report,
    tokenize,
)

A = "The train covers sixty kilometres during the first hour of its journey"
B = "Afterwards it slows down and covers forty kilometres in the second hour"
NOVEL = "Combining both legs gives one hundred kilometres altogether here today"


def nonspace(text: str) -> int:
    return len("".join(text.split()))


def test_a_verbatim_copy_is_fully_attributed_to_its_candidate() -> None:
    found = attribute(A, [B, A])
    assert found.shares == (0.0, 1.0)
    assert found.novel == 0.0
    assert found.top == 1
    assert found.spans == ((0, len(A), 1),)


def test_half_copied_half_novel() -> None:
    copied = "alpha bravo charlie delta echo foxtrot"
    novel = "golfer hotel indiax juliet kilo limaxx"
    assert nonspace(copied) == nonspace(novel)  # the fixture really is half and half
    found = attribute(f"{copied} {novel}", [copied + " and more words follow", B])
    assert found.shares == (0.5, 0.0)
    assert found.novel == 0.5


def test_overlapping_candidates_are_not_double_counted() -> None:
    s1 = "first we count all the apples in every basket on the table"
    s2 = "then we add the pears from the crate"
    s3 = "and finally divide it"
    fused = f"{s1} {s2} {s3}"
    found = attribute(fused, [f"{s1} {s2}", f"{s2} {s3}"])
    # s2 is in both; the first candidate's copied stretch around it (s1 + s2) is the longer one
    total = nonspace(fused)
    assert found.shares == pytest.approx((nonspace(s1 + s2) / total, nonspace(s3) / total))
    assert sum(found.shares) + found.novel == pytest.approx(1.0)


def test_identical_candidates_tie_to_the_lowest_index() -> None:
    found = attribute(A, [B, A, A])
    assert found.shares == (0.0, 1.0, 0.0)


def test_empty_fused_text_copies_nothing_and_invents_nothing() -> None:
    found = attribute("  \n", [A, B])
    assert (found.chars, found.shares, found.novel, found.top) == (0, (0.0, 0.0), 0.0, None)


def test_short_coincidental_overlaps_are_novel() -> None:
    found = attribute("So it is 5. We add 3 and 2.", ["Hence it is 5.", "I think we add 3 and 2."])
    assert found.shares == (0.0, 0.0)
    assert found.novel == 1.0


def test_min_chars_decides_what_counts_as_copied() -> None:
    fused, candidates = "So the answer is 5.", ["Hence the answer is 5."]
    assert attribute(fused, candidates).shares == (13 / 15,)  # "the answer is 5." holds 13 of 15 characters
    assert attribute(fused, candidates, min_chars=14).shares == (0.0,)


def test_reordered_and_rewrapped_copies_still_count() -> None:
    found = attribute(f"{B}.\n\n{A}", [f"{A}.   {B}."])
    assert found.shares == (1.0,)


def test_unspaced_scripts_are_matched_character_by_character() -> None:
    assert tokenize("火车行驶了 60 km") == ["火", "车", "行", "驶", "了", "60", "km"]
    candidate = "第一小时火车行驶了六十公里，然后停了。"
    found = attribute("第一小时火车行驶了六十公里，第二小时更快。", [candidate])
    assert found.shares[0] == pytest.approx(14 / 21)  # "第一小时火车行驶了六十公里，" of 21 characters


@pytest.mark.parametrize(
    ("fused", "candidates"),
    [
        (A, [B, A]),
        (f"{B}.\n\n{A}", [f"{A}.   {B}."]),  # reordered and rewrapped: two spans of one candidate
        (f"{A} and then\n{NOVEL}, {B}", [B, A]),  # two candidates with novel text around them
        ("第一小时火车行驶了六十公里，第二小时更快。", ["然后停了。第一小时火车行驶了六十公里，然后停了。"]),
    ],
    ids=["verbatim", "reordered", "two-candidates", "unspaced"],
)
def test_each_span_knows_the_candidate_text_it_was_copied_from(fused: str, candidates: list[str]) -> None:
    found = attribute(fused, candidates)
    assert found.spans and len(found.sources) == len(found.spans)
    for start, end, who, cstart, cend in found.copies:
        assert fused[start:end].split() == candidates[who][cstart:cend].split()
    copied = sum(nonspace(fused[start:end]) for start, end, _ in found.spans)
    assert copied / found.chars == pytest.approx(sum(found.shares))  # spans cover exactly the copied text


def test_a_candidate_copied_from_two_places_gives_two_sources() -> None:
    found = attribute(f"{B} {A}", [f"{A} {B}"])
    assert [(cstart, cend) for *_, cstart, cend in found.copies] == [(len(A) + 1, len(A) + 1 + len(B)), (0, len(A))]


def test_thresholds_are_validated() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        attribute(A, [A], min_chars=0)


def record(rid: str, language: str | None, fused: str, candidates: list[tuple[str, str]], **extra: object) -> dict:
    return {
        "id": rid,
        "language": language,
        "candidates": [
            {"index": i, "model": model, "text": text, "excluded": False, "flags": []}
            for i, (model, text) in enumerate(candidates)
        ],
        "results": {"fusion": {"text": fused}},
        "error": None,
        **extra,
    }


def test_record_row_reports_shares_by_index_and_model() -> None:
    row = attribute_record(record("r1", "en", f"{A} {B}", [("m1", A), ("m2", B), ("m1", "unrelated words only")]))
    assert row is not None
    total = nonspace(A + B)
    assert row["shares"] == {"0": round(nonspace(A) / total, 6), "1": round(nonspace(B) / total, 6), "2": 0.0}
    assert row["by_model"] == {"m1": round(nonspace(A) / total, 6), "m2": round(nonspace(B) / total, 6)}
    assert row["top_index"] == 1 and row["novel"] == 0.0  # B is longer than A


def test_excluded_candidates_are_not_compared() -> None:
    rec = record("r1", "en", A, [("m1", A), ("m2", A)])
    rec["candidates"][0]["excluded"] = True
    row = attribute_record(rec)
    assert row is not None and row["shares"] == {"1": 1.0}


def test_records_without_the_method_or_with_errors_are_skipped() -> None:
    assert attribute_record(record("r1", "en", A, [("m", A)]), "bon") is None
    assert attribute_record({"id": "r2", "error": {"stage": "sampling", "message": "down"}}) is None


def test_summary_per_language_and_overall() -> None:
    records = [
        record("e1", "en", A, [("m1", A), ("m2", B)]),  # fully from candidate 0
        record("e2", "en", NOVEL, [("m1", A), ("m2", B)]),  # all novel
        record("d1", "deu", B, [("m1", A), ("m2", B)]),  # German (ISO 639-3 normalized), from candidate 1
        record("d2", "de", "", [("m1", A), ("m2", B)]),  # empty: counted, not averaged
        record("x", "en", A, [("m1", A)], error={"stage": "fusion", "message": "x"}),
    ]
    report = attribution_report(records, seed=1)
    assert report["kind"] == "attribution"
    assert report["n_records"] == 4 and report["skipped"] == 1
    english, german = report["by_language"]["en"], report["by_language"]["de"]
    assert english["n"] == 2 and english["novel"]["mean"] == 0.5 and english["top_share"]["mean"] == 0.5
    assert english["by_index"]["0"]["mean"] == 0.5 and english["by_index"]["1"]["mean"] == 0.0
    assert german["n"] == 1 and german["n_empty"] == 1 and german["by_model"]["m2"]["mean"] == 1.0
    overall = report["overall"]
    assert overall["n"] == 3 and overall["copied"]["mean"] == pytest.approx(2 / 3)
    low, high = overall["novel"]["ci"]
    assert low <= overall["novel"]["mean"] <= high


def test_attribution_command_writes_json(tmp_path: Path) -> None:
    generated = tmp_path / "out.jsonl"
    rows = [record("r1", "en", A, [("m1", A), ("m2", B)]), record("r2", "en", f"{B} {NOVEL}", [("m1", A), ("m2", B)])]
    generated.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result_path = tmp_path / "attribution.json"
    outcome = CliRunner().invoke(command, [str(generated), "-o", str(result_path)])
    assert outcome.exit_code == 0, outcome.output
    result = json.loads(result_path.read_text(encoding="utf-8"))
    assert result["kind"] == "attribution" and result["input"] == str(generated)
    assert [r["id"] for r in result["records"]] == ["r1", "r2"]
    assert result["records"][0]["shares"] == {"0": 1.0, "1": 0.0}
    assert result["overall"]["by_model"]["m2"]["mean"] == pytest.approx(nonspace(B) / nonspace(B + NOVEL) / 2, 1e-5)


def test_attribution_command_names_the_fix_when_no_record_has_the_method(tmp_path: Path) -> None:
    generated = tmp_path / "out.jsonl"
    generated.write_text(json.dumps(record("r1", "en", A, [("m1", A)])) + "\n", encoding="utf-8")
    outcome = CliRunner().invoke(command, [str(generated), "--method", "usc"])
    assert outcome.exit_code == 1
    assert "has a 'usc' result; pass --method" in outcome.output
