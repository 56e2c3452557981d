"""The JSON result writer every eval command shares, and its checked record reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fusion_of_n import ConfigError
from fusion_of_n.cli.eval import write_result
from fusion_of_n.eval.io import read_generate_records


def test_results_are_strict_json_with_null_for_means_over_nothing(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_result({"kind": "x", "mean": float("nan"), "ci": [float("nan"), 0.5]}, str(path))
    assert json.loads(path.read_text(encoding="utf-8")) == {"kind": "x", "mean": None, "ci": [None, 0.5]}


def test_a_result_file_is_utf8_json_with_indent_one_and_a_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_result({"language": "日本語", "scores": [1]}, str(path))
    assert path.read_text(encoding="utf-8") == '{\n "language": "日本語",\n "scores": [\n  1\n ]\n}\n'


def test_without_a_path_the_result_goes_to_stdout_and_nothing_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    write_result({"kind": "x", "nested": {"mean": float("nan")}}, None, announce=True)
    out, err = capsys.readouterr()
    assert json.loads(out) == {"kind": "x", "nested": {"mean": None}}
    assert err == ""


def test_announce_names_the_written_file_on_stderr_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quiet, loud = tmp_path / "quiet.json", tmp_path / "loud.json"
    write_result({"kind": "x"}, str(quiet))
    assert capsys.readouterr() == ("", "")
    write_result({"kind": "x"}, str(loud), announce=True)
    assert capsys.readouterr() == ("", f"wrote {loud}\n")
    assert json.loads(loud.read_text(encoding="utf-8")) == {"kind": "x"}


def test_generate_records_are_checked_as_read_and_a_line_that_is_not_json_is_skipped(tmp_path: Path) -> None:
    good = {"id": "a", "candidates": [{"index": 0, "text": "x"}], "results": {"vote": {"text": "x"}}, "error": None}
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps(good) + "\nnot json\n" + json.dumps({**good, "id": "b", "candidates": [{}]}) + "\n")
    records = read_generate_records(str(path))
    assert next(records)["id"] == "a"  # read lazily: the good record comes first
    with pytest.raises(ConfigError, match=r"line 3 \(record 'b'\): candidates\[0\]\.index is missing"):
        next(records)
