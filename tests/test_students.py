"""Trained students: `local:DIR` for a train output folder, the registry in the cache, `models --students`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fusion_of_n.backends.local import GGUF_MAGIC, check_model, resolve_model
from fusion_of_n.cli import main
from fusion_of_n.errors import ConfigError
from fusion_of_n.students import StudentStatus, list_students, register_student

GGUF_BYTES = GGUF_MAGIC + b"\0" * 60


def make_train_dir(folder: Path, *, status: str = "complete", gguf: bool = True, **manifest: Any) -> Path:
    """A fake `fusion-of-n train` output: train.json, and model.gguf when it finished."""
    folder.mkdir(parents=True)
    body = {
        "kind": "fusion-of-n train",
        "status": status,
        "base": "Qwen/Qwen2.5-0.5B-Instruct",
        "method": "fusion",
        "examples": {"train": 120, "eval": 12},
        "seconds": 42.0,
        **manifest,
    }
    (folder / "train.json").write_text(json.dumps(body))
    if gguf:
        (folder / "model.gguf").write_bytes(GGUF_BYTES)
    return folder


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_resolve_model_on_a_train_dir_returns_its_model_gguf(tmp_path: Path, cache: Path) -> None:
    student = make_train_dir(tmp_path / "runs" / "student")

    assert resolve_model(str(student), cache) == student / "model.gguf"
    check_model(str(student), cache)


def test_relative_train_dir_without_a_separator_is_a_student(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_train_dir(tmp_path / "student")
    monkeypatch.chdir(tmp_path)

    assert resolve_model("student", cache) == Path("student") / "model.gguf"


def test_unfinished_train_dir_error_quotes_the_train_json_status(tmp_path: Path, cache: Path) -> None:
    student = make_train_dir(tmp_path / "student", status="running", gguf=False)

    with pytest.raises(ConfigError, match=r"has no model\.gguf; is it a `fusion-of-n train` output that finished"):
        check_model(str(student), cache)
    with pytest.raises(ConfigError, match=r"\(train\.json status: running\)"):
        resolve_model(str(student), cache)


def test_folder_without_train_json_asks_for_a_train_output(tmp_path: Path, cache: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()

    with pytest.raises(ConfigError, match=r"no model\.gguf and no train\.json.*fusion-of-n train -o DIR"):
        check_model(str(folder), cache)


def test_train_dir_whose_model_gguf_is_not_gguf_is_rejected(tmp_path: Path, cache: Path) -> None:
    student = make_train_dir(tmp_path / "student")
    (student / "model.gguf").write_bytes(b"PK\x03\x04 not a gguf")

    with pytest.raises(ConfigError, match="not a GGUF file"):
        resolve_model(str(student), cache)


def test_register_then_list_reports_the_manifest_and_the_gguf(tmp_path: Path, cache: Path) -> None:
    student = make_train_dir(tmp_path / "runs" / "student")

    register_student(cache, student)

    assert list_students(cache) == [
        StudentStatus(
            path=student.resolve(),
            spec=f"local:{student.resolve()}",
            base="Qwen/Qwen2.5-0.5B-Instruct",
            method="fusion",
            status="complete",
            examples=120,
            gguf=True,
            size=len(GGUF_BYTES),
        )
    ]


def test_registry_is_one_json_file_per_student_holding_its_absolute_path(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_train_dir(tmp_path / "student")
    monkeypatch.chdir(tmp_path)

    register_student(cache, Path("student"))

    (entry,) = (cache / "students").iterdir()
    assert entry.suffix == ".json"
    assert json.loads(entry.read_text()) == {"path": str((tmp_path / "student").resolve())}


def test_registering_the_same_dir_twice_keeps_one_entry(tmp_path: Path, cache: Path) -> None:
    student = make_train_dir(tmp_path / "student")

    register_student(cache, student)
    entry = next((cache / "students").iterdir())
    before = entry.stat().st_mtime_ns
    register_student(cache, student)
    register_student(cache, tmp_path / "." / "student")

    assert list((cache / "students").iterdir()) == [entry]
    assert entry.stat().st_mtime_ns == before
    assert [s.path for s in list_students(cache)] == [student.resolve()]


def test_registering_a_folder_that_is_not_a_train_output_is_a_config_error(tmp_path: Path, cache: Path) -> None:
    folder = tmp_path / "elsewhere"
    folder.mkdir()

    with pytest.raises(ConfigError, match=r"no train\.json"):
        register_student(cache, folder)
    assert not (cache / "students").exists()


def test_removed_student_dirs_are_skipped_and_pruned_from_the_registry(tmp_path: Path, cache: Path) -> None:
    kept = make_train_dir(tmp_path / "kept")
    gone = make_train_dir(tmp_path / "gone")
    register_student(cache, kept)
    register_student(cache, gone)
    for path in sorted(gone.iterdir()):
        path.unlink()
    gone.rmdir()

    assert [s.path for s in list_students(cache)] == [kept.resolve()]
    assert len(list((cache / "students").iterdir())) == 1


def test_list_students_with_no_registry_and_no_search_is_empty(cache: Path) -> None:
    assert list_students(cache) == []


def test_search_finds_nested_train_dirs_sorted_and_skips_a_broken_manifest(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs = tmp_path / "runs"
    b = make_train_dir(runs / "b" / "student", status="running", gguf=False)
    a = make_train_dir(runs / "a" / "deep" / "student", method="bon")
    broken = runs / "broken"
    broken.mkdir()
    (broken / "train.json").write_text('{"kind": "fusion-of-n tr')
    data = runs / "data"
    data.mkdir()
    (data / "train.json").write_text(json.dumps([{"prompt": "a data set, not a manifest"}]))

    with caplog.at_level(logging.WARNING, logger="fusion_of_n.students"):
        students = list_students(cache, search=[runs])

    assert [(s.path, s.method, s.status, s.gguf, s.size) for s in students] == [
        (a.resolve(), "bon", "complete", True, len(GGUF_BYTES)),
        (b.resolve(), "fusion", "running", False, None),
    ]
    assert [r.getMessage() for r in caplog.records if "broken" in r.getMessage()]
    assert not [r for r in caplog.records if "data" in r.getMessage()]


def test_a_student_both_registered_and_searched_is_listed_once(tmp_path: Path, cache: Path) -> None:
    student = make_train_dir(tmp_path / "runs" / "student")
    register_student(cache, student)

    students = list_students(cache, search=[tmp_path / "runs", tmp_path])

    assert [s.path for s in students] == [student.resolve()]


def test_search_folder_that_does_not_exist_is_a_config_error(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(ConfigError, match="not a folder"):
        list_students(cache, search=[tmp_path / "nowhere"])


def test_models_command_lists_a_student_found_with_students_dir(tmp_path: Path, cache: Path) -> None:
    make_train_dir(tmp_path / "runs" / "s1", method="fusion")
    registered = make_train_dir(tmp_path / "elsewhere" / "s2", method="bon")
    register_student(cache, registered)

    result = CliRunner().invoke(
        main,
        ["models", "--students", str(tmp_path / "runs")],
        env={"FUSION_OF_N_CACHE": str(cache), "COLUMNS": "400"},
    )

    assert result.exit_code == 0, result.output
    assert "trained students" in result.output
    assert f"local:{(tmp_path / 'runs' / 's1').resolve()}" in result.output
    assert f"local:{registered.resolve()}" in result.output
    assert "Qwen/Qwen2.5-0.5B-Instruct" in result.output


def test_models_command_without_students_says_how_to_train_one(cache: Path) -> None:
    result = CliRunner().invoke(main, ["models"], env={"FUSION_OF_N_CACHE": str(cache)})

    assert result.exit_code == 0, result.output
    assert "no trained students yet" in result.output
    assert "spec" not in result.output  # no empty table
    assert "fusion-of-n train DATA --method fusion -o DIR" in result.output
    assert "--students DIR" in result.output
