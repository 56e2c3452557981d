"""Eval results shown next to the records they judged: per row and method, the verdicts of
``fusion-of-n eval winrate | accuracy | attribution ... -o FILE``.

- winrate: ``pairs`` (every judged row): the system method's ``outcome`` (win, tie, loss, missing) and,
  head to head or against a second generate file's method, the other side's opposite outcome;
- accuracy: ``records`` (each scored row): per method ``correct`` or ``wrong`` (baselines such as
  ``maj@k`` are shown on the record page, not filtered on);
- attribution: ``records``: the method's copied shares and novel share (no verdict).

A result is matched to the DATA file it names (``system.path``, ``output``, ``input``: the same file,
else the only one with that name); with one DATA file, to that one. Rows are joined by ``id``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .index import RecordsFile

KINDS = ("winrate", "accuracy", "attribution")
OPPOSITE = {"win": "loss", "loss": "win", "tie": "tie", "missing": "missing"}
_WRITE = "`fusion-of-n eval winrate | accuracy | attribution ... -o FILE`"


@dataclass(frozen=True)
class Pair:
    """One judged pair of a winrate result: the system side's outcome against the reference side."""

    id: str
    system: tuple[int | None, str]  # (file, method)
    reference: tuple[int | None, str | None]
    outcome: str
    detail: dict[str, Any]


@dataclass
class EvalFile:
    number: int
    path: str
    kind: str
    files: list[int] = field(default_factory=list)  # the DATA files it was matched to
    rows: int = 0
    note: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "eval": self.number,
            "path": self.path,
            "kind": self.kind,
            "files": self.files,
            "rows": self.rows,
            "note": self.note,
        }


class Verdicts:
    """Every ``--eval`` result, joined to the indexed ``files`` by path and id."""

    def __init__(self, paths: Sequence[str], files: Sequence[RecordsFile]) -> None:
        self.files = files
        self.evals: list[EvalFile] = []
        self.entries: dict[tuple[int, str], dict[str, list[dict[str, Any]]]] = {}
        self.pairs: dict[str, list[Pair]] = {}
        self._positions: dict[tuple[int, str | None, str], set[int]] = {}
        for path in paths:
            data = load_eval(path)
            item = EvalFile(len(self.evals), path, data["kind"])
            self.evals.append(item)
            getattr(self, "_" + item.kind)(item, data)

    # -- reading each kind ---------------------------------------------------------------------------

    def _winrate(self, item: EvalFile, data: dict[str, Any]) -> None:
        system, reference = _object(data.get("system")), _object(data.get("reference"))
        methods = data.get("methods") if isinstance(data.get("methods"), list) else []
        system_method = str(system.get("method") or (methods[0] if methods else "fusion"))
        reference_method = reference.get("method") if isinstance(reference.get("method"), str) else None
        system_file = self._match(item, system.get("path"))
        if data.get("mode") == "head_to_head":
            reference_file = system_file
        else:
            reference_file = self._match(item, reference.get("path"), fallback=False) if reference_method else None
        reference_name = reference_method or Path(str(reference.get("path") or "reference")).name
        pairs = data.get("pairs")
        if not isinstance(pairs, list):
            item.note = f"no per-row verdicts ('pairs'); write it again with {_WRITE}"
            return
        for pair in pairs:
            if not isinstance(pair, dict) or pair.get("id") is None:
                continue
            row_id, outcome = str(pair["id"]), str(pair.get("outcome"))
            detail = {
                "kind": "winrate",
                "eval": item.number,
                "judge": data.get("judge"),
                "system_first": pair.get("system_first"),
                "reference_first": pair.get("reference_first"),
            }
            item.rows += 1
            self._add(system_file, row_id, system_method, {**detail, "verdict": outcome, "vs": reference_name})
            if reference_file is not None and reference_method is not None:
                opposite = OPPOSITE.get(outcome, outcome)
                self._add(
                    reference_file, row_id, reference_method, {**detail, "verdict": opposite, "vs": system_method}
                )
            pair_of = Pair(row_id, (system_file, system_method), (reference_file, reference_method), outcome, detail)
            self.pairs.setdefault(row_id, []).append(pair_of)

    def _accuracy(self, item: EvalFile, data: dict[str, Any]) -> None:
        file = self._match(item, data.get("output"))
        records = data.get("records")
        if not isinstance(records, list):
            item.note = (
                "no per-row data ('records'): it was written before the accuracy result had them; "
                f"run `fusion-of-n eval accuracy ... -o {Path(item.path).name}` again"
            )
            return
        baselines = set(data.get("baselines") or ())
        for row in records:
            if not isinstance(row, dict) or row.get("id") is None:
                continue
            item.rows += 1
            answers, correct = _object(row.get("answers")), _object(row.get("correct"))
            for method, right in correct.items():
                entry = {
                    "kind": "accuracy",
                    "eval": item.number,
                    "verdict": "correct" if right else "wrong",
                    "answer": answers.get(method),
                    "gold": row.get("gold"),
                }
                if method in baselines:
                    entry["baseline"] = True
                self._add(file, str(row["id"]), str(method), entry)

    def _attribution(self, item: EvalFile, data: dict[str, Any]) -> None:
        file = self._match(item, data.get("input"))
        method = str(data.get("method") or "fusion")
        for row in data.get("records") or ():
            if not isinstance(row, dict) or row.get("id") is None:
                continue
            item.rows += 1
            keep = ("shares", "by_model", "novel", "top_index", "top_share")
            entry = {"kind": "attribution", "eval": item.number, "verdict": None, **{k: row.get(k) for k in keep}}
            self._add(file, str(row["id"]), method, entry)

    def _match(self, item: EvalFile, named: Any, *, fallback: bool = True) -> int | None:
        """The DATA file the result names (same file, else the only one of that name); else the only
        DATA file (``fallback``); else None, said in the result's note."""
        found = None
        if isinstance(named, str) and named:
            for where in (Path(named), Path(item.path).parent / named):
                found = next((f.number for f in self.files if _same(where, f.path)), None)
                if found is not None:
                    break
            if found is None:
                same_name = [f.number for f in self.files if Path(f.path).name == Path(named).name]
                found = same_name[0] if len(same_name) == 1 else None
        if found is None and fallback and len(self.files) == 1:
            found = 0
        if found is None and fallback:
            item.note = f"it names {named!r}, which is not one of the DATA files: its verdicts are not shown"
        elif found is not None and found not in item.files:
            item.files.append(found)
        return found

    def _add(self, file: int | None, row_id: str, method: str, entry: dict[str, Any]) -> None:
        if file is not None:
            self.entries.setdefault((file, row_id), {}).setdefault(method, []).append(entry)

    # -- answers -------------------------------------------------------------------------------------

    def for_row(self, file: int, row_id: str) -> dict[str, str]:
        """Per method, its first verdict (in --eval order) for the list (the filter sees them all)."""
        found = {}
        for method, entries in self.entries.get((file, row_id), {}).items():
            verdict = next((e["verdict"] for e in entries if e["verdict"] and not e.get("baseline")), None)
            if verdict is not None:
                found[method] = verdict
        return found

    def for_record(self, file: int, row_id: str) -> dict[str, dict[str, Any]]:
        """Per method: ``verdict`` (as in the list) and every eval's entry for it."""
        row = self.for_row(file, row_id)
        return {m: {"verdict": row.get(m), "evals": e} for m, e in self.entries.get((file, row_id), {}).items()}

    def positions(self, file: RecordsFile, verdict: str, method: str | None) -> set[int]:
        """The positions of ``file``'s rows with ``verdict`` from any eval (for ``method``, or for any
        method; baselines such as ``maj@k`` are not methods of the record)."""
        key = (file.number, method, verdict)
        if key not in self._positions:
            found = set()
            for (number, row_id), methods in self.entries.items():
                position = file.position(row_id) if number == file.number else None
                if position is not None and any(
                    entry["verdict"] == verdict and not entry.get("baseline")
                    for name, entries in methods.items()
                    if method in (None, name)
                    for entry in entries
                ):
                    found.add(position)
            self._positions[key] = found
        return self._positions[key]

    def facets(self, file: int) -> list[str]:
        """Every verdict the evals give ``file``'s rows (the list's verdict filter)."""
        return sorted(
            {
                entry["verdict"]
                for (number, _), methods in self.entries.items()
                if number == file
                for entries in methods.values()
                for entry in entries
                if entry["verdict"] and not entry.get("baseline")
            }
        )

    def between(self, row_id: str, a: tuple[int, str], b: tuple[int, str]) -> list[dict[str, Any]]:
        """The judge's verdicts between ``a`` and ``b`` (file, method) on one row, from ``a``'s side."""
        found = []
        for pair in self.pairs.get(row_id, ()):
            if (pair.system, pair.reference) == (a, b):
                outcome = pair.outcome
            elif (pair.system, pair.reference) == (b, a):
                outcome = OPPOSITE.get(pair.outcome, pair.outcome)
            else:
                continue
            found.append(
                {
                    **pair.detail,
                    "path": self.evals[pair.detail["eval"]].path,
                    "a": outcome,
                    "b": OPPOSITE.get(outcome, outcome),
                }
            )
        return found

    def describe(self) -> list[dict[str, Any]]:
        return [item.describe() for item in self.evals]


def load_eval(path: str) -> dict[str, Any]:
    """One ``--eval`` result; a ConfigError naming the file and the fix."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--eval {path}: no such file; pass a result written by {_WRITE}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--eval {path}: cannot be read ({exc}); pass a result written by {_WRITE}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(f"--eval {path}: not a JSON eval result; pass a result written by {_WRITE}") from None
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in KINDS:
        what = f"a {kind!r} result" if isinstance(kind, str) else "JSON without a result 'kind'"
        raise ConfigError(
            f"--eval {path}: {what}; the viewer shows winrate, accuracy and attribution results ({_WRITE})"
        )
    return _object(data)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _same(where: Path, path: str) -> bool:
    try:
        return where.exists() and where.samefile(path)
    except OSError:
        return False
