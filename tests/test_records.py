"""The record format's accessors: what a record means, read the same way by every reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fusion_of_n import ConfigError, Params, Pipeline, PipelineSettings
from fusion_of_n.pipeline.rows import InputRow, RowError
from fusion_of_n.pipeline.runner import process_row
from fusion_of_n.records import (
    RecordWriter,
    is_finished,
    methods_in,
    read_records,
    record_chat,
    record_messages,
    record_methods,
    record_pool,
    record_problem,
    record_prompt_text,
    record_request,
    record_tokens,
    repair_tail,
    result_text,
)
from fusion_of_n.testing import FakeBackend, Reply


def teacher() -> FakeBackend:
    return FakeBackend([lambda request: Reply(f"answer to {request.last_user_text}")], name="teacher")


async def pipeline_record(row: InputRow, system: str | None) -> tuple[dict[str, Any], FakeBackend]:
    """The record generate writes for ``row`` (read back from JSON) and the teacher that was asked."""
    model = teacher()
    settings = PipelineSettings.of(models=[model], n=2, system=system, temperature=0.5)
    async with Pipeline(settings, env={}) as pipeline:
        record = await process_row(pipeline, row, ["first"])
    return json.loads(json.dumps(record)), model


CHAT = ({"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}, {"role": "user", "content": "2+2?"})
OWN_DEVELOPER = ({"role": "developer", "content": "Answer in German."}, {"role": "user", "content": "2+2?"})


@pytest.mark.parametrize(
    ("prompt", "messages", "system"),
    [("2+2?", None, "Be brief."), (None, CHAT, "Be brief."), (None, OWN_DEVELOPER, "Be brief."), ("2+2?", None, None)],
    ids=["prompt-and-system", "chat-and-system", "chat-with-its-own-developer-message", "no-system"],
)
async def test_a_record_gives_back_the_request_the_pipeline_sent(
    prompt: str | None, messages: tuple[dict[str, str], ...] | None, system: str | None
) -> None:
    row = InputRow("r1", 1, prompt=prompt, messages=messages, language="en")
    record, model = await pipeline_record(row, system)
    sent = model.calls[0].request
    rebuilt = record_request(record, Params(temperature=0.5))
    assert rebuilt.messages == sent.messages
    assert rebuilt.language == sent.language == "en"
    assert rebuilt.params == Params(temperature=0.5)
    assert record_messages(record) == sent.messages
    assert record_chat(record) == row.chat  # the row's own conversation, without the run's system prompt


def test_the_system_prompt_goes_first_once() -> None:
    chat = [{"role": "system", "content": "Own."}, {"role": "user", "content": "Q"}]
    assert record_messages({"messages": chat, "system": "Run's."}) == tuple(chat)
    assert record_messages({"prompt": "Q", "system": "Run's."}) == (
        {"role": "system", "content": "Run's."},
        {"role": "user", "content": "Q"},
    )
    assert record_request({"prompt": "Q"}).params == Params()


def test_a_record_without_prompt_or_messages_has_no_chat_but_an_empty_user_turn_as_request() -> None:
    assert record_chat({"id": "x"}) == ()
    assert record_messages({"id": "x"}) == ({"role": "user", "content": ""},)


def test_prompt_text_prefers_the_prompt_field() -> None:
    record = {"prompt": "Translate this.", "messages": [{"role": "user", "content": "other"}]}
    assert record_prompt_text(record) == "Translate this."


def test_prompt_text_falls_back_to_the_last_user_message() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url", "image_url": {}}]},
    ]
    assert record_prompt_text({"messages": messages}) == "second"  # content parts: their text


def test_prompt_text_of_a_record_without_a_user_turn_is_empty() -> None:
    assert record_prompt_text({"messages": [{"role": "system", "content": "Be brief."}]}) == ""
    assert record_prompt_text({}) == ""


RECORD: dict[str, Any] = {
    "id": "r7",
    "prompt": "2+2?",
    "candidates": [
        {"index": 0, "model": "a", "text": "4", "excluded": False, "flags": [], "completion_tokens": 3},
        {"index": 1, "model": "b", "text": "", "excluded": True, "flags": ["empty"], "completion_tokens": 0},
        {"index": 2, "model": "a", "text": "four", "excluded": False, "flags": []},
    ],
    "results": {"fusion": {"text": "4.", "chosen": None}, "vote": {"text": "4", "chosen": 0}},
    "usage": {"sampling": {"total_tokens": 30}, "total": {"total_tokens": 42}},
    "error": None,
}


def test_result_text_names_the_method_and_the_methods_present_when_missing() -> None:
    assert result_text(RECORD, "vote") == "4"
    missing = r"record 'r7' has no result for method 'bon' \(methods present: fusion, vote\)"
    with pytest.raises(ConfigError, match=missing):
        result_text(RECORD, "bon")
    with pytest.raises(ConfigError, match=r"methods present: none"):
        result_text({"id": "e", "error": {"stage": "sampling"}}, "fusion")


def test_methods_keep_the_order_of_first_appearance() -> None:
    other = {"results": {"bon": {"text": "x"}, "vote": {"text": "y"}}}
    assert record_methods(RECORD) == ["fusion", "vote"]
    assert methods_in([RECORD, other, {"error": {}}]) == ["fusion", "vote", "bon"]


def test_a_pool_rebuilt_from_a_record_keeps_indices_and_hygiene() -> None:
    whole = record_pool(RECORD)
    assert [c.index for c in whole.candidates] == [0, 1, 2]
    assert [c.index for c in whole.usable] == [0, 2]
    assert whole.candidates[1].flags == ("empty",) and whole.candidates[1].excluded
    subset = record_pool(RECORD, [2, 0])
    assert [(c.index, c.text, c.model) for c in subset.candidates] == [(2, "four", "a"), (0, "4", "a")]
    assert subset.usage.total_tokens == 0  # nothing was sampled again


def test_finished_and_failed_records_are_told_apart_and_cost_what_they_used() -> None:
    failed = {"id": "e", "line": 2, "error": {"stage": "sampling", "type": "X", "message": "down"}}
    assert is_finished(RECORD) and not is_finished(failed)
    assert record_tokens(RECORD) == 42 and record_tokens(failed) == 0
    assert record_problem(failed) is None
    assert record_problem(RowError(3, "bad row").to_record()) is None


def test_a_system_prompt_that_is_not_text_is_a_damaged_record() -> None:
    assert record_problem({**RECORD, "system": 3}) == "system is an integer (3), not a string"


def test_writer_and_repair_keep_whole_records_after_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(json.dumps(RECORD).encode() + b'\n{"id": "torn", "resu')
    repair_tail(str(path))
    writer = RecordWriter(str(path))
    writer.write({**RECORD, "id": "r8"})
    writer.close()
    assert [r["id"] for r in read_records(str(path))] == ["r7", "r8"]
