"""What every eval command shares: reading a record's prompt and writing its JSON result."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

__all__ = ["prompt_text", "write_result"]


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
