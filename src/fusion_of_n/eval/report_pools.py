"""The report's sections about candidate pools: quality against k and tokens (N-sweep), attribution
shares, and the cost of generate outputs per stage. Same building blocks as
:mod:`fusion_of_n.eval.report_sections`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..records import record_usage
from . import plots
from .plots import OVERALL, Series
from .report_sections import (
    Cell,
    Context,
    Image,
    Item,
    Section,
    Table,
    metric_info,
    number,
    scaled,
    series_of,
    show,
)
from .stats import bootstrap_ci

STAGE_FIELDS = ("calls", "prompt_tokens", "completion_tokens", "seconds")


# -- N-sweep ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepPoint:
    k: int
    quality: float | None
    ci: list[float | None] | None
    tokens: float | None
    n_records: int


def sweep_curves(data: Mapping[str, Any]) -> dict[str, list[SweepPoint]]:
    """Per method, one point per k: the ``summary`` entries (mean over records of the per-record mean
    over seeds, with its CI) when the result has them, else the ``points`` averaged over seeds (CI over
    seeds). Raw units (accuracy 0-1)."""
    curves: dict[str, list[SweepPoint]] = {}
    summary = data.get("summary")
    if isinstance(summary, list) and summary:
        for entry in summary:
            quality = entry.get("quality") or {}
            point = SweepPoint(
                int(entry["k"]),
                number(quality.get("mean")),
                quality.get("ci"),
                number(entry.get("tokens")),
                int(entry.get("n_records") or 0),
            )
            curves.setdefault(str(entry["method"]), []).append(point)
    else:
        cells: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
        for raw in data["points"]:
            cells.setdefault((str(raw["method"]), int(raw["k"])), []).append(raw)
        for (method, k), rows in cells.items():
            values = [v for v in (number(r.get("quality")) for r in rows) if v is not None]
            spent = [v for v in (number(r.get("tokens")) for r in rows) if v is not None]
            ci: list[float | None] | None = [*bootstrap_ci(values)] if len(values) > 1 else None
            mean = sum(values) / len(values) if values else None
            tokens = sum(spent) / len(spent) if spent else None
            size = max(int(r.get("n_records") or 0) for r in rows)
            curves.setdefault(method, []).append(SweepPoint(k, mean, ci, tokens, size))
    return {m: sorted(points, key=lambda p: p.k) for m, points in curves.items()}


def _curve(method: str, points: Sequence[SweepPoint], colour: str, scale: float, by_tokens: bool) -> Series:
    """One method's line: quality (display units) over k, or over tokens with each point labelled k=."""
    cells = [scaled({"v": p.quality, "ci": p.ci}, "v", scale) for p in points]
    return Series(
        method,
        [c[0] for c in cells],
        [c[1] for c in cells],
        colour,
        x=[p.tokens if by_tokens else float(p.k) for p in points],
        notes=[f"k={p.k}" for p in points] if by_tokens else None,
    )


def sweep_sections(items: Sequence[Item], ctx: Context) -> list[Section]:
    """Quality against k (CI bands, and a table) and quality against tokens (CI whiskers)."""
    by_k, by_tokens = Section("Quality against pool size k"), Section("Quality against tokens spent")
    for n, item in enumerate(items, 1):
        label, unit, scale, decimals = metric_info(str(item.data.get("metric") or "Quality"))
        curves = sweep_curves(item.data)
        name, ylabel = Path(item.path).name, f"{label} ({unit})"
        over = "over records (seeds averaged per record)" if item.data.get("summary") else "over seeds"
        by_k.blocks.append(
            f"{name}: {label} per method, {item.data.get('seeds', '?')} subset seed(s) per k; "
            f"points are means, whiskers 95% CIs {over}."
        )
        file = ctx.figure(f"sweep{n}-k.png")
        plots.lines(
            file,
            [_curve(m, points, ctx.colour(m), scale, False) for m, points in curves.items()],
            title=f"{label} against pool size k ({name})",
            xlabel="pool size k (candidates per prompt)",
            ylabel=ylabel,
            integer_x=True,
        )
        rows = [
            [
                m,
                str(p.k),
                show(*scaled({"v": p.quality, "ci": p.ci}, "v", scale), decimals),
                show(p.tokens, None, 0),
                str(p.n_records),
            ]
            for m, points in curves.items()
            for p in points
        ]
        header = ["method", "k", f"{ylabel} [95% CI]", "tokens / record", "records"]
        by_k.blocks += [Image(file.name, f"{label} against k"), Table(header, rows)]
        file = ctx.figure(f"sweep{n}-tokens.png")
        plots.lines(
            file,
            [_curve(m, points, ctx.colour(m), scale, True) for m, points in curves.items()],
            title=f"{label} against tokens spent ({name})",
            xlabel="tokens per record (prompt + completion: the k candidates' sampling share + aggregation)",
            ylabel=ylabel,
        )
        by_tokens.blocks += [
            f"{name}: each point is one k (labelled); whiskers are 95% CIs.",
            Image(file.name, f"{label} against tokens per record"),
        ]
    return [by_k, by_tokens]


# -- attribution --------------------------------------------------------------------------------------

LAYERS = {
    "copied from the top candidate": "#2b6cb0",
    "copied from other candidates": "#90cdf4",
    "novel (in no candidate)": "#f6ad55",
}


def _attribution_plot(
    ctx: Context, file: str, method: str, groups: Sequence[str], per: Mapping[str, Any], source: str
) -> list[Cell]:
    """Draw the stacked shares; the cells (top, other, novel) per group, in display units."""
    top = [scaled(per[g].get("top_share"), "mean", 100.0) for g in groups]
    copied = [scaled(per[g].get("copied"), "mean", 100.0) for g in groups]
    novel = [scaled(per[g].get("novel"), "mean", 100.0) for g in groups]
    other: list[Cell] = [
        (None if c[0] is None or t[0] is None else max(0.0, c[0] - t[0]), None)
        for c, t in zip(copied, top, strict=True)
    ]
    values = [top, other, novel]
    layers = [series_of(name, cells, colour) for (name, colour), cells in zip(LAYERS.items(), values, strict=True)]
    layers = [Series(s.label, s.values, [None] * len(groups), s.colour) for s in layers]  # whiskers drawn apart
    whiskers = [series_of("95% CI: top candidate", top, "#1a365d"), series_of("95% CI: all copied", copied, "#b91c1c")]
    plots.stacked_bars(
        ctx.figure(file),
        groups,
        layers,
        whiskers,
        title=f"Where the {method} answers' text comes from ({source})",
        ylabel="share of answer characters (%)",
        ylim=(0.0, 100.0),
    )
    return [cell for trio in zip(top, other, novel, strict=True) for cell in trio]


def attribution_sections(items: Sequence[Item], ctx: Context) -> list[Section]:
    """Stacked shares per language (top candidate / other candidates / novel) with CI whiskers."""
    sections = []
    for n, item in enumerate(items, 1):
        data, settings = item.data, item.data.get("settings") or {}
        method = str(data.get("method") or "fusion")
        groups = [*sorted(data["by_language"]), OVERALL]
        per = {g: data["overall"] if g == OVERALL else data["by_language"][g] for g in groups}
        cells = _attribution_plot(ctx, f"attribution{n}.png", method, groups, per, Path(item.path).name)
        section = Section(f"Attribution: {Path(item.path).name}")
        section.blocks += [
            f"Per {method} answer, the share of its {settings.get('unit', 'characters')} copied verbatim (runs of "
            f"{settings.get('min_tokens', '?')}+ tokens and {settings.get('min_chars', '?')}+ characters) from the "
            f"candidate it copied most, from the other candidates, or from none; means over "
            f"{data.get('n_records', '?')} answers ({item.path}).",
            Image(f"attribution{n}.png", "attribution shares per language"),
        ]
        rows = [
            [g, str(per[g].get("n", "–")), show(*cells[3 * i]), show(cells[3 * i + 1][0]), show(*cells[3 * i + 2])]
            for i, g in enumerate(groups)
        ]
        header = ["language", "answers", "top candidate % [95% CI]", "other candidates %", "novel % [95% CI]"]
        section.blocks.append(Table(header, rows))
        models = data["overall"].get("by_model") or {}
        if len(models) > 1:
            shares = [[str(m), show(*scaled(c, "mean", 100.0))] for m, c in models.items()]
            section.blocks += [
                "Overall share copied from each model's candidates:",
                Table(["model", "% [95% CI]"], shares),
            ]
        sections.append(section)
    return sections


# -- cost ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cost:
    """Usage summed over a generate output's records, per stage (sampling, each method, total)."""

    records: int
    with_usage: int
    errors: int
    stages: dict[str, dict[str, float]]


def cost_table(records: Sequence[Mapping[str, Any]]) -> Cost:
    """Sum ``usage[stage][field]`` over records for :data:`STAGE_FIELDS`; stages in the order sampling,
    methods as first seen, total."""
    stages: dict[str, dict[str, float]] = {}
    with_usage = 0
    for record in records:
        usage = record_usage(record)
        if not usage:
            continue
        with_usage += 1
        for stage, spent in usage.items():
            row = stages.setdefault(str(stage), dict.fromkeys(STAGE_FIELDS, 0.0))
            for key in STAGE_FIELDS:
                row[key] += number((spent or {}).get(key)) or 0.0
    order = sorted(stages, key=lambda s: (s != "sampling", s == "total"))  # stable: methods keep their order
    errors = sum(1 for r in records if r.get("error"))
    return Cost(len(records), with_usage, errors, {s: stages[s] for s in order})


def cost_sections(items: Sequence[Item], ctx: Context) -> list[Section]:
    section = Section("Cost per stage")
    section.blocks.append(
        "Upstream calls and tokens as the backends reported them, and each stage's seconds, summed over each "
        "output's records and per record (divided by the records that have usage). Records run concurrently, "
        "so summed seconds exceed the run's wall time."
    )
    for item in items:
        cost = cost_table(item.data)
        section.blocks.append(
            f"{item.path}: {cost.records} records, {cost.with_usage} with usage, {cost.errors} failed (error records)."
        )
        per = max(1, cost.with_usage)
        rows = [
            [
                stage,
                *(show(row[k], None, 2 if k == "seconds" else 0) for k in STAGE_FIELDS),
                *(show(row[k] / per, None, 2 if k == "seconds" else 1) for k in STAGE_FIELDS),
            ]
            for stage, row in cost.stages.items()
        ]
        names = ("calls", "prompt tokens", "completion tokens", "seconds")
        section.blocks.append(Table(["stage", *names, *(f"{name} / record" for name in names)], rows))
    return [section]
