"""eval winrate: pairwise judge in both orders, verdict table, re-ask, missing, win rate with bootstrap CI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from fusion_of_n.backends import base as backends_base
from fusion_of_n.cli.eval import winrate_command as command
from fusion_of_n.errors import ConfigError
from fusion_of_n.eval.pairwise import (
    FOLLOW_UP,
    Pair,
    PairJudgement,
    combine,
    judge_pairs,
    parse_verdict,
    render_prompt,
)
from fusion_of_n.eval.stats import bootstrap_ci
from fusion_of_n.eval.winrate import head_to_head, join_pairs, summarize, winrate
from fusion_of_n.testing import FakeBackend, HTTPFault
from fusion_of_n.types import Candidate, Generation, Request, Usage, message_text

# -- a scripted judge -------------------------------------------------------------------------------


def shown(request: Request) -> tuple[str, str]:
    """The two responses of the judge prompt in ``request``, in presentation order (A, B)."""
    prompt = message_text(request.messages[0])
    a = prompt.split("<<< Response A >>>\n", 1)[1].split("\n<<< end of Response A >>>", 1)[0]
    b = prompt.split("<<< Response B >>>\n", 1)[1].split("\n<<< end of Response B >>>", 1)[0]
    return a, b


def judge_by(quality: dict[str, float], *, margin: float = 0.0, garbage: frozenset[str] = frozenset()):
    """A step that prefers the higher-quality response; within ``margin`` it picks A (a position bias).

    Replies without a verdict when the response shown as A is in ``garbage`` (also when re-asked)."""

    def step(request: Request) -> str:
        a, b = shown(request)
        if a in garbage:
            return "Both responses have merits and shortcomings."
        if quality[b] - quality[a] > margin:
            return "Response B is more accurate.\n[[B]]"
        return "Response A is more accurate.\n[[A]]"

    return step


def pairs_of(*specs: tuple[str, str, str | None]) -> list[Pair]:
    return [Pair(f"p{i}", f"question {i}", system, ref, lang) for i, (system, ref, lang) in enumerate(specs)]


def record(key: str, results: dict[str, str] | None = None, language: str | None = "en", **extra: Any) -> dict:
    body = {"id": key, "prompt": f"prompt {key}", "language": language, "meta": {}, "candidates": []}
    body["results"] = {m: {"text": t, "chosen": None, "flags": []} for m, t in (results or {}).items()}
    return {**body, "error": None, **extra}


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


# -- verdicts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("[[A]]", "A"),
        ("Response B is correct, A is not.\n\n[[B]]", "B"),
        ("[[C]]", "tie"),
        ("[[ tie ]]", "tie"),
        ("The final verdict is [[b]]", "B"),
        ("Therefore, the verdict is:\n\n[B]", "B"),
        ("Therefore, the verdict is A.", "A"),
        ("Verdict: A", "A"),
        ("**Final verdict:** B", "B"),
        ("The winner is B", "B"),
        ("Winner: Response A.", "A"),
        ("The winner is A because it is correct.", "A"),
        ("Verdict: a tie", "tie"),
        ("Answer: C", "tie"),
        ("Response A is better.", "A"),
        ("B is the better response.", "B"),
        ("I prefer Response B.", "B"),
        ("Tie", "tie"),
        ("It's a tie.", "tie"),
        ("Both are equally good.", "tie"),
        ("Neither response is better.", "tie"),
        ("A", "A"),
        ("(B)", "B"),
        ("**C**", "tie"),
        ("Some reasoning first.\nB", "B"),
        # garbage and near misses: never guessed
        ("I cannot decide.", None),
        ("", None),
        ("The answer is Berlin.", None),
        ("A good answer would mention the date.", None),
        ("Verdict: A good response must be short.", None),
        ("[[A/B/C]]", None),
        ("Therefore, the verdict is:\n\n[AB]", None),
        ("[[A]] or [[B]] or [[C]]", None),
        ("Response A is better in style, but Response B is better on facts.", None),
        ("Both are equally fluent. " + "The first one explains more of the steps involved in the answer. " * 4, None),
    ],
)
def test_verdict_formats_table(reply: str, verdict: str | None) -> None:
    assert parse_verdict(reply) == verdict


def test_double_brackets_win_over_earlier_sentences() -> None:
    assert parse_verdict("Response A is better written, but it is wrong. [[B]]") == "B"


def test_a_judge_that_parrots_the_prompt_or_the_follow_up_gives_no_verdict() -> None:
    assert parse_verdict(render_prompt("Which is bigger, 3 or 5?", "5", "3")) is None
    assert parse_verdict(FOLLOW_UP) is None


@pytest.mark.parametrize(
    ("system_first", "reference_first", "outcome"),
    [
        ("A", "B", "win"),
        ("B", "A", "loss"),
        ("tie", "tie", "tie"),
        ("A", "A", "tie"),  # the judge always picks position A: the orders disagree
        ("B", "B", "tie"),
        ("A", "tie", "tie"),
        ("tie", "A", "tie"),
        (None, "B", "missing"),
        ("A", None, "missing"),
        (None, None, "missing"),
    ],
)
def test_two_orders_combine_into_one_outcome(system_first, reference_first, outcome) -> None:
    assert combine(system_first, reference_first) == outcome


# -- judging ----------------------------------------------------------------------------------------


def test_pairwise_prompt_golden(golden) -> None:
    prompt = render_prompt(
        "Translate into German: The weather is nice today.", "Das Wetter ist heute schön.", "The weather is nice."
    )
    golden("pairwise_prompt.txt", prompt)
    assert "$" not in prompt


async def test_each_pair_is_judged_in_both_orders_at_temperature_zero() -> None:
    judge = FakeBackend([judge_by({"good": 2, "bad": 1})])
    [judgement] = await judge_pairs(pairs_of(("good", "bad", "en")), judge)
    assert [shown(call.request) for call in judge.calls] == [("good", "bad"), ("bad", "good")]
    assert all(call.request.params.temperature == 0.0 for call in judge.calls)
    assert (judgement.system_first.verdict, judgement.reference_first.verdict) == ("A", "B")
    assert judgement.outcome == "win"
    assert judgement.usage.calls == 2


async def test_unreadable_verdict_is_asked_once_more_and_the_second_reply_counts() -> None:
    def step(request: Request) -> str:
        if len(request.messages) == 1:
            return "Hmm, both are fine I guess."
        return "[[B]]" if shown(request)[1] == "good" else "[[A]]"

    judge = FakeBackend([step])
    [judgement] = await judge_pairs(pairs_of(("good", "bad", "en")), judge)
    assert judgement.outcome == "win"
    assert len(judge.calls) == 4
    follow_up = [call.request.messages for call in judge.calls if len(call.request.messages) == 3]
    assert len(follow_up) == 2
    assert follow_up[0][1] == {"role": "assistant", "content": "Hmm, both are fine I guess."}
    assert follow_up[0][2] == {"role": "user", "content": FOLLOW_UP}
    assert judgement.system_first.replies == ("Hmm, both are fine I guess.", "[[A]]")


async def test_still_unreadable_after_the_follow_up_is_missing_not_a_verdict() -> None:
    judge = FakeBackend(["I would rather not say."])
    [judgement] = await judge_pairs(pairs_of(("x", "y", "en")), judge)
    assert judgement.system_first.verdict is None and judgement.reference_first.verdict is None
    assert judgement.outcome == "missing"
    assert len(judge.calls) == 4  # one question and one follow-up per order, nothing more
    row = judgement.to_dict()
    assert row["score"] is None
    assert row["system_first_unread"]["replies"] == ["I would rather not say.", "I would rather not say."]
    summary = summarize([judgement])["overall"]
    assert (summary["missing"], summary["wins"], summary["ties"], summary["losses"]) == (1, 0, 0, 0)
    assert summary["win_rate"] is None and summary["ci"] == [None, None]


async def test_a_pair_missing_one_order_is_missing_even_if_the_other_order_has_a_verdict() -> None:
    judge = FakeBackend([judge_by({"good": 2, "bad": 1}, garbage=frozenset({"good"}))])
    [judgement] = await judge_pairs(pairs_of(("good", "bad", "en")), judge)
    assert judgement.system_first.verdict is None
    assert judgement.reference_first.verdict == "B"
    assert judgement.outcome == "missing"


async def test_upstream_failure_is_recorded_as_missing_with_its_error() -> None:
    judge = FakeBackend([HTTPFault(500, "judge overloaded")])
    [judgement] = await judge_pairs(pairs_of(("x", "y", "en")), judge)
    assert judgement.outcome == "missing"
    assert "judge overloaded" in (judgement.system_first.error or "")
    assert judgement.to_dict()["reference_first_unread"]["error"]


async def test_identical_answers_are_a_tie_without_a_judge_call() -> None:
    judge = FakeBackend(["[[A]]"])
    [judgement] = await judge_pairs(pairs_of(("same", "same", "en")), judge)
    assert judgement.outcome == "tie" and judgement.identical
    assert judge.calls == []


class CountingJudge:
    """A backend that yields to the loop inside each call and records the most calls in flight."""

    name = "counting"

    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0

    async def generate(self, request: Request, *, n: int = 1) -> Generation:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        for _ in range(3):
            await asyncio.sleep(0)
        self.in_flight -= 1
        return Generation((Candidate("[[C]]", self.name),), Usage(1, 10, 1))

    async def aclose(self) -> None:
        pass


async def test_judge_calls_run_concurrently() -> None:
    judge = CountingJudge()
    await judge_pairs(pairs_of(*[(f"s{i}", f"r{i}", "en") for i in range(5)]), judge)
    assert judge.max_in_flight == 10  # both orders of all five pairs at once


# -- position bias ----------------------------------------------------------------------------------


async def test_a_judge_that_always_picks_position_a_cannot_make_either_side_win() -> None:
    pairs = pairs_of(("good", "bad", "en"), ("bad", "good", "en"))
    judgements = await judge_pairs(pairs, FakeBackend(["[[A]]"]))
    assert [j.outcome for j in judgements] == ["tie", "tie"]
    assert summarize(judgements)["overall"]["win_rate"] == 0.5


def mirrored(group: dict[str, Any]) -> dict[str, Any]:
    return {**group, "wins": group["losses"], "losses": group["wins"]}


@settings(max_examples=60, deadline=None)
@given(
    qualities=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=8),
    margin=st.integers(0, 3),
)
def test_swapping_which_side_is_presented_first_never_changes_the_result(qualities, margin) -> None:
    """A position-biased judge (picks A unless B is better by more than ``margin``) gives the same
    result for a pair whichever of its answers is presented first, because both orders are judged."""
    quality: dict[str, float] = {}
    specs = []
    for i, (s, r) in enumerate(qualities):
        quality[f"sys{i}"], quality[f"ref{i}"] = s, r
        specs.append((f"sys{i}", f"ref{i}", "de" if i % 2 else "en"))
    pairs = pairs_of(*specs)
    swapped = [Pair(p.id, p.instruction, p.reference, p.system, p.language) for p in pairs]

    def run(items: list[Pair]) -> list[PairJudgement]:
        return asyncio.run(judge_pairs(items, FakeBackend([judge_by(quality, margin=margin)])))

    forward, backward = run(pairs), run(swapped)
    flip = {"win": "loss", "loss": "win", "tie": "tie", "missing": "missing"}
    assert [flip[j.outcome] for j in backward] == [j.outcome for j in forward]
    ours, theirs = summarize(forward), summarize(backward)
    assert {k: v for k, v in mirrored(theirs["overall"]).items() if k not in ("win_rate", "ci")} == {
        k: v for k, v in ours["overall"].items() if k not in ("win_rate", "ci")
    }
    assert ours["overall"]["win_rate"] == pytest.approx(1 - theirs["overall"]["win_rate"])
    # and the order the pairs are handed over in changes nothing either
    assert [j.outcome for j in run(list(reversed(pairs)))] == [j.outcome for j in reversed(forward)]


# -- arithmetic -------------------------------------------------------------------------------------


async def test_win_rate_and_ci_on_a_fixed_fixture_match_hand_computed_numbers() -> None:
    quality = {"s0": 3, "r0": 1, "s1": 2, "r1": 0, "s2": 1, "r2": 1, "s3": 0, "r3": 2, "s4": 2, "r4": 1}
    pairs = pairs_of(*[(f"s{i}", f"r{i}", "en") for i in range(5)])
    judge = FakeBackend(
        [judge_by(quality, garbage=frozenset({"s4"}))]
    )  # pair 4 never gets a verdict with s4 shown first
    judgements = await judge_pairs(pairs, judge)
    # s0, s1 win; s2 = r2 in quality, so the judge picks A both times: a tie; s3 loses; pair 4 is missing
    assert [j.outcome for j in judgements] == ["win", "win", "tie", "loss", "missing"]
    overall = summarize(judgements, seed=7)["overall"]
    assert (overall["wins"], overall["ties"], overall["losses"], overall["missing"]) == (2, 1, 1, 1)
    assert overall["pairs"] == 5
    assert overall["win_rate"] == (2 + 0.5 * 1) / (2 + 1 + 1)  # 0.625
    assert overall["ci"] == list(bootstrap_ci([1.0, 1.0, 0.5, 0.0], seed=7))
    assert overall["ci"][0] <= 0.625 <= overall["ci"][1]
    assert summarize(judgements, seed=7) == summarize(judgements, seed=7)


async def test_all_wins_give_a_win_rate_of_one_with_a_zero_width_interval() -> None:
    judgements = await judge_pairs(pairs_of(("a+", "a", "en"), ("b+", "b", "en")), FakeBackend([_longer_wins]))
    overall = summarize(judgements)["overall"]
    assert (overall["wins"], overall["win_rate"], overall["ci"]) == (2, 1.0, [1.0, 1.0])


def _longer_wins(request: Request) -> str:
    a, b = shown(request)
    return "[[A]]" if len(a) > len(b) else "[[B]]"


async def test_results_split_by_language_with_unknown_for_none() -> None:
    quality = {"w1": 2, "l1": 1, "w2": 0, "l2": 1, "w3": 2, "l3": 1, "t": 1, "t2": 1, "w5": 2, "l5": 1}
    pairs = pairs_of(("w1", "l1", "de"), ("w2", "l2", "de"), ("w3", "l3", "en"), ("t", "t2", "en"), ("w5", "l5", None))
    judgements = await judge_pairs(pairs, FakeBackend([judge_by(quality)]))
    summary = summarize(judgements)
    by = summary["by_language"]
    assert list(by) == ["de", "en", "unknown"]
    assert (by["de"]["wins"], by["de"]["losses"], by["de"]["win_rate"]) == (1, 1, 0.5)
    assert (by["en"]["wins"], by["en"]["ties"], by["en"]["win_rate"]) == (1, 1, 0.75)
    assert (by["unknown"]["pairs"], by["unknown"]["win_rate"]) == (1, 1.0)
    assert summary["overall"]["win_rate"] == (3 + 0.5) / 5


# -- files ------------------------------------------------------------------------------------------


def test_join_by_id_counts_every_row_left_out() -> None:
    systems = [
        record("1", {"fusion": "f1"}, "de"),
        record("2", {"fusion": "f2"}),
        record("3", {"fusion": "f3"}, None),
        {"id": "4", "prompt": "p", "error": {"stage": "sampling", "message": "boom"}},
        record("5", {"bon": "b5"}),
        record("7", {"fusion": "f7"}),
        record("9", {"fusion": "f9"}),
        record("1", {"fusion": "again"}),
    ]
    references = [
        {"id": "1", "reference": "r1"},
        {"id": 2, "text": "r2"},
        {"id": "3", "answer": 42, "language": "fr"},
        {"id": "4", "reference": "r4"},
        {"id": "5", "reference": "r5"},
        {"id": "6", "reference": "r6"},
        {"id": "9", "reference": "  "},
    ]
    joined = join_pairs(systems, references, "fusion")
    assert [(p.id, p.system, p.reference, p.language) for p in joined.pairs] == [
        ("1", "f1", "r1", "de"),
        ("2", "f2", "r2", "en"),
        ("3", "f3", "42", "fr"),
    ]
    assert sorted((u["id"], u["reason"]) for u in joined.unpaired) == [
        ("1", "system: duplicate id"),
        ("4", "system: error record"),
        ("5", "system: no fusion result"),
        ("6", "not in the system output"),
        ("7", "no reference row"),
        ("9", "reference: no non-empty reference/text/answer field"),
    ]
    assert joined.rows == {"system": 8, "reference": 7}


def test_winrate_reads_files_and_reports_unpaired_rows(tmp_path: Path) -> None:
    system = write_jsonl(tmp_path / "gen.jsonl", [record("1", {"fusion": "good"}), record("2", {"fusion": "meh"})])
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"id": "1", "reference": "bad"}, {"id": "3", "reference": "x"}])
    result = winrate(system, ref, FakeBackend([judge_by({"good": 2, "bad": 1})]), seed=1, resamples=200)
    assert result["kind"] == "winrate" and result["mode"] == "reference"
    assert result["methods"] == ["fusion"] and result["judge"] == "fake"
    assert result["counts"] == {"rows": {"system": 2, "reference": 2}, "pairs": 1, "unpaired": 2}
    assert result["unpaired"]["by_reason"] == {"no reference row": 1, "not in the system output": 1}
    assert result["overall"]["wins"] == 1 and result["overall"]["win_rate"] == 1.0
    assert result["pairs"] == [
        {"id": "1", "language": "en", "outcome": "win", "score": 1.0, "system_first": "A", "reference_first": "B"}
    ]
    assert result["usage"]["calls"] == 2
    json.dumps(result, allow_nan=False)  # strict JSON: no NaN anywhere


def test_references_can_come_from_another_generate_output(tmp_path: Path) -> None:
    system = write_jsonl(tmp_path / "gen.jsonl", [record("1", {"fusion": "good"})])
    ref = write_jsonl(tmp_path / "base.jsonl", [record("1", {"first": "bad"})])
    judge = FakeBackend([judge_by({"good": 2, "bad": 1})])
    result = winrate(system, ref, judge, reference_method="first")
    assert result["reference"] == {"path": ref, "method": "first"}
    assert result["overall"]["wins"] == 1


def test_unknown_method_is_a_config_error_naming_the_methods_found(tmp_path: Path) -> None:
    system = write_jsonl(tmp_path / "gen.jsonl", [record("1", {"bon": "x"}), record("2", {"vote": "y"})])
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"id": "1", "reference": "r"}])
    with pytest.raises(ConfigError, match=r"method 'fusion'; methods found: bon, vote"):
        winrate(system, ref, FakeBackend(["[[A]]"]))


def test_no_pair_to_judge_is_a_config_error_before_any_judge_call(tmp_path: Path) -> None:
    system = write_jsonl(tmp_path / "gen.jsonl", [record("1", {"fusion": "x"})])
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"id": "2", "reference": "r"}])
    judge = FakeBackend(["[[A]]"])
    with pytest.raises(ConfigError, match="no pair to judge"):
        winrate(system, ref, judge)
    assert judge.calls == []


def test_head_to_head_compares_two_methods_of_one_output(tmp_path: Path) -> None:
    rows = [
        record("1", {"fusion": "fused answer", "bon": "picked answer"}, "de"),
        record("2", {"fusion": "same", "bon": "same"}, "en"),
        record("3", {"fusion": "fused again"}, "en"),
    ]
    output = write_jsonl(tmp_path / "gen.jsonl", rows)
    quality = {"fused answer": 2, "picked answer": 1}
    judge = FakeBackend([judge_by(quality)])
    result = head_to_head(output, "fusion,bon", judge)
    assert result["mode"] == "head_to_head" and result["methods"] == ["fusion", "bon"]
    assert [(p["id"], p["outcome"]) for p in result["pairs"]] == [("1", "win"), ("2", "tie")]
    assert result["pairs"][1]["identical"] is True
    assert result["unpaired"]["rows"] == [{"id": "3", "reason": "reference: no bon result"}]
    assert result["overall"]["win_rate"] == 0.75
    assert len(judge.calls) == 2  # the identical pair needs no judge


def test_head_to_head_needs_two_different_methods(tmp_path: Path) -> None:
    output = write_jsonl(tmp_path / "gen.jsonl", [record("1", {"fusion": "x"})])
    with pytest.raises(ConfigError, match="two different methods"):
        head_to_head(output, "fusion,fusion", FakeBackend(["[[A]]"]))


# -- the command ------------------------------------------------------------------------------------


@pytest.fixture
def scripted_provider(monkeypatch: pytest.MonkeyPatch) -> list[FakeBackend]:
    """``scripted:NAME`` builds a FakeBackend judging by length (longer wins); built backends are listed."""
    built: list[FakeBackend] = []

    def factory(spec: Any, env: Any) -> FakeBackend:
        built.append(FakeBackend([_longer_wins], name=str(spec)))
        return built[-1]

    monkeypatch.setitem(backends_base._PROVIDERS, "scripted", factory)
    return built


def test_command_writes_the_json_result_and_prints_a_table(tmp_path: Path, scripted_provider) -> None:
    system = write_jsonl(
        tmp_path / "gen.jsonl",
        [record("1", {"fusion": "a long answer"}, "de"), record("2", {"fusion": "short"}, "en")],
    )
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"id": "1", "reference": "brief"}, {"id": "2", "answer": "much longer"}])
    out = tmp_path / "result.json"
    args = [system, "--reference", ref, "--judge", "scripted:j", "-o", str(out), "--resamples", "100"]
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["kind"] == "winrate" and data["judge"] == "scripted:j"
    assert data["bootstrap"] == {"seed": 0, "resamples": 100, "confidence": 0.95}
    assert (data["by_language"]["de"]["wins"], data["by_language"]["en"]["losses"]) == (1, 1)
    assert data["overall"]["win_rate"] == 0.5
    assert "overall" in result.stderr and "0.500" in result.stderr
    assert result.stdout == ""
    assert scripted_provider[0].closed  # the command's judge is closed after use


def test_command_head_to_head_prints_json_to_stdout(tmp_path: Path, scripted_provider) -> None:
    output = write_jsonl(tmp_path / "gen.jsonl", [record("1", {"fusion": "longer answer", "bon": "short"})])
    result = CliRunner().invoke(command, [output, "--head-to-head", "fusion,bon", "--judge", "scripted:j"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mode"] == "head_to_head" and data["overall"]["wins"] == 1


def test_command_needs_exactly_one_of_reference_and_head_to_head(tmp_path: Path) -> None:
    output = write_jsonl(tmp_path / "gen.jsonl", [record("1", {"fusion": "x"})])
    result = CliRunner().invoke(command, [output, "--judge", "fake:echo"])
    assert result.exit_code == 2
    assert "--reference" in result.output and "--head-to-head" in result.output


def test_command_reports_config_errors_in_one_line(tmp_path: Path) -> None:
    output = write_jsonl(tmp_path / "gen.jsonl", [record("1", {"bon": "x"})])
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"id": "1", "reference": "r"}])
    result = CliRunner().invoke(command, [output, "--reference", ref, "--judge", "fake:echo"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no record in") and "methods found: bon" in result.stderr


def test_command_head_to_head_rejects_a_separate_method_option(tmp_path: Path) -> None:
    output = write_jsonl(tmp_path / "gen.jsonl", [record("1", {"fusion": "x", "bon": "y"})])
    args = [output, "--head-to-head", "fusion,bon", "--method", "vote", "--judge", "fake:echo"]
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 2 and "drop --method" in result.output
