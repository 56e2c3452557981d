"""The report's training section: the students that ``fusion-of-n train`` fine-tuned, read from the
``train.json`` manifest each run writes into its output folder (schema version 1).

A student is named by its manifest's folder. The section has one plot with every student's train loss
(solid) and eval loss (dashed, markers) against the optimizer step, one colour per student, and a table
of what each student was trained on and where its losses ended. Loss pairs are ``[global_step, loss]``;
pairs that are not two finite numbers are skipped. Same building blocks as
:mod:`fusion_of_n.eval.report_sections`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import plots
from .plots import Series
from .report_sections import Context, Image, Item, Section, Table, number, show

PLOT = "train-loss.png"
HEADER = (
    "student",
    "method",
    "base",
    "train examples",
    "eval examples",
    "excluded",
    "epochs / steps",
    "final train loss",
    "last eval loss",
    "seconds",
)


def student_names(paths: Sequence[str]) -> list[str]:
    """Each manifest's folder name; the path as given where two folders share a name (``a/out`` and
    ``b/out``), numbered where the same path is given twice."""
    files = [Path(p).absolute() for p in paths]
    folders = [file.parent.name or p for file, p in zip(files, paths, strict=True)]
    taken = Counter(folder for folder, _ in set(zip(folders, files, strict=True)))  # other files, same name
    names = [p if taken[folder] > 1 else folder for p, folder in zip(paths, folders, strict=True)]
    seen: Counter[str] = Counter()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return unique


def part(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``data[key]`` when it is an object, else an empty one (optional manifest fields are read leniently)."""
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def loss_points(data: Mapping[str, Any], split: str) -> list[tuple[float, float]]:
    """The ``(step, loss)`` pairs of ``loss[split]`` ("train" or "eval"), by step."""
    points = []
    for pair in part(data, "loss").get(split) or ():
        if isinstance(pair, list | tuple) and len(pair) == 2:
            step, loss = number(pair[0]), number(pair[1])
            if step is not None and loss is not None and math.isfinite(step) and math.isfinite(loss):
                points.append((step, loss))
    return sorted(points)


def _count(value: Any) -> str:
    return show(number(value), None, 0)


def _schedule(data: Mapping[str, Any], last_step: float | None) -> str:
    """``2 / 14``: epochs asked for and the last step logged; ``max 50`` replaces the epochs when the run
    was capped by steps (max_steps overrides epochs)."""
    hyper = part(data, "hyperparameters")
    cap = number(hyper.get("max_steps"))
    epochs = f"max {cap:g} steps" if cap else show(number(hyper.get("epochs")), None, 0)
    return f"{epochs} / {show(last_step, None, 0)}"


def _row(name: str, data: Mapping[str, Any], train: Sequence[tuple[float, float]], evals: Sequence[Any]) -> list[str]:
    examples = part(data, "examples")
    return [
        name,
        str(data["method"]),
        str(data["base"]),
        _count(examples.get("train")),
        _count(examples.get("eval")),
        _count(examples.get("excluded")),
        _schedule(data, train[-1][0] if train else None),
        show(train[-1][1] if train else None, None, 3),
        show(evals[-1][1] if evals else None, None, 3),
        show(number(data.get("seconds")), None, 0),
    ]


def _curve(label: str, points: Sequence[tuple[float, float]], colour: str) -> Series:
    return Series(label, [p[1] for p in points], [None] * len(points), colour, x=[p[0] for p in points])


def train_sections(items: Sequence[Item], ctx: Context) -> list[Section]:
    """One plot of every student's losses against steps and one table row per student."""
    section = Section("Students (fine-tuning)")
    names = student_names([item.path for item in items])
    curves, rows, running = [], [], []
    for name, item in zip(names, items, strict=True):
        train, evals = loss_points(item.data, "train"), loss_points(item.data, "eval")
        colour = ctx.colour(name)
        curves.append((_curve(name, train, colour), _curve(name, evals, colour)))
        rows.append(_row(name, item.data, train, evals))
        if item.data.get("status") == "running":
            running.append(name)
    section.blocks.append(
        "Each student is a base model fine-tuned by `fusion-of-n train` on one method's answers. The plot shows "
        "each student's train loss (solid) and its loss on the held-out eval examples (dashed, markers) against "
        "the optimizer step; the table gives the last value of each (– where none was logged)."
    )
    if any(c.values for pair in curves for c in pair):
        plots.loss_curves(ctx.figure(PLOT), curves, title="Training loss of each student")
        section.blocks.append(Image(PLOT, "train and eval loss of each student against steps"))
    else:
        section.blocks.append("No loss was logged by any student yet: nothing to plot.")
    section.blocks.append(Table(HEADER, rows))
    if running:
        section.blocks.append(
            f"Still training when its manifest was read (status 'running'): {', '.join(running)}; "
            "the losses shown are the ones logged so far."
        )
    return [section]
