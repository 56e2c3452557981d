"""The report's examples section (``report --viewer-url URL``): per input, a few rows worth opening,
each id linked to that row's page in a running ``fusion-of-n view`` (``URL/record/<id>``).

Which rows: a winrate result's losses (then ties), an accuracy result's rows some method got wrong, an
attribution result's most novel answers, a generate output's failed rows (then its first rows). Only
inputs with per-row data give examples (translation and sweep results and train manifests have none).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .report_sections import Link, Section, Table

EXAMPLES = 10
"""Rows listed per input."""


def record_url(viewer: str, record_id: Any) -> str:
    """The viewer's page of one record: ``http://127.0.0.1:8765/record/<id>``."""
    return f"{viewer.rstrip('/')}/record/{quote(str(record_id), safe='')}"


def example_sections(inputs: Sequence[tuple[str, str, Any]], viewer: str) -> list[Section]:
    """One section with a table per input (``(path, kind, data)``) that has per-row data."""
    section = Section("Examples (open in the viewer)")
    section.blocks.append(
        f"Rows worth a look, each linked to its page in `fusion-of-n view` at {viewer} (start it on the same "
        "generate output, with the eval results as --eval, for the links to work)."
    )
    for path, kind, data in inputs:
        picker = PICKERS.get(kind)
        rows = picker(data) if picker is not None else []
        if rows:
            section.blocks.append(f"{Path(path).name} ({kind}):")
            linked = [[Link(str(row_id), record_url(viewer, row_id)), language, why] for row_id, language, why in rows]
            section.blocks.append(Table(["id", "language", "why"], linked))
    return [section] if len(section.blocks) > 1 else []


Row = tuple[Any, str, str]  # (id, language, why it is listed)


def _winrate(data: Mapping[str, Any]) -> list[Row]:
    method = str((data.get("system") or {}).get("method") or "system")
    pairs = [p for p in data.get("pairs") or () if isinstance(p, Mapping) and p.get("id") is not None]
    chosen = [p for outcome in ("loss", "tie") for p in pairs if p.get("outcome") == outcome][:EXAMPLES]
    return [(p["id"], str(p.get("language") or "–"), f"{method}: {p['outcome']}") for p in chosen]


def _accuracy(data: Mapping[str, Any]) -> list[Row]:
    baselines = set(data.get("baselines") or ())
    rows = []
    for row in data.get("records") or ():
        wrong = [m for m, right in (row.get("correct") or {}).items() if not right and m not in baselines]
        if wrong and row.get("id") is not None:
            rows.append((row["id"], str(row.get("language") or "–"), "wrong: " + ", ".join(wrong)))
    return rows[:EXAMPLES]


def _attribution(data: Mapping[str, Any]) -> list[Row]:
    rows = [r for r in data.get("records") or () if isinstance(r.get("novel"), int | float) and r.get("id") is not None]
    rows.sort(key=lambda r: -float(r["novel"]))
    return [
        (r["id"], str(r.get("language") or "–"), f"{100 * r['novel']:.0f}% novel, top candidate {r.get('top_index')}")
        for r in rows[:EXAMPLES]
    ]


def _generate(data: Sequence[Mapping[str, Any]]) -> list[Row]:
    rows = [r for r in data if r.get("id") is not None]
    failed = [(r["id"], str(r.get("language") or "–"), f"failed: {_error(r['error'])}") for r in rows if r.get("error")]
    finished = [(r["id"], str(r.get("language") or "–"), "finished") for r in rows if not r.get("error")]
    return (failed + finished)[:EXAMPLES]


def _error(error: Any) -> str:
    if isinstance(error, Mapping):
        return ": ".join(str(error[k]) for k in ("stage", "message") if error.get(k))
    return str(error)


PICKERS: dict[str, Any] = {
    "winrate": _winrate,
    "accuracy": _accuracy,
    "attribution": _attribution,
    "generate": _generate,
}
