"""What every eval command shares: reading generate records (checked), a record's prompt, and writing
its JSON result."""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError
from ..pipeline.records import RECORD_FIELDS, read_json_lines, record_problem

__all__ = ["RECORD_FIELDS", "prompt_text", "read_generate_records", "write_result"]

REPAIR = (
    "regenerate the record with fusion-of-n generate (delete that line and re-run generate with the same -o: "
    "only the missing rows are redone), or repair the line"
)


def read_generate_records(path: str, need: Collection[str] = RECORD_FIELDS) -> Iterator[dict[str, Any]]:
    """The records of a ``fusion-of-n generate`` OUTPUT, each checked as it is read
    (:func:`~fusion_of_n.pipeline.records.record_problem`): a finished record must hold the fields in
    ``need`` and every field must have its type. The first that does not is a ConfigError naming the
    file, the line, the record's id, the field and the fix, so no eval ends in a bare KeyError.

    A torn last line (a run killed mid-write) and lines that are not JSON are skipped, as generate does."""
    for line, record in read_json_lines(path):
        problem = record_problem(record, need)
        if problem:
            record_id = record.get("id") if isinstance(record, Mapping) else None
            shown = isinstance(record_id, str | int) and not isinstance(record_id, bool) and record_id != ""
            which = f" (record {record_id!r})" if shown else ""
            raise ConfigError(f"{path}, line {line}{which}: {problem}; {REPAIR}")
        yield record


def prompt_text(record: Mapping[str, Any]) -> str:
    """A record's prompt: its ``prompt``, else the last user message."""
    if record.get("prompt"):
        return str(record["prompt"])
    users = [m.get("content", "") for m in record.get("messages") or [] if m.get("role") == "user"]
    return str(users[-1]) if users else ""


def _json_safe(value: Any) -> Any:
    """NaN (a mean over nothing) becomes null: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_result(result: Mapping[str, Any], path: str | None, *, announce: bool = False) -> None:
    """One eval result as strict UTF-8 JSON (indent 1, NaN as null) to ``path``, or to stdout when it is
    None; ``announce`` also says "wrote PATH" on stderr after writing a file."""
    text = json.dumps(_json_safe(result), ensure_ascii=False, indent=1, allow_nan=False)
    if path is None:
        click.echo(text)
        return
    Path(path).write_text(text + "\n", encoding="utf-8")
    if announce:
        click.echo(f"wrote {path}", err=True)
