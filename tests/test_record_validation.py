"""eval checks the generate records it reads: a damaged record is one error line naming the file, the line,
the record's id, the field and the fix, never a bare KeyError from deep inside a metric."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fusion_of_n import ConfigError, Pipeline, PipelineSettings
from fusion_of_n.cli import eval as commands
from fusion_of_n.eval.io import read_generate_records
from fusion_of_n.eval.sweep import SWEEP_FIELDS
from fusion_of_n.pipeline.rows import InputRow, RowError
from fusion_of_n.pipeline.runner import BatchRunner
from fusion_of_n.records import read_records, record_problem
from fusion_of_n.testing import FakeBackend, Reply

FUSED = "Comparison: all agree.\n[[The answer is 4.]]"


def fusor_step(request: Any) -> Reply:
    return Reply(FUSED)


def generated(tmp_path: Path) -> list[dict[str, Any]]:
    """Three records written by the batch runner (fusion and first over two candidates each)."""
    return asyncio.run(_generate(tmp_path))


async def _generate(tmp_path: Path) -> list[dict[str, Any]]:
    teacher = FakeBackend([lambda request: Reply(f"For {request.last_user_text} the answer is 4.")], name="t")
    settings = PipelineSettings.of(models=[teacher], fusor=FakeBackend([fusor_step], name="fusor"), n=2)
    items = [InputRow(id=f"r{i}", line=i + 1, prompt=f"what is 2 + 2 ({i})?", meta={"answer": "4"}) for i in range(3)]
    output = str(tmp_path / "generated.jsonl")
    async with Pipeline(settings, env={}) as pipeline:
        await BatchRunner(pipeline, ("fusion", "first"), output).run(items)
    return list(read_records(output))


def write(path: Path, records: list[Any]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


def damaged(records: list[dict[str, Any]], damage: Callable[[dict[str, Any]], Any]) -> list[Any]:
    """The records with the second one damaged (``damage`` edits it in place or returns a replacement)."""
    copies = copy.deepcopy(records)
    replaced = damage(copies[1])
    if replaced is not None:
        copies[1] = replaced
    return copies


def pop_index(record: dict[str, Any]) -> None:
    del record["candidates"][1]["index"]


DAMAGES: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("no id", lambda r: r.pop("id") and None, "line 2: id is missing"),
    ("no candidate index", pop_index, "line 2 (record 'r1'): candidates[1].index is missing"),
    ("no results", lambda r: r.pop("results") and None, "line 2 (record 'r1'): results is missing"),
    (
        "index as text",
        lambda r: r["candidates"][0].update(index="0"),
        "line 2 (record 'r1'): candidates[0].index is a string (\"0\"), not an integer >= 0",
    ),
    ("results as a list", lambda r: r.update(results=[]), "results is a list ([]), not an object {method: result}"),
    ("candidates as an object", lambda r: r.update(candidates={}), "candidates is an object ({}), not a list"),
    ("result text a number", lambda r: r["results"]["fusion"].update(text=4), "results.fusion.text is an integer (4)"),
    ("id a boolean", lambda r: r.update(id=True), "line 2: id is a boolean (true), not a non-empty string"),
    ("a line that is a list", lambda r: [1, 2], "line 2: the line is a list ([1, 2]), not a JSON object"),
]


@pytest.mark.parametrize(("damage", "expected"), [(d, e) for _, d, e in DAMAGES], ids=[n for n, _, _ in DAMAGES])
def test_a_damaged_record_is_an_error_naming_file_line_id_field_and_fix(
    tmp_path: Path, damage: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    path = write(tmp_path / "out.jsonl", damaged(generated(tmp_path), damage))
    with pytest.raises(ConfigError) as info:
        list(read_generate_records(path))
    message = str(info.value)
    assert message.startswith(f"{path}, ") and expected in message
    assert "regenerate the record with fusion-of-n generate" in message and "or repair the line" in message


def test_every_record_generate_writes_passes_the_check(tmp_path: Path) -> None:
    records = generated(tmp_path)
    failed = {"id": "r9", "line": 9, "prompt": "?", "error": {"stage": "sampling", "type": "X", "message": "down"}}
    for record in [*records, failed, RowError(4, "line 4 is not valid JSON").to_record()]:
        assert record_problem(record) is None
    path = write(tmp_path / "out.jsonl", records)
    with open(path, "ab") as handle:
        handle.write(b'{"id": "torn", "cand')  # a run killed mid-write: skipped, as generate skips it
    assert [r["id"] for r in read_generate_records(path)] == ["r0", "r1", "r2"]


def test_a_sweep_needs_no_results_but_every_candidate_index(tmp_path: Path) -> None:
    records = damaged(generated(tmp_path), lambda r: r.pop("results") and None)
    path = write(tmp_path / "out.jsonl", records)
    assert len(list(read_generate_records(path, need=SWEEP_FIELDS))) == 3
    with pytest.raises(ConfigError, match="results is missing"):
        list(read_generate_records(path))


COMMANDS = [
    ("accuracy", commands.accuracy_command, ["--answers", "meta.answer"]),
    ("attribution", commands.attribution_command, []),
    ("sweep", commands.sweep_command, ["--methods", "vote,first", "--k", "1", "--seeds", "1"]),
    ("winrate", commands.winrate_command, ["--head-to-head", "fusion,first", "--judge", "fake:echo"]),
]


@pytest.mark.parametrize(("command", "options"), [(c, o) for _, c, o in COMMANDS], ids=[n for n, _, _ in COMMANDS])
def test_eval_commands_report_a_candidate_without_index_in_one_line(
    tmp_path: Path, command: Any, options: list[str]
) -> None:
    path = write(tmp_path / "out.jsonl", damaged(generated(tmp_path), pop_index))
    outcome = CliRunner().invoke(command, [path, *options])
    assert outcome.exit_code == 1, outcome.output
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}, line 2 (record 'r1'): candidates[1].index")
    assert "unexpected" not in outcome.stderr and "KeyError" not in outcome.stderr


def test_eval_translation_reports_a_candidate_without_index_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "out.jsonl", damaged(generated(tmp_path), pop_index))
    refs = write(tmp_path / "refs.jsonl", [{"id": f"r{i}", "reference": "x"} for i in range(3)])
    outcome = CliRunner().invoke(commands.translation_command, [path, "--references", refs])
    assert outcome.exit_code == 1, outcome.output
    assert outcome.stderr.startswith(f"error: {path}, line 2 (record 'r1'): candidates[1].index"), outcome.stderr


def test_eval_commands_accept_what_generate_wrote(tmp_path: Path) -> None:
    path = write(tmp_path / "out.jsonl", generated(tmp_path))
    for _, command, options in COMMANDS[:3]:  # winrate would call the judge
        outcome = CliRunner().invoke(command, [path, *options])
        assert outcome.exit_code == 0, outcome.stderr
