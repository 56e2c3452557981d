"""The batch runner: one pool per row for every method, durable appends, resume, error rows."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from fusion_of_n import ConfigError, Pipeline, PipelineSettings
from fusion_of_n.pipeline.rows import InputRow, RowError
from fusion_of_n.pipeline.runner import BatchRunner
from fusion_of_n.records import read_records, repair_tail
from fusion_of_n.testing import FakeBackend, HTTPFault, Reply


def teacher(name: str, fail_for: set[str] = frozenset()) -> FakeBackend:  # type: ignore[assignment]
    def step(request) -> Reply | HTTPFault:
        if request.last_user_text in fail_for:
            return HTTPFault(500, "teacher is down")
        return Reply(f"{name} says: the answer is {len(request.last_user_text)}.")

    return FakeBackend([step], name=name)


def helper() -> FakeBackend:
    def step(request) -> Reply:
        text = request.last_user_text
        if "candidate responses" in text:
            return Reply("Comparison: both agree.\n[[The fused answer.]]")
        return Reply("Rating: 7")

    return FakeBackend([step], name="helper")


def rows(n: int) -> list[InputRow]:
    return [
        InputRow(id=f"r{i}", line=i + 1, prompt=f"question number {i}", language="en", meta={"k": i}) for i in range(n)
    ]


def make(tmp_path: Path, **kwargs) -> tuple[Pipeline, list[FakeBackend]]:
    teachers = kwargs.pop("teachers", None) or [teacher("t1"), teacher("t2")]
    settings = PipelineSettings.of(models=teachers, fusor=helper(), n=1, **kwargs)
    return Pipeline(settings, env={}), teachers


async def run(tmp_path: Path, items, methods=("fusion", "bon"), **kwargs):
    pipeline, teachers = make(tmp_path, teachers=kwargs.pop("teachers", None))
    output = str(tmp_path / "out.jsonl")
    async with pipeline:
        summary = await BatchRunner(pipeline, methods, output, concurrency=4, **kwargs).run(items)
    return summary, output, teachers


async def test_every_method_aggregates_the_same_two_teacher_pool(tmp_path: Path) -> None:
    summary, output, teachers = await run(tmp_path, rows(6))
    records = list(read_records(output))
    assert summary.done == 6 and len(records) == 6
    assert [len(t.calls) for t in teachers] == [6, 6]  # one sampling call per teacher per row
    for record in records:
        assert [c["model"] for c in record["candidates"]] == ["t1", "t2"]
        assert set(record["results"]) == {"fusion", "bon"}
        assert record["results"]["fusion"]["text"] == "The fused answer."
        bon = record["results"]["bon"]
        assert bon["chosen"] in (0, 1) and bon["score"] == 7.0
        assert all(c["scores"] == {"bon": 7.0} for c in record["candidates"])
        assert record["meta"]["k"] == int(record["id"][1:])
        assert record["error"] is None
        assert set(record["usage"]) == {"sampling", "fusion", "bon", "total"}
        total = record["usage"]["total"]["total_tokens"]
        assert total == sum(record["usage"][s]["total_tokens"] for s in ("sampling", "fusion", "bon"))


async def test_rerun_skips_completed_rows_and_retries_failed_ones(tmp_path: Path) -> None:
    flaky = [teacher("t1", fail_for={"question number 2"}), teacher("t2", fail_for={"question number 2"})]
    first, output, _ = await run(tmp_path, rows(4), teachers=flaky)
    assert (first.done, first.failed) == (3, 1)
    errors = [json.loads(line) for line in Path(first.errors_file).read_text().splitlines()]
    assert errors[0]["id"] == "r2" and errors[0]["error"]["stage"] == "sampling"
    assert "teacher is down" in errors[0]["error"]["message"]
    second, _, teachers = await run(tmp_path, rows(4))
    assert (second.skipped, second.done, second.failed) == (3, 1, 0)
    assert [len(t.calls) for t in teachers] == [1, 1]  # only the failed row was redone
    ids = [r["id"] for r in read_records(output)]
    assert sorted(ids) == ["r0", "r1", "r2", "r3"]  # each once
    assert Path(second.errors_file).read_text() == ""  # the errors file reflects the latest run


async def test_bad_input_rows_are_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    items = [
        rows(1)[0],
        RowError(2, "line 2 is not valid JSON", None),
        RowError(3, "duplicate id r0", "r0"),
        InputRow(id="r9", line=4, prompt="last one"),
    ]
    summary, _output, _ = await run(tmp_path, items)
    assert (summary.done, summary.input_errors) == (2, 2)
    errors = [json.loads(line) for line in Path(summary.errors_file).read_text().splitlines()]
    assert [(e["line"], e["id"]) for e in errors] == [(2, None), (3, "r0")]
    assert summary.error_fraction == pytest.approx(0.5)


async def test_a_different_pool_or_method_set_is_refused_unless_forced(tmp_path: Path) -> None:
    await run(tmp_path, rows(2))
    with pytest.raises(ConfigError, match="methods") as info:
        await run(tmp_path, rows(2), methods=("fusion",))
    assert "--force" in str(info.value)
    summary, output, _ = await run(tmp_path, rows(2), methods=("fusion",), force=True)
    assert summary.done == 2 and Path(output + ".bak").exists()
    assert all(set(r["results"]) == {"fusion"} for r in read_records(output))


def test_repair_tail_cuts_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}\n{"id": "c", "tex')
    assert [r["id"] for r in read_records(str(path))] == ["a", "b"]
    repair_tail(str(path))
    assert path.read_bytes() == b'{"id": "a"}\n{"id": "b"}\n'
    repair_tail(str(path))  # idempotent
    assert path.read_bytes() == b'{"id": "a"}\n{"id": "b"}\n'


async def test_resume_after_a_torn_line_appends_cleanly(tmp_path: Path) -> None:
    _, output, _ = await run(tmp_path, rows(2))
    with open(output, "ab") as handle:
        handle.write(b'{"id": "r2", "half')  # what SIGKILL mid-write leaves
    summary, _, _ = await run(tmp_path, rows(3))
    assert (summary.skipped, summary.done) == (2, 1)
    assert [r["id"] for r in read_records(output)] == ["r0", "r1", "r2"]
    assert all(line.startswith("{") for line in Path(output).read_text().splitlines())


async def test_a_run_freezes_the_heap_it_started_with_and_unfreezes_it_after(tmp_path: Path) -> None:
    seen: list[int] = []

    def step(request) -> Reply:
        seen.append(gc.get_freeze_count())
        return Reply("an answer")

    summary, _, _ = await run(tmp_path, rows(3), methods=("first",), teachers=[FakeBackend([step], name="t")])
    assert summary.done == 3 and min(seen) > 0  # the rows ran with the older objects left out of collections
    assert gc.get_freeze_count() == 0


async def test_a_heap_frozen_by_someone_else_stays_frozen_after_a_run(tmp_path: Path) -> None:
    gc.freeze()
    try:
        await run(tmp_path, rows(2), methods=("first",))
        assert gc.get_freeze_count() > 0  # not unfrozen by the run (objects freed by refcount leave the count)
    finally:
        gc.unfreeze()
