"""What every eval result shares: its strict JSON form. Records are read through
:mod:`fusion_of_n.records` (``read_generate_records`` is its checked reader, kept under this name)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..records import RECORD_FIELDS
from ..records import read_checked_records as read_generate_records

__all__ = ["RECORD_FIELDS", "dump_result", "read_generate_records", "save_result"]


def _json_safe(value: Any) -> Any:
    """NaN (a mean over nothing) becomes null: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def dump_result(result: Mapping[str, Any]) -> str:
    """One eval result as strict JSON text (indent 1, NaN as null, non-ASCII kept), without a final newline."""
    return json.dumps(_json_safe(result), ensure_ascii=False, indent=1, allow_nan=False)


def save_result(result: Mapping[str, Any], path: str | Path) -> None:
    """Write :func:`dump_result` of ``result`` to ``path`` as UTF-8, with a final newline."""
    Path(path).write_text(dump_result(result) + "\n", encoding="utf-8")
