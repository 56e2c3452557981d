"""The N-sweep: seeded k-subsets of stored pools, re-aggregated, scored, costed and cached."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from fusion_of_n import ConfigError, Pipeline, PipelineSettings
from fusion_of_n.cli.eval import sweep_command as command
from fusion_of_n.eval.subsets import CACHE_FILE, SweepCache, sampling_tokens
from fusion_of_n.eval.sweep import (
    accuracy_metric,
    chrf_metric,
    draw_subset,
    run_sweep,
    sweep_settings,
)
from fusion_of_n.pipeline.rows import InputRow
from fusion_of_n.pipeline.runner import BatchRunner
from fusion_of_n.records import read_records
from fusion_of_n.testing import FakeBackend, HTTPFault, Reply, count_tokens
from fusion_of_n.types import message_text

FUSED = "Comparison: most say 7.\n[[The answer is 7.]]"


def candidate(index: int, text: str, tokens: int | None) -> dict:
    return {"index": index, "model": "m", "text": text, "finish_reason": "stop", "completion_tokens": tokens,
            "excluded": False, "flags": [], "scores": {}}  # fmt: skip


def records() -> list[dict]:
    """Two scorable pools of three (gold 7 and 12) and one record without gold."""
    return [
        {
            "id": "r1",
            "prompt": "How many apples?",
            "language": "en",
            "meta": {"answer": "7"},
            "candidates": [
                candidate(0, "The answer is 7.", 10),
                candidate(1, "The answer is 5.", 20),
                candidate(2, "The answer is 7.", 30),
            ],
            "usage": {"sampling": {"total_tokens": 120}},
            "error": None,
        },
        {
            "id": "r2",
            "prompt": "How many pears?",
            "language": "en",
            "meta": {"answer": "#### 12"},
            "candidates": [candidate(0, "I get 3.", 5), candidate(1, "It is 12.", 5), candidate(2, "So 12.", 10)],
            "usage": {"sampling": {"total_tokens": 40}},
            "error": None,
        },
        {"id": "r3", "prompt": "No gold here", "meta": {}, "candidates": [candidate(0, "1", 1)], "error": None},
    ]


def fusor(step: object = FUSED) -> FakeBackend:
    return FakeBackend([step], name="fusor")


def judge() -> FakeBackend:
    def rate(request) -> str:
        response = request.last_user_text.split("The response:")[1]
        return "Rating: 9" if "is 7" in response or "is 12" in response else "Rating: 2"

    return FakeBackend([rate], name="judge")


async def sweep(methods, ks=(3,), seeds=2, cache=None, **backends) -> dict:
    settings = sweep_settings(methods, backends.get("fusor"), backends.get("judge"))
    async with Pipeline(settings, env={}) as pipeline:
        return await run_sweep(
            records(), pipeline, accuracy_metric(), ks=ks, seeds=seeds, methods=methods, cache=cache, seed=0
        )


def point(result: dict, method: str, k: int, seed: int) -> dict:
    return next(p for p in result["points"] if (p["method"], p["k"], p["seed"]) == (method, k, seed))


def summary(result: dict, method: str, k: int) -> dict:
    return next(s for s in result["summary"] if (s["method"], s["k"]) == (method, k))


def test_subsets_are_seeded_sorted_and_drawn_from_the_pool() -> None:
    subset = draw_subset("r1", 8, 3, seed=4)
    assert len(subset) == len(set(subset)) == 3 and list(subset) == sorted(subset)
    assert all(0 <= i < 8 for i in subset)
    assert draw_subset("r1", 8, 3, seed=4) == subset
    assert len({draw_subset("r1", 8, 3, seed=s) for s in range(10)}) > 1
    assert draw_subset("r1", 8, 8, seed=1) == tuple(range(8))
    with pytest.raises(ValueError, match="pool size 8"):
        draw_subset("r1", 8, 9, seed=0)


def test_sampling_tokens_are_the_subsets_share_of_completion_tokens() -> None:
    record = records()[0]
    assert sampling_tokens(record, [0, 1, 2]) == 120
    assert sampling_tokens(record, [2]) == 120 * 30 / 60
    record["candidates"][1]["completion_tokens"] = None  # no per-candidate count: an equal share each
    assert sampling_tokens(record, [0, 2]) == 120 * 2 / 3


async def test_selection_methods_make_no_model_calls_and_score_by_hand() -> None:
    untouchable = FakeBackend([RuntimeError("selection methods must not call a model")], name="fusor")
    result = await sweep(("first", "vote", "mbr", "random"), ks=(3,), fusor=untouchable)
    assert untouchable.calls == [] and result["calls"]["made"] == 0
    assert result["n_records"] == 2 and result["skipped"] == {"no_gold_or_reference": 1}
    # full pools: first picks "7" (right) and "3" (wrong); vote picks 7 and 12 (both right)
    assert [point(result, "first", 3, s)["quality"] for s in (0, 1)] == [0.5, 0.5]
    assert point(result, "vote", 3, 0)["quality"] == 1.0
    assert point(result, "first", 3, 0)["tokens"] == (120 + 40) / 2  # whole pools, no aggregation cost
    assert summary(result, "vote", 3)["quality"] == {"mean": 1.0, "ci": [1.0, 1.0], "n": 2}


async def test_single_candidate_points_follow_the_drawn_subsets() -> None:
    result = await sweep(("first",), ks=(1,), seeds=3)
    pools = records()
    for seed in range(3):
        qualities, tokens = [], []
        for record in pools[:2]:
            (drawn,) = draw_subset(record["id"], 3, 1, seed)
            qualities.append(accuracy_metric()(record, record["candidates"][drawn]["text"]))
            tokens.append(sampling_tokens(record, [drawn]))
        got = point(result, "first", 1, seed)
        assert got["quality"] == sum(qualities) / 2 and got["tokens"] == sum(tokens) / 2
        assert got["n_records"] == 2 and got["n_failed"] == 0


async def test_fusion_tokens_add_the_fusors_usage_to_the_sampling_share() -> None:
    backend = fusor(Reply(FUSED, completion_tokens=6))
    result = await sweep(("fusion",), ks=(3,), seeds=1, fusor=backend)
    assert len(backend.calls) == 2  # one fusor call per record
    fusor_tokens = [sum(count_tokens(message_text(m)) for m in c.request.messages) + 6 for c in backend.calls]
    got = point(result, "fusion", 3, 0)
    assert got["aggregation_tokens"] == sum(fusor_tokens) / 2
    assert got["tokens"] == (120 + 40 + sum(fusor_tokens)) / 2
    assert got["quality"] == 0.5  # "7" is right for r1, wrong for r2
    # the fusor saw the record's prompt and every candidate, keeping their pool indices
    assert backend.calls[0].request.last_user_text.count("The answer is") == 3
    assert "How many apples?" in backend.calls[0].request.last_user_text


async def test_fusion_calls_are_cached_and_a_second_run_makes_none(tmp_path: Path) -> None:
    first_fusor = fusor()
    first = await sweep(("fusion",), ks=(2, 3), seeds=3, cache=SweepCache(tmp_path), fusor=first_fusor)
    distinct = sum(len({draw_subset(r, 3, 2, s) for s in range(3)}) + 1 for r in ("r1", "r2"))
    assert len(first_fusor.calls) == distinct  # k=3: one subset per record, whatever the seed
    assert len((tmp_path / CACHE_FILE).read_text().splitlines()) == distinct
    second_fusor = fusor()
    second = await sweep(("fusion",), ks=(2, 3), seeds=3, cache=SweepCache(tmp_path), fusor=second_fusor)
    assert second_fusor.calls == [] and second["calls"] == {"made": 0, "cache_hits": distinct, "failed": 0}
    assert second["points"] == first["points"]


async def test_extending_k_calls_only_for_the_new_subsets(tmp_path: Path) -> None:
    await sweep(("fusion",), ks=(3,), seeds=2, cache=SweepCache(tmp_path), fusor=fusor())
    extended = fusor()
    await sweep(("fusion",), ks=(1, 3), seeds=2, cache=SweepCache(tmp_path), fusor=extended)
    new_subsets = sum(len({draw_subset(r, 3, 1, s) for s in range(2)}) for r in ("r1", "r2"))
    assert len(extended.calls) == new_subsets


async def test_bon_is_judged_once_per_candidate_then_cached(tmp_path: Path) -> None:
    rater = judge()
    result = await sweep(("bon",), ks=(3,), seeds=2, cache=SweepCache(tmp_path), judge=rater)
    assert len(rater.calls) == 6  # three candidates in each of two full pools, judged once
    assert point(result, "bon", 3, 1)["quality"] == 1.0  # "is 7" and "is 12" rated highest
    assert point(result, "bon", 3, 1)["flags"] == {}
    again = judge()
    await sweep(("bon",), ks=(3,), seeds=2, cache=SweepCache(tmp_path), judge=again)
    assert again.calls == []


async def test_unreadable_verdicts_are_counted_in_the_point_flags() -> None:
    mute = FakeBackend(["I would rather not say."], name="judge")
    result = await sweep(("bon",), ks=(3,), seeds=1, judge=mute)
    assert point(result, "bon", 3, 0)["flags"]["all_unscored"] == 2
    assert summary(result, "bon", 3)["flags"]["all_unscored"] == 2


async def test_upstream_failures_are_counted_not_scored_and_not_cached(tmp_path: Path) -> None:
    result = await sweep(("fusion", "first"), ks=(3,), seeds=1, cache=SweepCache(tmp_path), fusor=fusor(HTTPFault(503)))
    failed = point(result, "fusion", 3, 0)
    assert failed["n_failed"] == 2 and failed["n_records"] == 0 and math.isnan(failed["quality"])
    assert point(result, "first", 3, 0)["n_records"] == 2
    assert result["calls"]["failed"] == 2 and "503" in result["failures"][0]
    assert not (tmp_path / CACHE_FILE).exists()


async def test_k_beyond_every_pool_names_the_largest_pool() -> None:
    with pytest.raises(ConfigError, match="at most 3 candidates"):
        await sweep(("first",), ks=(1, 5))


def test_model_methods_without_a_model_name_the_flag() -> None:
    with pytest.raises(ConfigError, match="--fusor"):
        sweep_settings(("fusion",))
    with pytest.raises(ConfigError, match="--judge"):
        sweep_settings(("bon",))


def test_chrf_metric_scores_against_the_references_of_the_id() -> None:
    metric = chrf_metric({"r1": ["Der Hund schläft."]})
    assert metric({"id": "r1"}, "Der Hund schläft.") == pytest.approx(100.0)
    assert 0 < metric({"id": "r1"}, "Der Hund bellt.") < 100  # type: ignore[operator]
    assert metric({"id": "other"}, "x") is None


async def test_sweep_reads_what_generate_writes(tmp_path: Path) -> None:
    answers = iter(["It is 4.", "It is 5.", "It is 4.", "It is 9."] * 3)
    teacher = FakeBackend([lambda request: next(answers)], name="teacher")
    settings = PipelineSettings.of(models=[teacher], n=4)
    rows = [InputRow(id=f"q{i}", line=i + 1, prompt=f"question {i}", meta={"answer": "4"}) for i in range(3)]
    output = str(tmp_path / "out.jsonl")
    async with Pipeline(settings, env={}) as pipeline:
        await BatchRunner(pipeline, ("first",), output, concurrency=1).run(rows)
    async with Pipeline(sweep_settings(("vote", "first")), env={}) as pipeline:
        result = await run_sweep(
            read_records(output), pipeline, accuracy_metric(), ks=(4,), seeds=1, methods=("vote", "first")
        )
    assert point(result, "vote", 4, 0)["quality"] == 1.0 and point(result, "first", 4, 0)["quality"] == 1.0
    stored = [r["usage"]["sampling"]["total_tokens"] for r in read_records(output)]
    assert point(result, "vote", 4, 0)["tokens"] == sum(stored) / 3


def write_records(path: Path) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records()), encoding="utf-8")


def test_sweep_command_writes_points_and_serves_fusion_from_the_cache(tmp_path: Path) -> None:
    generated, cache = tmp_path / "out.jsonl", tmp_path / "cache"
    write_records(generated)
    args = [str(generated), "--k", "1,3", "--seeds", "2", "--methods", "fusion,vote", "--fusor", "fake:echo"]
    runner = CliRunner()
    outcomes = []
    for name in ("one.json", "two.json"):
        done = runner.invoke(command, [*args, "--cache", str(cache), "-o", str(tmp_path / name)])
        assert done.exit_code == 0, done.output
        outcomes.append(json.loads((tmp_path / name).read_text(encoding="utf-8")))
    first, second = outcomes
    assert first["kind"] == "sweep" and first["metric"] == "accuracy" and first["fusor"] == "fake:echo"
    assert {(p["method"], p["k"], p["seed"]) for p in first["points"]} == {
        (m, k, s) for m in ("fusion", "vote") for k in (1, 3) for s in (0, 1)
    }
    assert set(first["points"][0]) >= {"method", "k", "seed", "quality", "tokens", "n_records"}
    assert first["calls"]["made"] > 0 and second["calls"]["made"] == 0
    assert second["calls"]["cache_hits"] == first["calls"]["made"]
    assert second["points"] == first["points"]


def test_the_fusor_budget_follows_the_max_tokens_generate_recorded(tmp_path: Path) -> None:
    from fusion_of_n.eval.sweep import sweep_file
    from fusion_of_n.records import run_file

    generated = tmp_path / "out.jsonl"
    write_records(generated)
    budgets = []
    for recorded in (None, 50):
        if recorded is not None:
            Path(run_file(str(generated))).write_text(json.dumps({"params": {"max_tokens": recorded}}), "utf-8")
        fused = fusor()
        sweep_file(str(generated), ks=(1,), seeds=1, methods=("fusion",), fusor=fused, env={})
        budgets.append({call.request.params.max_tokens for call in fused.calls})
    assert budgets[1] == {100}  # twice the candidates' max_tokens, as generate sized it
    assert budgets[0] != {100}  # without a run file: from the pool


def test_sweep_command_rejects_a_bad_k_list_and_chrf_without_references(tmp_path: Path) -> None:
    generated = tmp_path / "out.jsonl"
    write_records(generated)
    bad_k = CliRunner().invoke(command, [str(generated), "--k", "1,two", "--methods", "first"])
    assert bad_k.exit_code == 2 and "comma-separated" in bad_k.output
    no_refs = CliRunner().invoke(command, [str(generated), "--metric", "chrf", "--methods", "first"])
    assert no_refs.exit_code == 2 and "--references" in no_refs.output


def agreeing_records(size: int = 6) -> list[dict]:
    same = [candidate(i, "The answer is 7.", 10) for i in range(size)]
    split = [candidate(i, f"The answer is {i % 3}.", 10) for i in range(size)]
    usage = {"sampling": {"total_tokens": 60 * size}}
    return [
        {"id": "same", "prompt": "q", "meta": {"answer": "7"}, "candidates": same, "usage": usage, "error": None},
        {"id": "split", "prompt": "q", "meta": {"answer": "1"}, "candidates": split, "usage": usage, "error": None},
    ]


async def test_sweep_adaptive_replays_the_rounds_and_spends_fewer_tokens_where_candidates_agree() -> None:
    from fusion_of_n.eval.sweep import adaptive_subset

    same, split = agreeing_records()
    assert len(adaptive_subset(same, 0)) == 4  # rounds 3, 1, 1, 1: after 4 agreeing, 4 > 0 + 2 left
    assert len(adaptive_subset(split, 0)) == 6  # a three-way split is drawn in full
    async with Pipeline(sweep_settings(["vote"])) as pipeline:
        result = await run_sweep(agreeing_records(), pipeline, accuracy_metric("meta.answer"), ks=[6], seeds=2,
                                 methods=["vote"], adaptive=True)  # fmt: skip
    assert result["methods"] == ["vote", "vote+adaptive"]
    full, adaptive = result["summary"]
    assert (full["method"], adaptive["method"], adaptive["k"]) == ("vote", "vote+adaptive", 6)
    assert adaptive["quality"]["mean"] == full["quality"]["mean"]
    assert adaptive["tokens"] < full["tokens"]
