"""What every eval command shares: writing its JSON result. Records are read through
:mod:`fusion_of_n.records` (``read_generate_records`` is its checked reader, kept under this name)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from ..records import RECORD_FIELDS
from ..records import read_checked_records as read_generate_records

__all__ = ["RECORD_FIELDS", "read_generate_records", "write_result"]


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
