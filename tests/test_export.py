"""export_sft: chat-format SFT rows from generate records, skip reasons, atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from fusion_of_n.errors import ConfigError
from fusion_of_n.pipeline.export import ExportSummary, export_sft, sft_row


def record(rid: str, *, prompt: str | None = "What is 2+2?", messages: list[Any] | None = None, **results: Any):
    """A record in the shape records.py documents; ``results`` maps method -> text or a result dict."""
    entries = {m: r if isinstance(r, dict) else {"text": r, "flags": []} for m, r in results.items()}
    return {
        "id": rid,
        "line": 1,
        "prompt": None if messages is not None else prompt,
        "messages": messages,
        "language": "en",
        "meta": {},
        "candidates": [{"index": 0, "model": "fake:a", "text": "4", "finish_reason": "stop"}],
        "results": entries,
        "usage": {},
        "seconds": 0.1,
        "failures": [],
        "error": None,
    }


def write_records(path: Path, records: list[dict[str, Any]], torn: str | None = None) -> str:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    path.write_text(text + (torn or ""), encoding="utf-8")
    return str(path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_export_writes_prompt_messages_then_the_methods_answer(tmp_path):
    chat = [
        {"role": "system", "content": "Antworte auf Deutsch."},
        {"role": "user", "content": [{"type": "text", "text": "Was ist 2+2?"}]},
    ]
    output = write_records(
        tmp_path / "out.jsonl",
        [record("a", fusion="Four.", bon="4"), record("b", messages=chat, fusion="Vier.", bon="4")],
    )
    summary = export_sft(output, "fusion", str(tmp_path / "sft.jsonl"))
    assert summary == ExportSummary(written=2, skipped=0, reasons={})
    assert read_jsonl(tmp_path / "sft.jsonl") == [
        {
            "id": "a",
            "messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "Four."}],
        },
        {"id": "b", "messages": [*chat, {"role": "assistant", "content": "Vier."}]},
    ]


def test_export_of_another_method_takes_that_methods_text(tmp_path):
    output = write_records(tmp_path / "out.jsonl", [record("a", fusion="Four.", bon="4")])
    export_sft(output, "bon", str(tmp_path / "sft.jsonl"))
    (row,) = read_jsonl(tmp_path / "sft.jsonl")
    assert row["messages"][-1] == {"role": "assistant", "content": "4"}


def test_skipped_records_are_counted_by_reason(tmp_path):
    errored = record("err", fusion="x") | {"error": {"stage": "sampling", "message": "upstream 500"}}
    input_error = {"id": None, "line": 9, "error": {"stage": "input", "message": "line 9 is not valid JSON"}}
    records = [
        record("ok", fusion="Four."),
        errored,
        input_error,
        record("no-fusion", bon="4"),
        record("empty", fusion="  "),
        record("null", fusion={"text": None, "flags": []}),
        record("flagged", fusion={"text": "4", "flags": ["all_candidates_flagged"]}),
        record("cut", fusion={"text": "The answer is", "flags": ["fusor_truncated"]}),
        record("failed", fusion={"text": None, "error": "fusor unreachable"}),
        record("harmless-flag", fusion={"text": "4", "flags": ["missing_brackets"]}),
        record("no-prompt", prompt=None, fusion="4"),
    ]
    output = write_records(tmp_path / "out.jsonl", records)
    summary = export_sft(output, "fusion", str(tmp_path / "sft.jsonl"))
    assert [row["id"] for row in read_jsonl(tmp_path / "sft.jsonl")] == ["ok", "harmless-flag"]
    assert summary.written == 2
    assert summary.skipped == 9
    assert summary.reasons == {
        "error": 2,
        "method missing": 1,
        "empty text": 2,
        "flagged:all_candidates_flagged": 1,
        "flagged:fusor_truncated": 1,
        "method error": 1,
        "no prompt": 1,
    }


def test_skip_flags_can_be_emptied_to_keep_flagged_answers(tmp_path):
    output = write_records(
        tmp_path / "out.jsonl", [record("f", fusion={"text": "4", "flags": ["all_candidates_flagged"]})]
    )
    summary = export_sft(output, "fusion", str(tmp_path / "sft.jsonl"), skip_flags=())
    assert (summary.written, summary.skipped) == (1, 0)


def test_a_torn_last_line_is_ignored(tmp_path):
    torn = json.dumps(record("torn", fusion="half"))[:40]
    output = write_records(tmp_path / "out.jsonl", [record("a", fusion="Four.")], torn=torn)
    summary = export_sft(output, "fusion", str(tmp_path / "sft.jsonl"))
    assert summary == ExportSummary(written=1, skipped=0, reasons={})
    assert [row["id"] for row in read_jsonl(tmp_path / "sft.jsonl")] == ["a"]


def test_unknown_method_lists_the_methods_found_and_leaves_the_target_alone(tmp_path):
    output = write_records(tmp_path / "out.jsonl", [record("a", fusion="x"), record("b", bon="y", vote="z")])
    target = tmp_path / "sft.jsonl"
    target.write_text("previous export\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="methods found: bon, fusion, vote"):
        export_sft(output, "usc", str(target))
    assert target.read_text(encoding="utf-8") == "previous export\n"
    assert sorted(os.listdir(tmp_path)) == ["out.jsonl", "sft.jsonl"]  # no temp file left behind


def test_export_replaces_the_target_whole_and_leaves_no_temp_file(tmp_path):
    output = write_records(tmp_path / "out.jsonl", [record("a", fusion="new answer")])
    target = tmp_path / "sft.jsonl"
    target.write_text("old line 1\nold line 2\nold line 3\n", encoding="utf-8")
    export_sft(output, "fusion", str(target))
    assert [row["id"] for row in read_jsonl(target)] == ["a"]
    assert sorted(os.listdir(tmp_path)) == ["out.jsonl", "sft.jsonl"]


def test_a_system_prompt_recorded_by_the_run_goes_first(tmp_path):
    chat_with_system = [{"role": "developer", "content": "Be terse."}, {"role": "user", "content": "2+2?"}]
    records = [
        record("plain", fusion="4") | {"system": "You are helpful."},
        record("own", messages=chat_with_system, fusion="4") | {"system": "You are helpful."},
    ]
    export_sft(write_records(tmp_path / "out.jsonl", records), "fusion", str(tmp_path / "sft.jsonl"))
    plain, own = read_jsonl(tmp_path / "sft.jsonl")
    assert [m["role"] for m in plain["messages"]] == ["system", "user", "assistant"]
    assert plain["messages"][0]["content"] == "You are helpful."
    assert own["messages"][:2] == chat_with_system


def test_missing_output_missing_folder_and_exporting_onto_the_output_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="run fusion-of-n generate first"):
        export_sft(str(tmp_path / "none.jsonl"), "fusion", str(tmp_path / "sft.jsonl"))
    output = write_records(tmp_path / "out.jsonl", [record("a", fusion="x")])
    with pytest.raises(ConfigError, match="is the generate output itself"):
        export_sft(output, "fusion", output)
    with pytest.raises(ConfigError, match="does not exist; create it first"):
        export_sft(output, "fusion", str(tmp_path / "no" / "sft.jsonl"))
    assert read_jsonl(tmp_path / "out.jsonl")[0]["id"] == "a"


def test_an_output_without_results_reports_that_no_methods_were_found(tmp_path):
    output = write_records(
        tmp_path / "out.jsonl", [{"id": None, "line": 1, "error": {"stage": "input", "message": "m"}}]
    )
    with pytest.raises(ConfigError, match=r"methods found: none"):
        export_sft(output, "fusion", str(tmp_path / "sft.jsonl"))


def test_sft_row_returns_the_row_or_the_reason():
    assert sft_row(record("a", fusion="4"), "fusion") == {
        "id": "a",
        "messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
    }
    assert sft_row(record("a", fusion="4"), "bon") == "method missing"
    assert sft_row(record("a", fusion="4") | {"results": ["not", "a", "dict"]}, "fusion") == "method missing"
