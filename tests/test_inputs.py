"""read_rows: every input kind, row checks, ids, language, meta, bad rows, limit."""

from __future__ import annotations

import csv
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from fusion_of_n.errors import ConfigError, MissingDependency
from fusion_of_n.pipeline import inputs
from fusion_of_n.pipeline.inputs import parse_row, read_rows
from fusion_of_n.pipeline.rows import InputRow, RowError, stable_id

GERMAN = "Wie viele Äpfel hat Anna, wenn sie drei kauft und zwei verschenkt?"
ARABIC = "كم عدد التفاحات التي تملكها آنا إذا اشترت ثلاثًا وأعطت اثنتين؟"
JAPANESE = "アンナはりんごを三つ買って二つあげました。いくつ残っていますか？"
ENGLISH = "How many apples does Anna have if she buys three and gives two away?"


def write_jsonl(path: Path, rows: list[Any]) -> str:
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> str:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def good(items: list[InputRow | RowError]) -> list[InputRow]:
    return [item for item in items if isinstance(item, InputRow)]


def errors(items: list[InputRow | RowError]) -> list[RowError]:
    return [item for item in items if isinstance(item, RowError)]


# --- kinds -------------------------------------------------------------------------------------


def test_jsonl_rows_keep_id_prompt_line_and_other_columns_as_meta(tmp_path):
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"id": "a", "prompt": ENGLISH, "answer": "1", "tags": ["x"]},
            {"id": 7, "prompt": ENGLISH + " Explain.", "source": {"name": "s", "split": "test"}},
        ],
    )
    rows = list(read_rows(path))
    assert rows == [
        InputRow("a", 1, prompt=ENGLISH, language="en", meta={"answer": "1", "tags": ["x"]}),
        InputRow("7", 2, prompt=ENGLISH + " Explain.", language="en", meta={"source": {"name": "s", "split": "test"}}),
    ]


def test_json_extension_is_read_as_json_lines_and_blank_lines_are_not_rows(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(f'{{"prompt": "{ENGLISH}"}}\n\n   \n{{"prompt": "second one here"}}\n', encoding="utf-8")
    rows = list(read_rows(str(path)))
    assert [(row.line, row.prompt) for row in good(rows)] == [(1, ENGLISH), (4, "second one here")]
    assert errors(rows) == []


def test_jsonl_with_a_byte_order_mark_reads_its_first_row(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"id": "x", "prompt": "hello"}).encode() + b"\n")
    assert [row.id for row in good(list(read_rows(str(path))))] == ["x"]


@pytest.mark.parametrize(
    "text", ['[\n  {"prompt": "a"},\n  {"prompt": "b"}\n]\n', "[" + ", ".join(['{"prompt": "long row"}'] * 400) + "]"]
)
def test_one_json_array_file_is_refused_with_a_jq_hint(tmp_path, text):
    path = tmp_path / "array.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"jq -c '\.\[\]'"):
        read_rows(str(path))


def test_csv_parses_a_messages_column_and_treats_empty_cells_as_absent(tmp_path):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": ENGLISH}]
    path = write_csv(
        tmp_path / "in.csv",
        ["id", "prompt", "messages", "language", "topic"],
        [
            ["r1", GERMAN, "", "", "math"],
            ["", "", json.dumps(chat), "en-GB", ""],
        ],
    )
    first, second = list(read_rows(path))
    assert first == InputRow("r1", 1, prompt=GERMAN, language="de", meta={"topic": "math"})
    assert isinstance(second, InputRow)
    assert second.messages == tuple(chat)
    assert second.prompt is None
    assert second.language == "en-GB"
    assert second.line == 2
    reordered = write_csv(
        tmp_path / "reordered.csv",
        ["topic", "language", "messages", "prompt", "id"],
        [["", "en-GB", json.dumps(chat), "", ""]],
    )
    (same,) = read_rows(reordered)
    assert same.id == second.id  # the hash id does not depend on column order


def test_csv_line_counts_data_rows_and_bad_rows_do_not_stop_the_file(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(
        b'id,prompt\n1,first row\n2,too,many,fields\n3,bad \xff byte\n4,"a quoted, multi\nline prompt"\n5,last row\n'
    )
    rows = list(read_rows(str(path)))
    assert [(row.line, row.id) for row in good(rows)] == [(1, "1"), (4, "4"), (5, "5")]
    assert good(rows)[1].prompt == "a quoted, multi\nline prompt"
    extra, encoding = errors(rows)
    assert extra.line == 2 and "2 more field(s) than the header" in extra.message and "double quotes" in extra.message
    assert encoding.line == 3 and "re-encode the file as UTF-8" in encoding.message


def test_csv_messages_cell_that_is_not_json_is_a_bad_row(tmp_path):
    path = write_csv(tmp_path / "in.csv", ["id", "messages"], [["m", "[{'role': 'user'}"], ["ok", ""]])
    rows = list(read_rows(path))
    assert rows[0] == RowError(1, rows[0].message, "m")
    assert "not valid JSON" in rows[0].message
    assert isinstance(rows[1], RowError) and "no prompt or messages" in rows[1].message


def test_parquet_rows_stream_across_record_batches_in_order(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    count = inputs._BATCH_ROWS * 2 + 5
    table = pa.table({"id": [f"p{i}" for i in range(count)], "prompt": [f"question number {i}" for i in range(count)]})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=700)
    rows = list(read_rows(str(tmp_path / "in.parquet")))
    assert len(rows) == count
    assert all(isinstance(row, InputRow) for row in rows)
    assert [(row.line, row.id) for row in rows[-2:]] == [(count - 1, f"p{count - 2}"), (count, f"p{count - 1}")]


def test_parquet_nulls_messages_structs_and_non_json_meta(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    messages = [
        None,
        [{"role": "system", "content": "Be brief.", "name": None}, {"role": "user", "content": GERMAN, "name": "ann"}],
    ]
    table = pa.table(
        {
            "id": pa.array([1.0, None], pa.float64()),  # an int column with a gap, as pandas writes it
            "prompt": [ENGLISH, None],
            "messages": messages,
            "when": [datetime.date(2024, 5, 1), None],
            "score": [float("nan"), 0.5],
        }
    )
    pq.write_table(table, tmp_path / "in.parquet")
    first, second = list(read_rows(str(tmp_path / "in.parquet")))
    assert first == InputRow("1", 1, prompt=ENGLISH, language="en", meta={"when": "2024-05-01", "score": None})
    assert isinstance(second, InputRow)
    assert second.messages == (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": GERMAN, "name": "ann"},
    )
    assert second.language == "de"
    assert second.meta == {"when": None, "score": 0.5}


def test_saved_hugging_face_dataset_folder_is_read_row_by_row(tmp_path):
    datasets = pytest.importorskip("datasets")
    data = [
        {"id": "d1", "prompt": GERMAN, "answer": "1"},
        {"id": "d2", "prompt": JAPANESE, "answer": "2"},
        {"id": "d3", "prompt": "", "answer": "3"},
    ]
    datasets.Dataset.from_list(data).save_to_disk(str(tmp_path / "ds"))
    rows = list(read_rows(str(tmp_path / "ds")))
    assert rows[:2] == [
        InputRow("d1", 1, prompt=GERMAN, language="de", meta={"answer": "1"}),
        InputRow("d2", 2, prompt=JAPANESE, language="ja", meta={"answer": "2"}),
    ]
    assert rows[2] == RowError(3, rows[2].message, "d3")
    assert "prompt is empty" in rows[2].message


def test_dataset_dict_folder_with_one_split_reads_it_and_with_several_names_them(tmp_path):
    datasets = pytest.importorskip("datasets")
    one = datasets.Dataset.from_list([{"prompt": ENGLISH}])
    datasets.DatasetDict({"train": one}).save_to_disk(str(tmp_path / "single"))
    assert [row.prompt for row in good(list(read_rows(str(tmp_path / "single"))))] == [ENGLISH]
    datasets.DatasetDict({"train": one, "test": one}).save_to_disk(str(tmp_path / "two"))
    with pytest.raises(ConfigError, match="splits test, train") as caught:
        read_rows(str(tmp_path / "two"))
    assert str(tmp_path / "two" / "train") in str(caught.value)


@pytest.mark.parametrize("name", ["in.txt", "in", "in.xlsx"])
def test_unknown_kind_is_a_config_error_naming_the_accepted_kinds(tmp_path, name):
    (tmp_path / name).write_text("prompt\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\.jsonl.*\.csv.*\.parquet.*save_to_disk.*--dataset"):
        read_rows(str(tmp_path / name))


def test_missing_path_and_plain_folder_are_config_errors_naming_the_accepted_kinds(tmp_path):
    with pytest.raises(ConfigError, match=r"does not exist.*save_to_disk"):
        read_rows(str(tmp_path / "nope.jsonl"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(ConfigError, match=r"not written by datasets' save_to_disk.*\.parquet"):
        read_rows(str(tmp_path / "plain"))


def test_missing_pyarrow_names_the_data_extra(tmp_path, monkeypatch):
    (tmp_path / "in.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MissingDependency, match=r"pip install 'fusion-of-n\[data\]'"):
        read_rows(str(tmp_path / "in.parquet"))


def test_missing_datasets_names_the_data_extra(tmp_path, monkeypatch):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "state.json").write_text("{}", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(MissingDependency, match=r"pip install 'fusion-of-n\[data\]'"):
        read_rows(str(tmp_path / "ds"))


def test_a_file_that_is_not_parquet_is_a_config_error(tmp_path):
    pytest.importorskip("pyarrow")
    (tmp_path / "in.parquet").write_text("not parquet at all", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a readable Parquet file"):
        read_rows(str(tmp_path / "in.parquet"))


def test_input_and_dataset_together_or_neither_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not both"):
        read_rows(str(tmp_path / "x.jsonl"), dataset="mt-bench")
    with pytest.raises(ConfigError, match="no input given"):
        read_rows(None)


# --- rows ---------------------------------------------------------------------------------------


def test_messages_rows_keep_system_turns_and_content_parts(tmp_path):
    chat = [
        {"role": "system", "content": "Answer in German."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hallo!"},
        {
            "role": "user",
            "content": [{"type": "text", "text": GERMAN}, {"type": "image_url", "image_url": {"url": "u"}}],
        },
    ]
    (row,) = read_rows(write_jsonl(tmp_path / "in.jsonl", [{"id": "c", "messages": chat}]))
    assert isinstance(row, InputRow)
    assert row.messages == tuple(chat)
    assert row.chat == tuple(chat)
    assert row.prompt is None
    assert row.language == "de"  # from the last user text, not the system message


def test_row_without_id_gets_a_stable_hash_that_ignores_key_order(tmp_path):
    one = write_jsonl(tmp_path / "a.jsonl", ['{"prompt": "same question", "topic": "t"}'])
    two = write_jsonl(tmp_path / "b.jsonl", ['{"topic":"t",  "prompt":"same question"}'])
    (first,), (second,) = list(read_rows(one)), list(read_rows(two))
    assert first.id == second.id == stable_id({"prompt": "same question", "topic": "t"})
    (other,) = read_rows(write_jsonl(tmp_path / "c.jsonl", ['{"prompt": "same question", "topic": "u"}']))
    assert other.id != first.id


@pytest.mark.parametrize(("text", "code"), [(GERMAN, "de"), (ARABIC, "ar"), (JAPANESE, "ja"), (ENGLISH, "en")])
def test_language_is_detected_from_the_prompt(tmp_path, text, code):
    (row,) = read_rows(write_jsonl(tmp_path / "in.jsonl", [{"prompt": text}]))
    assert row.language == code


def test_given_language_is_kept_as_written_and_short_text_stays_undetected(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": ENGLISH, "language": "German"}, {"prompt": "42?"}])
    first, second = read_rows(path)
    assert first.language == "German"
    assert second.language is None


def test_language_detection_runs_lazily_one_row_at_a_time(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(inputs, "detect_language", lambda text: calls.append(text) or "en")
    rows = read_rows(write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"question {i}"} for i in range(50)]))
    assert calls == []
    first = next(rows)
    assert first.prompt == "question 0"
    assert calls == ["question 0"]


BAD_ROWS = [
    ('{"prompt": "unterminated"', "not valid JSON"),
    ('"just a string"', "row is a JSON string, not an object"),
    ('[{"prompt": "a"}]', "jq -c"),
    ('{"id": "q", "question": "Where is it?"}', "no prompt or messages (its columns: id, question)"),
    ('{"id": "q", "prompt": 42}', "prompt must be a string (got number)"),
    ('{"id": "q", "prompt": ""}', "prompt is empty"),
    ('{"id": "q", "prompt": "   "}', "prompt is blank"),
    ('{"id": "q", "prompt": "a", "messages": [{"role": "user", "content": "a"}]}', "both prompt and messages"),
    ('{"id": "q", "messages": []}', "messages must be a non-empty list"),
    ('{"id": "q", "messages": {"role": "user"}}', "messages must be a non-empty list"),
    ('{"id": "q", "messages": ["hello"]}', "messages[0] is a JSON string, not an object"),
    ('{"id": "q", "messages": [{"role": "human", "content": "a"}]}', "messages[0] role must be one of system"),
    ('{"id": "q", "messages": [{"from": "human", "value": "a"}]}', "ShareGPT"),
    ('{"id": "q", "messages": [{"role": "user", "content": 5}]}', "content must be a string or a list of parts"),
    ('{"id": "q", "messages": [{"role": "user", "content": [{"text": "a"}]}]}', "content must be a string or a list"),
    (
        '{"id": "q", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}',
        "the last message is from 'assistant'",
    ),
    ('{"id": "q", "messages": [{"role": "user", "content": " "}]}', "the last user message is empty"),
    ('{"id": 1.5, "prompt": "a"}', "id must be a string or an integer"),
    ('{"id": true, "prompt": "a"}', "id must be a string or an integer"),
    ('{"id": "q", "prompt": "a", "language": 3}', "language must be a string"),
]


@pytest.mark.parametrize(("line", "fragment"), BAD_ROWS)
def test_bad_row_is_reported_with_its_line_and_the_rows_after_it_go_on(tmp_path, line, fragment):
    path = write_jsonl(
        tmp_path / "in.jsonl", [{"id": "before", "prompt": ENGLISH}, line, {"id": "after", "prompt": "x"}]
    )
    before, bad, after = read_rows(path)
    assert isinstance(bad, RowError)
    assert bad.line == 2
    assert fragment in bad.message
    parsed = json.loads(line) if line.startswith("{") and line.endswith("}") else None
    expected_id = "q" if parsed and parsed.get("id") == "q" else None
    assert bad.id == expected_id
    assert (before.id, after.id) == ("before", "after")
    assert isinstance(after, InputRow) and after.line == 3


def test_bad_row_without_id_reports_the_hash_id_it_would_have_had(tmp_path):
    (bad,) = read_rows(write_jsonl(tmp_path / "in.jsonl", [{"prompt": 3}]))
    assert bad == RowError(1, bad.message, stable_id({"prompt": 3}))


def test_duplicate_ids_are_reported_on_later_occurrences_naming_the_first_line(tmp_path):
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [{"id": "a", "prompt": "one"}, {"id": "b", "prompt": "two"}, {"id": "a", "prompt": "three"}, {"id": "a"}],
    )
    rows = list(read_rows(path))
    assert [row.id for row in good(rows)] == ["a", "b"]
    third, fourth = errors(rows)
    assert (third.line, third.id) == (3, "a") and (fourth.line, fourth.id) == (4, "a")
    assert "duplicate id 'a': first seen on line 1" in third.message
    assert "first seen on line 1" in fourth.message


def test_identical_rows_without_ids_are_reported_as_duplicate_content(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", ['{"prompt": "same"}', '{"prompt": "other"}', '{"prompt":"same"}'])
    rows = list(read_rows(path))
    assert len(good(rows)) == 2
    (dup,) = errors(rows)
    assert dup.line == 3 and "same content as line 1" in dup.message


def test_duplicates_in_a_parquet_file_name_the_first_row(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"id": ["x", "y", "x"], "prompt": ["a", "b", "c"]}), tmp_path / "in.parquet")
    (dup,) = errors(list(read_rows(str(tmp_path / "in.parquet"))))
    assert dup.line == 3 and "first seen on row 1" in dup.message


def test_limit_counts_good_and_bad_rows_and_stops_early(tmp_path):
    path = write_jsonl(
        tmp_path / "in.jsonl", [{"prompt": "a"}, "{broken", {"prompt": "b"}, {"prompt": "c"}, {"prompt": "d"}]
    )
    rows = list(read_rows(path, limit=3))
    assert [type(row).__name__ for row in rows] == ["InputRow", "RowError", "InputRow"]
    assert list(read_rows(path, limit=0)) == []
    with pytest.raises(ConfigError, match="limit"):
        read_rows(path, limit=-1)


def test_skip_passes_over_rows_before_the_limit_and_keeps_their_line_numbers(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": p} for p in "abcde"])
    rows = list(read_rows(path, skip=2, limit=2))
    assert [(row.prompt, row.line) for row in rows] == [("c", 3), ("d", 4)]
    assert [row.prompt for row in read_rows(path, skip=4)] == ["e"]
    assert list(read_rows(path, skip=9)) == []
    with pytest.raises(ConfigError, match="skip"):
        read_rows(path, skip=-1)


def test_parse_row_checks_one_value_without_a_file():
    assert parse_row({"id": 3, "prompt": ENGLISH}, 9) == InputRow("3", 9, prompt=ENGLISH, language="en")
    error = parse_row(None, 4)
    assert error == RowError(4, error.message) and "JSON null" in error.message
