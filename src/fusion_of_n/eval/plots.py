"""The report's figures: grouped bars with CI whiskers, lines with CI bands, stacked shares, loss curves.

Pure drawing: every function takes numbers already in display units and writes one PNG (Agg, ``DPI``).
Colours come from :func:`method_colours`, so a method keeps its colour in every plot of a report.
Values may be None (nothing to draw); a CI is ``[low, high]`` or None.
matplotlib is imported lazily (the ``eval`` extra).
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingDependency

DPI = 110
OVERALL = "overall"
KNOWN_COLOURS = {
    "fusion": "#1f77b4",
    "bon": "#ff7f0e",
    "vote": "#2ca02c",
    "usc": "#d62728",
    "mbr": "#9467bd",
    "random": "#8c564b",
    "first": "#e377c2",
    "maj@k": "#17becf",
    "pass@k": "#7f7f7f",
    "oracle": "#7f7f7f",
    "single": "#bcbd22",
    "random_pick": "#bcbd22",
}
"""Fixed colours for the built-in methods and baselines (oracle-like baselines share grey)."""
SPARE_COLOURS = (
    "#393b79",
    "#e7969c",
    "#637939",
    "#ad494a",
    "#3182bd",
    "#fd8d3c",
    "#74c476",
    "#9e9ac8",
    "#843c39",
    "#d6616b",
    "#7b4173",
    "#bd9e39",
    "#31a354",
    "#6baed6",
)

Interval = Sequence[float | None] | None


@dataclass(frozen=True)
class Series:
    """One bar per group (or one line): its values, CIs and look."""

    label: str
    values: Sequence[float | None]
    cis: Sequence[Interval]
    colour: str
    hatch: str | None = None
    x: Sequence[float | None] | None = None  # lines only: x per value
    notes: Sequence[str] | None = None  # lines only: a short label at each point


def method_colours(names: Iterable[str]) -> dict[str, str]:
    """A colour per name: the fixed one of a built-in method, else the next spare colour in order."""
    colours: dict[str, str] = {}
    spare = 0
    for name in names:
        if name in colours:
            continue
        if name in KNOWN_COLOURS:
            colours[name] = KNOWN_COLOURS[name]
        else:
            colours[name] = SPARE_COLOURS[spare % len(SPARE_COLOURS)]
            spare += 1
    return colours


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependency("the report's plots need matplotlib: pip install 'fusion-of-n[eval]'") from exc
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)  # an Agg canvas of its own: no pyplot, no global backend state
    return figure


def _present(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def _whiskers(ax: Any, xs: Sequence[float], series: Series, colour: str, **style: Any) -> None:
    """Vertical CI whiskers at ``xs`` (one per value of ``series``) where the value and its CI are known."""
    kept: list[tuple[float, float, float, float]] = []
    for x, value, ci in zip(xs, series.values, series.cis, strict=True):
        if value is None or not _present(value) or ci is None or len(ci) != 2:
            continue
        low, high = ci
        if low is None or high is None or not (_present(low) and _present(high)):
            continue
        kept.append((x, value, max(0.0, value - low), max(0.0, high - value)))
    if kept:
        below, above = [k[2] for k in kept], [k[3] for k in kept]
        xs_, ys = [k[0] for k in kept], [k[1] for k in kept]
        ax.errorbar(xs_, ys, yerr=[below, above], fmt="none", ecolor=colour, capsize=2.5, **style)


def _offset(number: int, count: int, step: float) -> float:
    """Where the ``number``-th of ``count`` side-by-side marks sits, ``step`` apart and centred on 0."""
    return (number - (count - 1) / 2) * step


def _finish(ax: Any, figure: Any, path: Path, title: str, ylabel: str, legend_title: str | None = None) -> None:
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.legend(title=legend_title, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    figure.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")


def _limit(ax: Any, ylim: tuple[float, float | None] | None) -> None:
    """Fix the y range with a little headroom above ``high`` (a bar at 100% stays visible) and no tick
    past it; ``high=None`` fixes only the bottom."""
    if ylim is None:
        return
    low, high = ylim
    if high is None:
        ax.set_ylim(bottom=low)
        return
    ax.set_ylim(low, high + 0.04 * (high - low))
    ax.set_yticks([t for t in ax.get_yticks() if low <= t <= high])


def _group_axis(ax: Any, groups: Sequence[str], xlabel: str) -> None:
    """Group names as ticks, wrapped and rotated when they would collide; ``overall`` set apart."""
    labels = [textwrap.fill(g, 12) for g in groups]
    crowded = len(groups) > 8 or sum(len(g) for g in groups) > 60
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(
        labels, rotation=35 if crowded else 0, ha="right" if crowded else "center", rotation_mode="anchor"
    )
    ax.set_xlim(-0.6, len(groups) - 0.4)
    if len(groups) > 1 and groups[-1] == OVERALL:
        ax.axvline(len(groups) - 1.5, color="#999999", linestyle=":", linewidth=1)
    ax.set_xlabel(xlabel)


def grouped_bars(
    path: Path,
    groups: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    ylabel: str,
    xlabel: str = "language",
    reference: float | None = None,
    reference_label: str = "",
    ylim: tuple[float, float | None] | None = None,
) -> None:
    """One group of bars per entry of ``groups`` (a bar per series) with black CI whiskers; an
    ``overall`` group at the end is set apart by a dotted line."""
    figure = _figure(min(16.0, max(6.5, 2.0 + 0.32 * len(groups) * max(2, len(series)))), 4.6)
    ax = figure.subplots()
    bar = 0.8 / max(1, len(series))
    for number, one in enumerate(series):
        xs = [g + _offset(number, len(series), bar) for g in range(len(groups))]
        shown = [(x, v) for x, v in zip(xs, one.values, strict=True) if v is not None and _present(v)]
        ax.bar(
            [x for x, _ in shown],
            [v for _, v in shown],
            bar * 0.92,
            label=one.label,
            color=one.colour,
            hatch=one.hatch,
            edgecolor="white",
            linewidth=0,
        )
        _whiskers(ax, xs, one, "#222222", elinewidth=1)
    if reference is not None:
        ax.axhline(reference, color="#444444", linestyle="--", linewidth=1, label=reference_label or None)
    _limit(ax, ylim)
    _group_axis(ax, groups, xlabel)
    _finish(ax, figure, path, title, ylabel)


def _dodge(xs: Sequence[float], count: int, log: bool, integer_x: bool) -> float:
    """The sideways offset between neighbouring series (in log units on a log axis): 1.2% of the x range,
    and on a discrete axis (k) at most 40% of the smallest gap shared among the series."""
    spots = sorted({math.log(x) if log else x for x in xs})
    if len(spots) < 2:
        return 0.0
    step = 0.012 * (spots[-1] - spots[0])
    if integer_x:
        step = min(step, 0.4 * min(b - a for a, b in itertools.pairwise(spots)) / max(1, count))
    return step


def lines(
    path: Path,
    series: Sequence[Series],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    integer_x: bool = False,
) -> None:
    """One line per series over its ``x`` with vertical CI whiskers, each point's note (e.g. ``k=3``)
    written once beside it. Series are dodged sideways a little so equal points and their whiskers stay
    apart; an x range of x100 or more is drawn in log scale."""
    figure = _figure(8.5, 4.8)
    ax = figure.subplots()
    drawn = [
        sorted(
            (x, v, ci, note)
            for x, v, ci, note in zip(
                one.x or [], one.values, one.cis, one.notes or [""] * len(one.values), strict=True
            )
            if x is not None and v is not None and _present(x) and _present(v)
        )
        for one in series
    ]
    every_x = [row[0] for rows in drawn for row in rows]
    log = bool(every_x) and min(every_x) > 0 and max(every_x) / min(every_x) >= 100
    step = _dodge(every_x, len(series), log, integer_x)
    labels: dict[tuple[float, str], tuple[float, float]] = {}  # (x, note) -> the rightmost dodged point
    for number, (one, rows) in enumerate(zip(series, drawn, strict=True)):
        if not rows:
            continue
        shift = _offset(number, len(series), step)
        xs = [r[0] * math.exp(shift) if log else r[0] + shift for r in rows]
        ys = [r[1] for r in rows]
        ax.plot(xs, ys, marker="o", markersize=4, color=one.colour, label=one.label, linewidth=1.6)
        _whiskers(ax, xs, Series(one.label, ys, [r[2] for r in rows], one.colour), one.colour, elinewidth=1)
        for (x, y, _, note), at in zip(rows, xs, strict=True):
            key = (round(x, 6), note)
            if note and (key not in labels or at > labels[key][0]):  # methods with equal cost share one label
                labels[key] = (at, y)
    for (_, note), point in labels.items():
        ax.annotate(
            note,
            point,
            textcoords="offset points",
            xytext=(7, -3),
            fontsize=7.5,
            color="#222222",
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
        )
    if log:
        ax.set_xscale("log")
    if integer_x and every_x:
        ticks = sorted(set(every_x))
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
    ax.margins(x=0.07)  # room for the notes right of the last points
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.8)
    _finish(ax, figure, path, title, ylabel, "method")


def stacked_bars(
    path: Path,
    groups: Sequence[str],
    layers: Sequence[Series],
    whiskers: Sequence[Series],
    *,
    title: str,
    ylabel: str,
    xlabel: str = "language",
    ylim: tuple[float, float | None] | None = None,
) -> None:
    """One stacked bar per group (``layers`` bottom to top); each of ``whiskers`` marks a cumulative
    boundary (its values) with its CI, in its colour."""
    figure = _figure(min(14.0, max(6.5, 2.5 + 0.6 * len(groups))), 4.6)
    ax = figure.subplots()
    bottom = [0.0] * len(groups)
    for layer in layers:
        heights = [v if v is not None and _present(v) else 0.0 for v in layer.values]
        ax.bar(
            range(len(groups)),
            heights,
            0.6,
            bottom=bottom,
            label=layer.label,
            color=layer.colour,
            hatch=layer.hatch,
            edgecolor="white",
            linewidth=0.5,
        )
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    for number, mark in enumerate(whiskers):  # side by side, so that neighbouring boundaries stay apart
        xs = [g + _offset(number, len(whiskers), 0.12) for g in range(len(groups))]
        _whiskers(ax, xs, mark, mark.colour, elinewidth=1.4, label=mark.label)
    _limit(ax, ylim)
    _group_axis(ax, groups, xlabel)
    _finish(ax, figure, path, title, ylabel)


def loss_curves(
    path: Path,
    curves: Sequence[tuple[Series, Series]],
    *,
    title: str,
    xlabel: str = "optimizer step",
    ylabel: str = "loss",
) -> None:
    """Per student a ``(train, eval)`` pair of series over their ``x`` (steps), both in the student's colour:
    train loss as a solid line, eval loss dashed with markers (a lone point gets a marker too). The legend
    names each student once, then the two line styles in grey."""
    figure = _figure(8.5, 4.8)
    ax = figure.subplots()
    dashed = False
    for pair in curves:
        named = False
        for one, style in zip(pair, ("-", "--"), strict=True):
            rows = [(x, v) for x, v in zip(one.x or [], one.values, strict=True) if _present(x) and _present(v)]
            if not rows:
                continue
            eval_ = style == "--"
            dashed |= eval_
            ax.plot(
                [r[0] for r in rows],
                [r[1] for r in rows],
                color=one.colour,
                linestyle=style,
                marker="o" if eval_ or len(rows) == 1 else None,
                markersize=4,
                linewidth=1.6,
                label=None if named else one.label,
            )
            named = True
    ax.plot([], [], color="#555555", linewidth=1.6, label="train loss")
    if dashed:
        ax.plot([], [], color="#555555", linewidth=1.6, linestyle="--", marker="o", markersize=4, label="eval loss")
    from matplotlib.ticker import MaxNLocator  # matplotlib is there: _figure imported it

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.8)
    _finish(ax, figure, path, title, ylabel, "student")
