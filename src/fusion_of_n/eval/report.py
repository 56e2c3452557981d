"""``fusion-of-n report RESULTS... -o DIR``: one HTML page and its Markdown twin, with PNG plots.

RESULTS are generate outputs (JSONL records with ``candidates`` and ``results``: they give the cost
table), eval results (JSON objects with ``"kind"``: winrate, accuracy, translation, sweep, attribution)
and train manifests (the ``train.json`` a ``fusion-of-n train`` run writes, kind ``fusion-of-n train``:
the students' section), told apart by content. Sections follow :data:`BUILDERS`: the students'
training first, then win rates and accuracy, so a student comparison reads from the top. Every input
is read and checked before anything is written; a section without an input is left out and one line
says so.

``DIR`` gets ``index.html`` (self-contained: inline CSS, ``<img>`` links to the PNGs next to it),
``report.md``, the PNGs and :data:`MANIFEST`, the list of the files the report wrote. A later report
into the same folder replaces or removes only the files on that list and refuses to overwrite any
other file. The plots are drawn in a scratch folder first, so a failure leaves the folder as it was.
"""

from __future__ import annotations

import html
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..records import is_finished, methods_in, read_records, record_methods, record_usage
from .plots import method_colours
from .report_examples import example_sections
from .report_pools import attribution_sections, cost_sections, sweep_sections
from .report_sections import (
    Context,
    Image,
    Item,
    Link,
    Section,
    Table,
    accuracy_sections,
    translation_sections,
    winrate_sections,
)
from .report_train import part, student_names, train_sections

log = logging.getLogger(__name__)

__all__ = ["KINDS", "MANIFEST", "Input", "build_report", "load_input", "render_html", "render_markdown"]

KINDS = ("winrate", "accuracy", "translation", "sweep", "attribution")
"""The eval result kinds the report reads, in the order of their sections."""
TRAIN_KIND = "fusion-of-n train"
"""The ``"kind"`` of a train manifest; the report reads it as the input kind ``train``."""
KIND_OF = {**{kind: kind for kind in KINDS}, TRAIN_KIND: "train"}
NESTED = (dict, list)
REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "train": {"method": str, "base": str, "loss": dict},
    "winrate": dict.fromkeys(("overall", "by_language"), NESTED),
    "accuracy": dict.fromkeys(("languages", "overall"), NESTED),
    "translation": dict.fromkeys(("languages", "overall"), NESTED),
    "sweep": {"points": NESTED},
    "attribution": dict.fromkeys(("overall", "by_language"), NESTED),
}
"""Per input kind, the keys its JSON must have and the type(s) of their values."""
BUILDERS: dict[str, tuple[Callable[[Sequence[Item], Context], list[Section]], str]] = {
    "train": (train_sections, "the students' training"),
    "winrate": (winrate_sections, "win rates"),
    "accuracy": (accuracy_sections, "accuracy"),
    "translation": (translation_sections, "translation metrics"),
    "sweep": (sweep_sections, "quality against k and against tokens"),
    "attribution": (attribution_sections, "attribution shares"),
    "generate": (cost_sections, "cost per stage"),
}
MANIFEST = ".fusion-of-n-report.json"
PAGES = ("index.html", "report.md")
_WHAT = (
    "a generate output (JSONL), a result written by `fusion-of-n eval ... -o FILE` or `fusion-of-n sweep -o FILE`, "
    "or the train.json of a `fusion-of-n train` run"
)
_NOUN = {"generate": "generate output", "train": "train manifest"}  # else "<kind> result"


@dataclass(frozen=True)
class Input:
    path: str
    kind: str  # one of KINDS, "generate" or "train"
    data: Any  # the result object, or the list of a generate output's records

    def describe(self) -> str:
        """One line for the inputs table."""
        data = self.data
        if self.kind == "generate":
            methods = ", ".join(methods_in(data)) or "none"
            return f"generate output: {len(data)} records, methods {methods}"
        if self.kind == "train":
            examples = part(data, "examples")
            return (
                f"train manifest: {data['method']} student of {data['base']}, {examples.get('train', '?')} train "
                f"and {examples.get('eval', '?')} eval examples, status {data.get('status', '?')}"
            )
        if self.kind == "winrate":
            detail = f"judge {data.get('judge', '?')}, {(data.get('counts') or {}).get('pairs', '?')} pairs"
        elif self.kind == "sweep":
            ks, methods = (", ".join(map(str, data.get(key) or ["?"])) for key in ("ks", "methods"))
            detail = f"metric {data.get('metric', '?')}, k = {ks}, methods {methods}"
        elif self.kind == "attribution":
            detail = f"method {data.get('method', '?')}, {data.get('n_records', '?')} answers"
        else:
            detail = "methods " + ", ".join(map(str, data.get("methods") or data["overall"]))
        return f"{self.kind} result: {detail}"


def load_input(path: str) -> Input:
    """One RESULTS file, its kind told by its content; a ConfigError naming the file and the fix."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{path}: no such file; pass {_WHAT}")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as UTF-8 text ({exc}); pass {_WHAT}") from exc
    if not text.strip():
        raise ConfigError(f"{path}: the file is empty; pass {_WHAT}")
    try:
        whole: Any = json.loads(text)
    except ValueError:
        whole = None  # JSONL, or not JSON at all
        try:
            json.loads(next((line for line in text.splitlines() if line.strip()), ""))
        except ValueError:
            raise ConfigError(f"{path}: not JSON; pass {_WHAT}") from None
    if isinstance(whole, dict) and "kind" in whole:
        kind = KIND_OF.get(whole["kind"]) if isinstance(whole["kind"], str) else None
        if kind is None:
            known = ", ".join(KINDS)
            raise ConfigError(
                f"{path}: unknown result kind {whole['kind']!r}; the report reads generate outputs, train manifests "
                f"({TRAIN_KIND!r}) and {known} results"
            )
        absent = [key for key, shape in REQUIRED[kind].items() if not isinstance(whole.get(key), shape)]
        if absent and kind == "train":
            raise ConfigError(
                f"{path}: a train manifest without {absent[0]!r}; pass the train.json that "
                "`fusion-of-n train ... -o DIR` writes into DIR"
            )
        if absent:
            again = "fusion-of-n sweep" if kind == "sweep" else f"fusion-of-n eval {kind}"
            raise ConfigError(
                f"{path}: a {kind} result without {absent[0]!r}; write it again with `{again} ... -o FILE`"
            )
        return Input(path, kind, whole)
    records, generated = 0, []
    for record in read_records(path):  # kept small: the report needs usage, errors and method names
        records += 1
        if is_finished(record) or (record.get("error") and "id" in record):  # a finished row or a failed one
            results = dict.fromkeys(record_methods(record))
            generated.append(
                {
                    "id": record.get("id"),
                    "language": record.get("language"),
                    "usage": record_usage(record),
                    "error": record.get("error"),
                    "results": results,
                }
            )
    if generated and (len(generated) == records or any(record_methods(r) for r in generated)):
        return Input(path, "generate", generated)  # (a run whose rows all failed still has a cost table)
    if whole is not None or records:
        raise ConfigError(f'{path}: JSON, but neither an eval result (no "kind") nor generate records; pass {_WHAT}')
    raise ConfigError(f"{path}: not JSON; pass {_WHAT}")


def _method_names(inputs: Sequence[Input]) -> list[str]:
    """Every student and method name in the inputs, in order of appearance (it decides the spare colours)."""
    names = student_names([i.path for i in inputs if i.kind == "train"])  # the first section's colours
    for item in inputs:
        data = item.data
        if item.kind == "generate":
            names += [m for r in data for m in record_methods(r)]
        elif item.kind == "winrate":
            names.append(str((data.get("system") or {}).get("method") or Path(item.path).stem))
        elif item.kind == "sweep":
            names += [str(p["method"]) for p in data["points"]]
        elif item.kind in ("accuracy", "translation"):
            names += [str(m) for m in data.get("methods") or data["overall"]]
    return names


# -- rendering ----------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;
color:#1a202c;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #e2e8f0;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
th,td{border:1px solid #e2e8f0;padding:.25em .6em;text-align:right;white-space:nowrap}
th{background:#f7fafc}td:first-child,th:first-child{text-align:left}
img{max-width:100%;height:auto;display:block;margin:.6em 0}
.note{color:#4a5568}.wide{overflow-x:auto}
"""


def _html_cell(cell: str | Link) -> str:
    if isinstance(cell, Link):
        return f'<a href="{html.escape(cell.href)}">{html.escape(cell.text)}</a>'
    return html.escape(cell)


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _md_cell(cell: str | Link) -> str:
    if isinstance(cell, Link):
        text = cell.text
        for special in ("\\", "[", "]", "|"):
            text = text.replace(special, "\\" + special)
        return f"[{text}](<{cell.href}>)"
    return cell.replace("|", "\\|")


def _md_table(table: Table) -> str:
    def line(cells: Sequence[str | Link]) -> str:
        return "| " + " | ".join(map(_md_cell, cells)) + " |"

    return "\n".join([line(table.header), line(["---"] * len(table.header)), *map(line, table.rows)])


def render_html(inputs: Sequence[Input], sections: Sequence[Section], omitted: Sequence[str]) -> str:
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="generator" content="fusion-of-n report"><title>Fusion-of-N report</title>',
        f"<style>{CSS}</style></head><body>\n<h1>Fusion-of-N report</h1>",
        "<h2>Inputs</h2>",
        _html_table(Table(["file", "content"], [[i.path, i.describe()] for i in inputs])),
        *(f'<p class="note">{html.escape(line)}</p>' for line in omitted),
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                parts.append(_html_table(block))
            elif isinstance(block, Image):
                parts.append(f'<img src="{html.escape(block.file)}" alt="{html.escape(block.alt)}">')
            else:
                parts.append(f"<p>{html.escape(block)}</p>")
    return "\n".join([*parts, "</body></html>\n"])


def render_markdown(inputs: Sequence[Input], sections: Sequence[Section], omitted: Sequence[str]) -> str:
    parts = [
        "# Fusion-of-N report",
        "## Inputs",
        _md_table(Table(["file", "content"], [[i.path, i.describe()] for i in inputs])),
    ]
    parts += [f"_{line}_" for line in omitted]
    for section in sections:
        parts.append(f"## {section.title}")
        for block in section.blocks:
            if isinstance(block, Table):
                parts.append(_md_table(block))
            elif isinstance(block, Image):
                parts.append(f"![{block.alt}]({block.file})")
            else:
                parts.append(block)
    return "\n\n".join(parts) + "\n"


# -- writing ------------------------------------------------------------------------------------------


def _previous_files(folder: Path) -> set[str]:
    try:
        listed = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {name for name in listed if isinstance(name, str) and "/" not in name and name not in ("", ".", "..")}


def build_report(paths: Sequence[str], output: str | Path, *, viewer_url: str | None = None) -> list[Path]:
    """Read every RESULTS file, draw the plots and write the report into ``output`` (created when
    absent); the paths of the files written, ``index.html`` first. With ``viewer_url`` (a running
    ``fusion-of-n view``, e.g. ``http://127.0.0.1:8765``) an examples section lists rows of the inputs
    with per-row data, each linked to its record page there (:mod:`.report_examples`)."""
    if not paths:
        raise ConfigError(f"no RESULTS given; pass {_WHAT}")
    if viewer_url is not None and not viewer_url.startswith(("http://", "https://")):
        raise ConfigError(f"--viewer-url {viewer_url}: give the viewer's http:// URL, e.g. http://127.0.0.1:8765")
    inputs = [load_input(str(p)) for p in paths]
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"-o {folder}: exists and is not a folder; pass a folder path")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    colours = method_colours(_method_names(inputs))
    scratch = Path(tempfile.mkdtemp(prefix=".report-", dir=folder))
    try:
        ctx = Context(scratch, colours)
        sections: list[Section] = []
        omitted = []
        for kind, (build, what) in BUILDERS.items():
            items = [Item(i.path, i.data) for i in inputs if i.kind == kind]
            if items:
                sections += build(items, ctx)
            else:
                omitted.append(f"No {_NOUN.get(kind, f'{kind} result')} given: {what} left out.")
        if viewer_url:
            sections += example_sections([(i.path, i.kind, i.data) for i in inputs], viewer_url)
        (scratch / PAGES[0]).write_text(render_html(inputs, sections, omitted), encoding="utf-8")
        (scratch / PAGES[1]).write_text(render_markdown(inputs, sections, omitted), encoding="utf-8")
        ours, new = _previous_files(folder), [*PAGES, *ctx.files]
        clash = [name for name in new if (folder / name).exists() and name not in ours]
        if clash:
            raise ConfigError(
                f"-o {folder}: {clash[0]} is there and was not written by a report; choose another folder or move it"
            )
        for name in new:
            (scratch / name).replace(folder / name)
        for stale in ours - set(new):
            (folder / stale).unlink(missing_ok=True)
        (folder / MANIFEST).write_text(json.dumps({"files": new}, indent=1) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        if created:
            folder.rmdir()  # empty again: the failed report leaves nothing behind
        raise
    shutil.rmtree(scratch, ignore_errors=True)
    log.info("report: %d sections, %d plots in %s", len(sections), len(ctx.files), folder)
    return [folder / name for name in new]
