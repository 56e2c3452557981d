"""The report's page model and its score sections: win rates, accuracy and translation metrics.

A section builder takes the inputs of one kind (:class:`Item`: path and the JSON read by
:func:`fusion_of_n.eval.report.load_input`) and a :class:`Context` (the folder the PNGs are drawn in,
the colour of each method) and returns :class:`Section` s of paragraphs, :class:`Table` s and
:class:`Image` s, which ``report`` renders as HTML and Markdown. The sections about candidate pools
(N-sweep, attribution, cost) are in :mod:`fusion_of_n.eval.report_pools`.

Display units: fractions (win rate, accuracy, shares) in percent; chrF and BLEU as sacrebleu gives them
(0-100); COMET as its model does. Intervals are the inputs' own 95% bootstrap CIs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import plots
from .plots import OVERALL, Series

METRICS = {  # name -> (label, unit, scale to display, decimals)
    "accuracy": ("Accuracy", "%", 100.0, 1),
    "correct": ("Answers in the prompt's language", "%", 100.0, 1),
    "chrf": ("chrF", "0-100", 1.0, 1),
    "chrf++": ("chrF++", "0-100", 1.0, 1),
    "bleu": ("BLEU", "0-100", 1.0, 1),
    "comet": ("COMET", "model score", 1.0, 3),
}
Cell = tuple[float | None, list[float | None] | None]  # (value, [low, high]) in display units


@dataclass(frozen=True)
class Link:
    """A table cell that links somewhere (``report --viewer-url``: a record's page in the viewer)."""

    text: str
    href: str


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str | Link]]


@dataclass(frozen=True)
class Image:
    file: str  # next to the page
    alt: str


Block = str | Table | Image


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Context:
    folder: Path  # where the PNGs are drawn
    colours: Mapping[str, str]
    files: list[str] = field(default_factory=list)

    def figure(self, name: str) -> Path:
        self.files.append(name)
        return self.folder / name

    def colour(self, method: str) -> str:
        return self.colours.get(method, "#555555")


@dataclass(frozen=True)
class Item:
    """One input of the kind a builder handles: its path and its data."""

    path: str
    data: Any


# -- formatting ---------------------------------------------------------------------------------------


def number(value: Any) -> float | None:
    """A finite number, else None (JSON null, NaN, text)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return float(value)


def metric_info(name: str) -> tuple[str, str, float, int]:
    return METRICS.get(name, (name, "score", 1.0, 3))


def scaled(cell: Any, key: str, scale: float) -> Cell:
    """(value, ci) of ``{key: value, "ci": [low, high]}`` in display units."""
    if not isinstance(cell, Mapping):
        return None, None
    value = number(cell.get(key))
    ci = cell.get("ci")
    bounds = [number(b) for b in ci] if isinstance(ci, list) and len(ci) == 2 else None
    return (
        None if value is None else value * scale,
        None if bounds is None else [None if b is None else b * scale for b in bounds],
    )


def show(value: float | None, ci: Sequence[float | None] | None = None, decimals: int = 1) -> str:
    """``12.3 [10.1, 14.0]`` (thousands separated: ``40,231``); an unknown value is a dash."""
    if value is None:
        return "–"
    text = f"{value:,.{decimals}f}"
    if ci is not None and ci[0] is not None and ci[1] is not None:
        text += f" [{ci[0]:,.{decimals}f}, {ci[1]:,.{decimals}f}]"
    return text


def series_of(label: str, cells: Sequence[Cell], colour: str, hatch: str | None = None) -> Series:
    return Series(label, [c[0] for c in cells], [c[1] for c in cells], colour, hatch)


def _baselines_note(data: Mapping[str, Any]) -> str:
    described = data.get("baselines") or {}
    if not isinstance(described, Mapping) or not described:
        return ""
    return " Hatched bars are baselines: " + "; ".join(f"{k}: {v}" for k, v in described.items()) + "."


# -- win rates ----------------------------------------------------------------------------------------


def _winrate_label(data: Mapping[str, Any], path: str) -> tuple[str, str]:
    """(the system's method, "fusion vs bon" or "fusion vs refs.jsonl")."""
    system, reference = data.get("system") or {}, data.get("reference") or {}
    method = str(system.get("method") or Path(path).stem)
    other = reference.get("method") or Path(str(reference.get("path") or "reference")).name
    return method, f"{method} vs {other}"


def winrate_sections(items: Sequence[Item], ctx: Context) -> list[Section]:
    """One plot with every win-rate input as a series, and a table per input."""
    section = Section("Win rates (pairwise LLM judge, both orders)")
    groups = [*sorted({lang for item in items for lang in item.data["by_language"]}), OVERALL]
    series, seen = [], set()
    tables: list[Block] = []
    for item in items:
        method, label = _winrate_label(item.data, item.path)
        per = {g: item.data["overall"] if g == OVERALL else item.data["by_language"].get(g) for g in groups}
        cells = [scaled(per[g], "win_rate", 100.0) for g in groups]
        series.append(series_of(label, cells, ctx.colour(method), "//" if method in seen else None))
        seen.add(method)
        counts = ("pairs", "wins", "ties", "losses", "missing")
        rows = [
            [g, *(str(per[g].get(k, "–")) for k in counts), show(*cell)]
            for g, cell in zip(groups, cells, strict=True)
            if per[g]
        ]
        judge = item.data.get("judge", "?")
        tables += [f"{label}, judge {judge} ({item.path}):", Table(["language", *counts, "win rate % [95% CI]"], rows)]
    file = ctx.figure("winrate.png")
    plots.grouped_bars(
        file,
        groups,
        series,
        title="Win rate per language",
        ylabel="win rate (%, a tie counts half)",
        reference=50.0,
        reference_label="50% (parity)",
        ylim=(0, 100),
    )
    section.blocks += [Image(file.name, "win rate per language with 95% CIs"), *tables]
    return [section]


# -- metric tables: accuracy and translation ----------------------------------------------------------


def metric_blocks(
    ctx: Context,
    table: Mapping[str, Any],
    methods: Sequence[str],
    baselines: Sequence[str],
    metric: str,
    file: str,
    source: str,
) -> list[Block]:
    """A grouped bar plot and a table (language x method, ``score [CI]``) of one metric of a
    ``{"languages": {lang: {method: {metric: cell}}}, "overall": {method: {metric: cell}}}`` table."""
    label, unit, scale, decimals = metric_info(metric)
    groups = [*sorted(table["languages"]), OVERALL]
    per = {g: table["overall"] if g == OVERALL else table["languages"][g] for g in groups}
    cells = {m: [scaled((per[g].get(m) or {}).get(metric), "score", scale) for g in groups] for m in methods}
    if all(value is None for m in methods for value, _ in cells[m]):
        return []
    series = [series_of(m, cells[m], ctx.colour(m), "//" if m in baselines else None) for m in methods]
    ylim = {"%": (0.0, 100.0), "0-100": (0.0, None)}.get(unit)  # other scores (COMET) may be negative
    plots.grouped_bars(
        ctx.figure(file),
        groups,
        series,
        title=f"{label} per language and method ({source})",
        ylabel=f"{label} ({unit})",
        ylim=ylim,
    )
    sizes = {
        g: next((c[metric].get("n") for c in per[g].values() if isinstance((c or {}).get(metric), Mapping)), None)
        for g in groups
    }
    rows = [[g, str(sizes[g] or "–"), *(show(*cells[m][i], decimals) for m in methods)] for i, g in enumerate(groups)]
    header = ["language", "n", *(f"{m} (baseline)" if m in baselines else m for m in methods)]
    return [Image(file, f"{label} per language and method"), f"{label} ({unit}) [95% CI]:", Table(header, rows)]


def _methods(data: Mapping[str, Any]) -> list[str]:
    return [str(m) for m in (data.get("methods") or data["overall"])]


def accuracy_sections(items: Sequence[Item], ctx: Context) -> list[Section]:
    sections = []
    for n, item in enumerate(items, 1):
        data, counts, name = item.data, item.data.get("counts") or {}, Path(item.path).name
        section = Section(f"Accuracy: {name}")
        section.blocks.append(
            f"Gold answers at {data.get('answers_field', '?')}; {counts.get('evaluated', '?')} of "
            f"{counts.get('records', '?')} records scored ({item.path})." + _baselines_note(data)
        )
        methods, baselines = _methods(data), list(data.get("baselines") or ())
        section.blocks += metric_blocks(ctx, data, methods, baselines, "accuracy", f"accuracy{n}-accuracy.png", name)
        fidelity = data.get("language_correctness")
        if isinstance(fidelity, Mapping) and fidelity.get("overall"):
            own = [m for m in methods if m in fidelity["overall"]]
            section.blocks.append(
                "Language correctness: the share of answers written in the prompt's language "
                "(answers too short or mixed to tell are left out)."
            )
            section.blocks += metric_blocks(ctx, fidelity, own, [], "correct", f"accuracy{n}-language.png", name)
        sections.append(section)
    return sections


def translation_sections(items: Sequence[Item], ctx: Context) -> list[Section]:
    sections = []
    for n, item in enumerate(items, 1):
        data, counts, name = item.data, item.data.get("counts") or {}, Path(item.path).name
        section = Section(f"Translation: {name}")
        section.blocks.append(
            f"Corpus scores over {counts.get('evaluated', '?')} segments ({item.path})." + _baselines_note(data)
        )
        methods, baselines = _methods(data), list(data.get("baselines") or ())
        found = {k for cells in data["overall"].values() for k in (cells or {})}
        for metric in data.get("metrics") or sorted(found):
            file = f"translation{n}-{metric.replace('+', 'p')}.png"
            section.blocks += metric_blocks(ctx, data, methods, baselines, metric, file, name)
        sections.append(section)
    return sections
