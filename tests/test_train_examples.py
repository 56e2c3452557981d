"""Training examples from generate records and export files: shapes, exclusions, system prompts, splits.

No training stack needed: these run everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fusion_of_n.errors import ConfigError
from fusion_of_n.train.examples import TRAIN_SKIP_FLAGS, load_examples, split_examples


def record(ident: str, text: str | None = "Four: 4.", flags: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    results: dict[str, Any] = {"bon": {"text": "bon answer", "flags": []}}
    if text is not None:
        results["fusion"] = {"text": text, "flags": list(flags)}
    return {"id": ident, "prompt": f"What is 2+2? ({ident})", "messages": None, "results": results, **extra}


def write(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_each_usable_record_becomes_a_prompt_completion_pair(tmp_path):
    path = write(tmp_path / "gen.jsonl", [record("a"), record("b", "Four.")])
    examples = load_examples([path], "fusion")
    assert examples.rows == [
        {
            "id": "a",
            "prompt": [{"role": "user", "content": "What is 2+2? (a)"}],
            "completion": [{"role": "assistant", "content": "Four: 4."}],
        },
        {
            "id": "b",
            "prompt": [{"role": "user", "content": "What is 2+2? (b)"}],
            "completion": [{"role": "assistant", "content": "Four."}],
        },
    ]
    assert examples.exclusions == {} and examples.formats == {path: "generate"}
    assert examples.methods == {"fusion", "bon"}


def test_conversation_and_the_runs_system_prompt_are_kept_as_sent_to_the_teachers(tmp_path):
    chat = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Capital of Italy?"},
    ]
    rows = [
        {**record("chat"), "prompt": None, "messages": chat, "system": "Answer in one word."},
        {**record("own-system"), "system": "ignored: the messages have one",
         "prompt": None, "messages": [{"role": "system", "content": "Be terse."}, chat[0]]},
    ]  # fmt: skip
    examples = load_examples([write(tmp_path / "gen.jsonl", rows)], "fusion")
    first, second = examples.rows
    assert first["prompt"] == [{"role": "system", "content": "Answer in one word."}, *chat]
    assert [m["content"] for m in second["prompt"]] == ["Be terse.", "Hi"]


def test_excluded_records_are_counted_by_reason(tmp_path):
    rows = [
        record("good"),
        {**record("failed"), "error": {"stage": "sampling", "message": "upstream 500"}},
        record("no-fusion", text=None),
        {**record("fusion-error"), "results": {"fusion": {"error": "fusor down"}}},
        record("empty", text="   "),
        *[record(f"flag-{flag}", flags=(flag,)) for flag in TRAIN_SKIP_FLAGS],
        record("harmless-flag", flags=("missing_brackets",)),
    ]
    examples = load_examples([write(tmp_path / "gen.jsonl", rows)], "fusion")
    assert [row["id"] for row in examples.rows] == ["good", "harmless-flag"]
    assert examples.exclusions == {
        "empty text": 1,
        "error": 1,
        "method error": 1,
        "method missing": 1,
        **{f"flagged:{flag}": 1 for flag in TRAIN_SKIP_FLAGS},
    }


def test_include_flagged_keeps_flagged_answers_but_never_errors(tmp_path):
    rows = [record("cut", flags=("fusor_truncated",)), {**record("failed"), "error": {"message": "x"}}]
    examples = load_examples([write(tmp_path / "gen.jsonl", rows)], "fusion", include_flagged=True)
    assert [row["id"] for row in examples.rows] == ["cut"] and examples.exclusions == {"error": 1}


def test_an_export_file_is_accepted_with_its_last_assistant_turn_as_the_completion(tmp_path):
    rows = [
        {"id": "e1", "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                                  {"role": "assistant", "content": "A"}]},
        {"id": "e2", "messages": [{"role": "user", "content": "Q2"}]},
    ]  # fmt: skip
    path = write(tmp_path / "sft.jsonl", rows)
    examples = load_examples([path], "fusion")
    assert examples.rows == [
        {
            "id": "e1",
            "prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
            "completion": [{"role": "assistant", "content": "A"}],
        }
    ]
    assert examples.exclusions == {"no assistant answer": 1} and examples.formats == {path: "export"}


def test_an_export_made_by_the_export_command_gives_the_same_examples_as_its_source(tmp_path):
    from fusion_of_n.pipeline.export import export_sft

    source = write(tmp_path / "gen.jsonl", [record("a", system="Be brief."), record("b")])
    export_sft(source, "fusion", str(tmp_path / "sft.jsonl"))
    assert load_examples([str(tmp_path / "sft.jsonl")], "fusion").rows == load_examples([source], "fusion").rows


def test_a_parquet_generate_output_gives_the_same_examples_as_its_jsonl(tmp_path):
    pytest.importorskip("pyarrow")
    from fusion_of_n.records import write_parquet

    rows = [record("a", meta={"k": 1}), {**record("b"), "messages": [{"role": "user", "content": "Hey"}]}]
    journal = write(tmp_path / "gen.jsonl", rows)
    write_parquet(journal, str(tmp_path / "gen.parquet"))
    assert load_examples([str(tmp_path / "gen.parquet")], "fusion").rows == load_examples([journal], "fusion").rows


def test_unknown_method_names_the_methods_present(tmp_path):
    path = write(tmp_path / "gen.jsonl", [record("a")])
    with pytest.raises(ConfigError, match=r"method 'usc'; methods present: bon, fusion"):
        load_examples([path], "usc")


def test_no_usable_examples_says_why_and_how_to_keep_flagged_ones(tmp_path):
    path = write(tmp_path / "gen.jsonl", [record("a", flags=("fusor_truncated",))])
    with pytest.raises(ConfigError, match=r"no usable training examples .*fusor_truncated: 1.*--include-flagged"):
        load_examples([path], "fusion")


def test_missing_and_empty_files_and_repeated_ids_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_examples([str(tmp_path / "nope.jsonl")], "fusion")
    with pytest.raises(ConfigError, match="holds no records"):
        load_examples([write(tmp_path / "empty.jsonl", [])], "fusion")
    path = write(tmp_path / "gen.jsonl", [record("a")])
    with pytest.raises(ConfigError, match="passed twice"):
        load_examples([path, path], "fusion")


def test_the_held_out_split_is_seeded_sized_and_independent_of_order():
    rows = [{"id": str(i)} for i in range(20)]
    train, held = split_examples(rows, 0.1, seed=3)
    assert len(held) == 2 and len(train) == 18
    assert {r["id"] for r in train} | {r["id"] for r in held} == {str(i) for i in range(20)}
    _, again_held = split_examples(list(reversed(rows)), 0.1, seed=3)
    assert {r["id"] for r in again_held} == {r["id"] for r in held}
    held_by_seed = {frozenset(r["id"] for r in split_examples(rows, 0.1, seed=seed)[1]) for seed in range(5)}
    assert len(held_by_seed) > 1  # the seed chooses the split
    assert split_examples(rows[:1], 0.5, seed=0) == (rows[:1], [])  # one example always trains
    assert split_examples(rows, 0.0, seed=0) == (rows, [])
    with pytest.raises(ConfigError, match="--eval-fraction"):
        split_examples(rows, 1.0, seed=0)
