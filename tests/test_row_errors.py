"""Any exception raised for one row is that row's error record and the run goes on; only a failure of the
runner itself (the output cannot be written, cancellation) stops it. Either way, after the runs every
input row is exactly once in the output or the errors file."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from fusion_of_n import Pipeline, PipelineSettings
from fusion_of_n.pipeline import runner as runner_module
from fusion_of_n.pipeline.rows import InputRow, RowError
from fusion_of_n.pipeline.runner import BatchRunner, Summary, process_row, secrets_of
from fusion_of_n.records import RecordWriter, read_records
from fusion_of_n.testing import FakeBackend, HTTPFault, Reply

FUSED = "Comparison: all agree.\n[[The fused answer.]]"


def teacher(faults: dict[str, BaseException | HTTPFault]) -> FakeBackend:
    """Answers every question, except those in ``faults``, for which it raises (or fails upstream)."""

    def step(request: Any) -> Any:
        return faults.get(request.last_user_text) or Reply(f"the answer to {request.last_user_text}")

    return FakeBackend([step], name="teacher")


def fusor(faults: dict[str, BaseException]) -> FakeBackend:
    """Fuses every pool, except for questions named in ``faults`` (found in the fusor's prompt)."""

    def step(request: Any) -> Any:
        text = request.last_user_text
        return next((exc for question, exc in faults.items() if question in text), Reply(FUSED))

    return FakeBackend([step], name="fusor")


def rows(n: int) -> list[InputRow]:
    return [InputRow(id=f"r{i}", line=i + 1, prompt=f"question {i}?") for i in range(n)]


def settings(teacher_faults: dict[str, Any] | None = None, fusor_faults: dict[str, Any] | None = None) -> Any:
    return PipelineSettings.of(models=[teacher(teacher_faults or {})], fusor=fusor(fusor_faults or {}), n=2)


async def run(
    output: Path, items: list[InputRow | RowError], config: PipelineSettings, concurrency: int = 4, **options: Any
) -> Summary:
    async with Pipeline(config, env={}) as pipeline:
        runner = BatchRunner(pipeline, ("fusion", "first"), str(output), concurrency=concurrency, **options)
        return await runner.run(items)


def ids_in(path: str) -> list[str]:
    return [str(record["id"]) for record in read_records(path)]


async def test_an_unexpected_exception_becomes_that_rows_error_record_and_the_run_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output = tmp_path / "out.jsonl"
    config = settings(
        teacher_faults={"question 1?": RuntimeError("teacher bug"), "question 4?": HTTPFault(500, "down")},
        fusor_faults={"question 2?": KeyError("index"), "question 3?": ValueError("bad verdict")},
    )
    with caplog.at_level(logging.WARNING, logger="fusion_of_n.pipeline.runner"):
        summary = await run(output, [*rows(6), RowError(7, "line 7 is not valid JSON")], config)

    assert (summary.read, summary.done, summary.failed, summary.input_errors) == (7, 2, 4, 1)
    assert sorted(ids_in(str(output))) == ["r0", "r5"]
    errors = {e["id"]: e["error"] for e in read_records(summary.errors_file) if e["id"] is not None}
    assert errors == {
        "r1": {"stage": "sampling", "type": "RuntimeError", "message": "teacher bug"},
        "r2": {"stage": "fusion", "type": "KeyError", "message": "'index'"},
        "r3": {"stage": "fusion", "type": "ValueError", "message": "bad verdict"},
        "r4": {"stage": "sampling", "type": "NotEnoughCandidates", "message": errors["r4"]["message"]},
    }
    assert "down" in errors["r4"]["message"]
    # each unexpected exception is logged once, with its traceback; the library's own error is not
    logged = [r for r in caplog.records if r.name == "fusion_of_n.pipeline.runner"]
    assert sorted(r.getMessage().split(":")[0] for r in logged) == [
        "row 'r1' (line 2)",
        "row 'r2' (line 3)",
        "row 'r3' (line 4)",
    ]
    assert all(r.levelno == logging.ERROR and "Traceback (most recent call last)" in r.getMessage() for r in logged)

    # the next run redoes exactly the failed rows; every input row is then once in the output
    second = await run(output, [*rows(6), RowError(7, "line 7 is not valid JSON")], settings())
    assert (second.skipped, second.done, second.failed) == (2, 4, 0)
    assert sorted(ids_in(str(output))) == [f"r{i}" for i in range(6)]


async def test_a_record_json_cannot_hold_is_the_rows_error_not_a_crash_of_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = runner_module.build_record

    def with_a_set(row: InputRow, *args: Any, **kwargs: Any) -> dict[str, Any]:
        record = real(row, *args, **kwargs)
        if row.id == "r1":
            record["analysis"] = {1, 2}  # e.g. an aggregator that returns a set
        return record

    monkeypatch.setattr(runner_module, "build_record", with_a_set)
    summary = await run(tmp_path / "out.jsonl", list(rows(3)), settings())
    assert (summary.done, summary.failed) == (2, 1)
    [failed] = read_records(summary.errors_file)
    assert failed["id"] == "r1" and failed["error"]["stage"] == "record" and failed["error"]["type"] == "TypeError"


async def test_when_the_output_cannot_be_written_the_run_stops_and_the_next_run_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "out.jsonl"
    real_write = RecordWriter.write_line
    written: list[str] = []
    failures: list[str] = []

    def full_disk(self: RecordWriter, line: bytes) -> None:
        record = json.loads(line)
        if self.path == str(output) and len(written) == 2 and not failures:  # the third write fails, once
            failures.append(str(record["id"]))
            raise OSError(28, "No space left on device")
        real_write(self, line)
        if self.path == str(output):
            written.append(str(record["id"]))

    monkeypatch.setattr(RecordWriter, "write_line", full_disk)
    with pytest.raises(OSError, match="No space left"):
        await run(output, list(rows(8)), settings(), concurrency=2)
    monkeypatch.setattr(RecordWriter, "write_line", real_write)
    assert ids_in(str(output)) == written and failures[0] not in written

    second = await run(output, list(rows(8)), settings(), concurrency=2)
    assert second.skipped == len(written) and second.done == 8 - len(written)
    assert sorted(ids_in(str(output))) == [f"r{i}" for i in range(8)]  # each once


async def test_cancellation_inside_a_row_stops_the_run_instead_of_becoming_an_error_record(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    config = settings(teacher_faults={"question 1?": asyncio.CancelledError()})
    with pytest.raises(asyncio.CancelledError):
        await run(output, list(rows(3)), config, concurrency=1)
    assert "r1" not in ids_in(str(output)) + ids_in(str(output) + ".errors.jsonl")  # redone by the next run
    second = await run(output, list(rows(3)), settings(), concurrency=1)
    assert sorted(ids_in(str(output))) == ["r0", "r1", "r2"] and second.failed == 0


async def test_process_row_returns_an_error_record_for_any_exception_and_lets_cancellation_through() -> None:
    config = settings(teacher_faults={"question 0?": ZeroDivisionError("division by zero")})
    async with Pipeline(config, env={}) as pipeline:
        record = await process_row(pipeline, rows(1)[0], ("first",))
        assert record["error"] == {"stage": "sampling", "type": "ZeroDivisionError", "message": "division by zero"}
        json.dumps(record)
    cancelled = settings(fusor_faults={"question 0?": asyncio.CancelledError()})
    async with Pipeline(cancelled, env={}) as pipeline:
        with pytest.raises(asyncio.CancelledError):
            await process_row(pipeline, rows(1)[0], ("fusion",))


KEY = "my-own-key-31337"


async def test_keys_are_redacted_from_the_error_record_and_the_logged_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    leaky = RuntimeError(f"auth failed for {KEY} (header Bearer sk-abcdefgh12345678)")
    output = tmp_path / "out.jsonl"
    with caplog.at_level(logging.WARNING):
        summary = await run(output, list(rows(2)), settings({"question 0?": leaky}), secrets=(KEY,))
    [failed] = read_records(summary.errors_file)
    assert failed["error"]["message"] == "auth failed for *** (header Bearer ***)"
    everything = Path(summary.errors_file).read_text() + output.read_text() + caplog.text
    assert "Traceback" in caplog.text and KEY not in everything and "sk-abcdefgh" not in everything


def test_the_secrets_are_the_values_of_the_key_variables_the_specs_read() -> None:
    config = PipelineSettings.of(
        models=("openai:a@http://127.0.0.1:9/v1", "openai:b@http://127.0.0.1:9/v1#key_env=TEAM_KEY", "fake:echo"),
        reward="vllm:rm@http://127.0.0.1:9",
    )
    env = {"OPENAI_API_KEY": "sk-1", "TEAM_KEY": "team-key", "VLLM_API_KEY": "vllm-key", "HOME": "/root"}
    assert secrets_of(config, env) == ("sk-1", "team-key", "vllm-key")
