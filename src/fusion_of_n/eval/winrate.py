"""Pairwise LLM-judge win rates with bootstrap confidence intervals (``fusion-of-n eval winrate``).

A *pair* is one prompt with two answers: the system's (``results[METHOD].text`` of a generate output)
and a reference (a reference file joined by ``id``, or a second method of the same output in
head-to-head mode). The judge (``prompts/pairwise.txt``) sees the prompt and the two answers as
Response A and Response B and names the better one, or a tie.

Both orders, always. Every pair is judged twice, ``system_first`` (A = system, B = reference) and
``reference_first`` (A = reference, B = system), so a judge that prefers a position cannot move the
result. The two verdicts, read from the system's side, combine as:

- the same verdict twice (win+win, loss+loss, tie+tie) gives that verdict;
- any disagreement (win+loss, win+tie, loss+tie) gives a tie;
- a missing verdict in either order makes the pair *missing*: it counts in ``missing`` and in no
  win rate. Two identical answers are a tie without asking the judge.

Reading a verdict: the reply is matched against :data:`VERDICT_FORMATS`, in order; the first format
that matches decides. If its matches name different verdicts ("[[A]] or [[B]]", or a reply that
parrots the prompt's "A if Response A is better, B if Response B is better") the reply is ambiguous.
A tie in words counts only in a short reply. No verdict: the judge is asked once more in a short
follow-up turn (:data:`FOLLOW_UP`); still none, or an upstream error: that order's verdict is missing.
A verdict is never guessed.

Per-pair scores are 1 (win), 0.5 (tie), 0 (loss); ``win_rate = (wins + 0.5 * ties) / (wins + ties +
losses)`` is their mean, with a seeded percentile-bootstrap interval over pairs, overall and per
record ``language`` ("unknown" when the record has none).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..backends import Backend, resolve_backend
from ..errors import ConfigError
from ..records import methods_in, read_checked_records, read_records, record_chat, record_result, result_text
from ..scorers.judge import render_instruction
from ..types import Usage
from .pairwise import (
    RULE,
    SCORES,
    Pair,
    PairJudgement,
    judge_pairs,
)
from .stats import bootstrap_ci

logger = logging.getLogger(__name__)

WINRATE_FIELDS = ("id", "results")
"""What a generate record needs here (the judge compares answers; the pool is not read)."""
REFERENCE_FIELDS = ("reference", "text", "answer")
"""Fields of a reference row tried in order when no ``reference_method`` is given."""


def _group(judgements: Sequence[PairJudgement], seed: int, resamples: int, confidence: float) -> dict[str, Any]:
    counts = Counter(j.outcome for j in judgements)
    scores = [SCORES[j.outcome] for j in judgements if j.outcome != "missing"]
    low, high = bootstrap_ci(scores, seed=seed, resamples=resamples, confidence=confidence) if scores else (None, None)
    return {
        "pairs": len(judgements),
        "wins": counts["win"],
        "ties": counts["tie"],
        "losses": counts["loss"],
        "missing": counts["missing"],
        "win_rate": sum(scores) / len(scores) if scores else None,
        "ci": [low, high],
    }


def summarize(
    judgements: Sequence[PairJudgement], *, seed: int = 0, resamples: int = 2000, confidence: float = 0.95
) -> dict[str, Any]:
    """``{"overall": GROUP, "by_language": {lang: GROUP}}``; a GROUP holds pairs, wins, ties, losses,
    missing, win_rate (None when nothing was judged) and ci [low, high] (None, None likewise)."""
    by_language: dict[str, list[PairJudgement]] = {}
    for judgement in judgements:
        by_language.setdefault(judgement.language, []).append(judgement)
    return {
        "overall": _group(judgements, seed, resamples, confidence),
        "by_language": {
            lang: _group(group, seed, resamples, confidence) for lang, group in sorted(by_language.items())
        },
    }


# -- pairs from files ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Joined:
    """Pairs to judge, the rows that could not be paired (``{"id", "reason"}``) and rows read per side."""

    pairs: list[Pair]
    unpaired: list[dict[str, Any]]
    rows: dict[str, int]


def join_pairs(
    system_rows: Sequence[Mapping[str, Any]],
    reference_rows: Sequence[Mapping[str, Any]],
    method: str,
    reference_method: str | None = None,
) -> Joined:
    """Pair ``results[method].text`` of each system record with its reference row (same ``id``).

    The reference is ``results[reference_method].text`` when given, else the first non-empty field of
    :data:`REFERENCE_FIELDS`. Rows without a partner or a usable text are returned as ``unpaired``."""
    unpaired: list[dict[str, Any]] = []
    systems = _by_id(system_rows, "system", unpaired)
    same = reference_rows is system_rows  # head to head: one file, two methods
    references = systems if same else _by_id(reference_rows, "reference", unpaired)
    pairs: list[Pair] = []
    for key, record in systems.items():
        other = references.get(key)
        texts = [_method_text(record, method, "system"), _reference_text(other or {}, reference_method)]
        reasons = [reason for _, reason in texts if reason]
        instruction = _instruction(record)
        reason = "no reference row" if other is None else reasons[0] if reasons else None
        if reason or not instruction:
            unpaired.append({"id": key, "reason": reason or "system: no prompt or messages"})
            continue
        language = record.get("language") or (other or {}).get("language")
        pairs.append(Pair(key, instruction, texts[0][0] or "", texts[1][0] or "", str(language) if language else None))
    unpaired += [{"id": key, "reason": "not in the system output"} for key in references if key not in systems]
    return Joined(pairs, unpaired, {"system": len(system_rows), "reference": len(reference_rows)})


def _by_id(
    rows: Sequence[Mapping[str, Any]], side: str, unpaired: list[dict[str, Any]]
) -> dict[str, Mapping[str, Any]]:
    index: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        key = None if row.get("id") is None else str(row["id"])
        if key is None or key in index:
            unpaired.append({"id": key, "reason": f"{side}: " + ("row without id" if key is None else "duplicate id")})
        else:
            index[key] = row
    return index


def _method_text(record: Mapping[str, Any], method: str, side: str) -> tuple[str | None, str | None]:
    if record.get("error"):
        return None, f"{side}: error record"
    if record_result(record, method) is None:
        return None, f"{side}: no {method} result"
    return result_text(record, method), None


def _reference_text(row: Mapping[str, Any], method: str | None) -> tuple[str | None, str | None]:
    if method:
        return _method_text(row, method, "reference")
    for name in REFERENCE_FIELDS:
        value = row.get(name)
        value = str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        if isinstance(value, str) and value.strip():
            return value, None
    return None, "reference: no non-empty " + "/".join(REFERENCE_FIELDS) + " field"


def _instruction(record: Mapping[str, Any]) -> str:
    """The prompt as the judge sees it: the row's conversation (without the run's system prompt)."""
    return render_instruction(record_chat(record))


def _read(path: str, what: str, methods: Sequence[str | None], *, generated: bool = True) -> list[dict[str, Any]]:
    """The records of ``path`` (a generate output, checked as read, unless not ``generated``: then plain
    reference rows); a ConfigError when there are none or no record has one of ``methods``."""
    rows = list(read_checked_records(path, need=WINRATE_FIELDS) if generated else read_records(path))
    if not rows:
        raise ConfigError(f"{what} {path!r} is missing or holds no JSON records; check the path")
    found = set(methods_in(rows))
    for method in filter(None, methods):
        if method not in found:
            have = ", ".join(sorted(found)) or "none (no record has results)"
            raise ConfigError(f"no record in {path!r} has results for method {method!r}; methods found: {have}")
    return rows


# -- the whole evaluation -----------------------------------------------------------------------------


def evaluate(
    joined: Joined,
    judge: str | Backend,
    env: Mapping[str, str] | None = None,
    *,
    max_tokens: int = 512,
    seed: int = 0,
    resamples: int = 2000,
    **info: Any,
) -> dict[str, Any]:
    """Judge ``joined.pairs`` and build the JSON result (``info``: mode, methods, system, reference).

    ``judge`` is a model spec (built with ``env`` and closed after) or a Backend (left open)."""
    if not joined.pairs:
        reasons = dict(Counter(str(row["reason"]) for row in joined.unpaired))
        raise ConfigError(f"no pair to judge, every row was left out: {reasons}; check the ids, methods and fields")
    if joined.unpaired:
        logger.warning("%d row(s) could not be paired and are not judged (see 'unpaired')", len(joined.unpaired))

    async def run() -> list[PairJudgement]:
        async with resolve_backend(judge, env) as backend:
            return await judge_pairs(joined.pairs, backend, max_tokens=max_tokens)

    judgements = asyncio.run(run())
    missing = sum(j.outcome == "missing" for j in judgements)
    if missing:
        logger.warning(
            "%d of %d pairs have no verdict in one or both orders and count as missing (see 'pairs'); "
            "an upstream error or a judge that does not follow the reply format (try a larger judge)",
            missing,
            len(judgements),
        )
    reasons = Counter(str(row["reason"]) for row in joined.unpaired)
    return {
        "kind": "winrate",
        "judge": judge if isinstance(judge, str) else judge.name,
        **info,
        "rule": RULE,
        "bootstrap": {"seed": seed, "resamples": resamples, "confidence": 0.95},
        "counts": {"rows": joined.rows, "pairs": len(judgements), "unpaired": len(joined.unpaired)},
        "unpaired": {"by_reason": dict(sorted(reasons.items())), "rows": joined.unpaired},
        **summarize(judgements, seed=seed, resamples=resamples),
        "usage": sum((j.usage for j in judgements), Usage()).to_dict(),
        "pairs": [j.to_dict() for j in judgements],
    }


def winrate(
    system_path: str,
    reference_path: str,
    judge_spec: str | Backend,
    method: str = "fusion",
    env: Mapping[str, str] | None = None,
    *,
    reference_method: str | None = None,
    max_tokens: int = 512,
    seed: int = 0,
    resamples: int = 2000,
) -> dict[str, Any]:
    """Win rate of ``method``'s answers in a generate output against reference rows joined by id.

    ``max_tokens`` limits each judge reply; ``seed`` and ``resamples`` drive the bootstrap."""
    system_rows = _read(system_path, "SYSTEM", [method])
    reference_rows = _read(reference_path, "--reference", [reference_method], generated=reference_method is not None)
    joined = join_pairs(system_rows, reference_rows, method, reference_method)
    system, reference = {"path": system_path, "method": method}, {"path": reference_path, "method": reference_method}
    options = {"max_tokens": max_tokens, "seed": seed, "resamples": resamples}
    return evaluate(
        joined, judge_spec, env, mode="reference", methods=[method], system=system, reference=reference, **options
    )


def head_to_head(
    output_path: str,
    methods: str | Sequence[str],
    judge_spec: str | Backend,
    env: Mapping[str, str] | None = None,
    *,
    max_tokens: int = 512,
    seed: int = 0,
    resamples: int = 2000,
) -> dict[str, Any]:
    """Win rate of the first of two methods (``"fusion,bon"``) against the second in one generate output."""
    names = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods) if m.strip()]
    if len(names) != 2 or names[0] == names[1]:
        raise ConfigError(f"head-to-head takes two different methods, e.g. 'fusion,bon'; got {methods!r}")
    rows = _read(output_path, "OUTPUT", names)
    joined = join_pairs(rows, rows, names[0], names[1])
    system, reference = {"path": output_path, "method": names[0]}, {"path": output_path, "method": names[1]}
    options = {"max_tokens": max_tokens, "seed": seed, "resamples": resamples}
    return evaluate(
        joined, judge_spec, env, mode="head_to_head", methods=names, system=system, reference=reference, **options
    )


def format_table(result: Mapping[str, Any]) -> str:
    """A small text table: one line per language, then overall."""
    lines = [f"{'language':<10}{'pairs':>7}{'wins':>6}{'ties':>6}{'losses':>8}{'missing':>9}  win rate  95% CI"]
    for name, group in [*result["by_language"].items(), ("overall", result["overall"])]:
        rate = "-" if group["win_rate"] is None else f"{group['win_rate']:.3f}"
        low, high = group["ci"]
        ci = "-" if low is None else f"[{low:.3f}, {high:.3f}]"
        counts = f"{group['pairs']:>7}{group['wins']:>6}{group['ties']:>6}{group['losses']:>8}{group['missing']:>9}"
        lines.append(f"{name:<10}{counts}  {rate:>8}  {ci}")
    return "\n".join(lines)
