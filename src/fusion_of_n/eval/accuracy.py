"""Answer accuracy of ``generate`` records (math, multiple choice) and whether answers use the prompt's language.

The gold answer is the record field at a dotted path (``meta.answer``), normalized like predictions;
a prediction is :func:`fusion_of_n.answers.extract_answer` of a method's text (the extraction ``vote``
uses). Two answers match when their normalized forms are equal or, both being numbers, their values
are (exact rationals: "26" == "26.0", "1/2" == "0.5"). No answer found = wrong (and counted).

Besides every method in ``results``, three baselines are scored from the candidate pool:

- ``maj@k``: the answer majority vote would pick (same rule: most frequent, ties to the lowest pool
  index) over the candidates ``vote`` sees by default: the non-excluded ones, or all when none is usable;
- ``pass@k``: any candidate of the WHOLE pool (excluded ones included) is right: the oracle coverage,
  an upper bound for any selector;
- ``single``: candidate 0 alone, the one-sample baseline.

Language correctness: an answer is in the right language when the language detected in its text,
with digits, LaTeX and math symbols stripped, is the prompt's (the record's ``language``, else the
prompt's detected one). Answers too short or mixed to tell are ``undetermined``, not wrong, and the
fraction is over the determined ones. Detection is py3langid's: close languages can be confused.

Scores are fractions in [0, 1] with seeded percentile-bootstrap intervals over records. ``records``
holds each scored record's ``id``, ``language``, normalized ``gold``, every method's and baseline's
extracted answer (``answers``) and whether it is right (``correct``): what ``fusion-of-n view --eval``
shows per row.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

from ..answers import extract_answer, majority_answer, normalize_number
from ..errors import ConfigError
from ..language import detect_language, language_code
from ..records import (
    methods_in,
    pool_size,
    record_methods,
    record_pool,
    record_prompt_text,
    result_text,
)
from .stats import mean_ci

__all__ = [
    "answer_language",
    "answers_match",
    "evaluate_accuracy",
    "field_value",
    "majority_answer",
    "normalize_gold",
]

BASELINES = ("maj@k", "pass@k", "single")
_GOLD_LETTER = re.compile(r"^[(\[]?([A-Ja-j])[)\].:]?$")
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$|\\\[.*?\\\]|\\\(.*?\\\)", re.DOTALL)
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+\*?")
_SYMBOLS = re.compile(r"[{}\[\]()_^#*=+\-/×÷<>|`~%$€£¥₹.,:;!?]")


def field_value(record: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` ("meta.answer", "meta.choices.0") of ``record``; None when absent."""
    value: Any = record
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def normalize_gold(value: Any) -> str | None:
    """A gold answer in the form :func:`extract_answer` gives predictions (None when there is none)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return normalize_number(str(value))
    text = str(value).strip()
    if not text:
        return None
    letter = _GOLD_LETTER.match(text)
    if letter:
        return letter.group(1).upper()
    return extract_answer(text) or " ".join(text.replace("**", "").split()).strip(" .,;:!?").lower() or None


def _number(answer: str) -> Fraction | None:
    try:
        return Fraction(answer)
    except (ValueError, ZeroDivisionError):
        return None


def answers_match(prediction: str | None, gold: str | None) -> bool:
    """Equal normalized answers, or equal numbers ("26" == "26.0"); None never matches."""
    if prediction is None or gold is None:
        return False
    if prediction == gold:
        return True
    value = _number(prediction)
    return value is not None and value == _number(gold)


def answer_language(text: str) -> str | None:
    """The detected language of ``text`` without its digits, LaTeX and math symbols; None when unsure."""
    text = _LATEX_COMMAND.sub(" ", _MATH.sub(" ", text))
    text = "".join(" " if unicodedata.category(ch) == "Nd" else ch for ch in text)
    return detect_language(" ".join(_SYMBOLS.sub(" ", text).split()))


def _summary(values: Sequence[float], bootstrap: Mapping[str, Any]) -> dict[str, Any]:
    if not values:
        return {"score": None, "ci": None, "n": 0}
    stats = mean_ci(values, **bootstrap)
    return {"score": stats["mean"], "ci": stats["ci"], "n": stats["n"]}


def _record_outcomes(record: Mapping[str, Any], gold: str, methods: Sequence[str]) -> dict[str, str | None]:
    """Per method and baseline, the answer it gives (``pass@k``: the gold when any candidate has it)."""
    candidates = sorted(record_pool(record).candidates, key=lambda c: c.index)
    answers = [extract_answer(c.text) for c in candidates]
    usable = [a for c, a in zip(candidates, answers, strict=True) if not c.excluded]
    predicted = {m: extract_answer(result_text(record, m)) for m in methods}
    predicted["maj@k"] = majority_answer(usable if any(not c.excluded for c in candidates) else answers)
    hit = next((a for a in answers if answers_match(a, gold)), None)
    predicted["pass@k"] = hit or next((a for a in answers if a is not None), None)
    predicted["single"] = answers[0] if answers else None
    return predicted


def evaluate_accuracy(
    records: Iterable[Mapping[str, Any]],
    field: str,
    *,
    seed: int = 0,
    resamples: int = 1000,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """The ``"kind": "accuracy"`` result for ``records`` with gold answers at ``field`` (module docstring)."""
    rows = list(records)
    usable = [r for r in rows if r.get("error") is None]
    methods = methods_in(usable)
    systems = [*methods, *BASELINES]
    counts: dict[str, Any] = {"records": len(rows), "error": len(rows) - len(usable), "no_gold": 0}
    missing: Counter[str] = Counter()
    correct: dict[str, dict[str, list[float]]] = {}  # language -> system -> 0/1 per record
    no_answer: dict[str, Counter[str]] = {}
    in_language: dict[str, dict[str, list[str]]] = {}  # language -> method -> "correct"|"wrong"|"undetermined"
    pool_sizes = []
    scored: list[dict[str, Any]] = []  # per scored record: its answers and whether each is right
    for record in usable:
        gold = normalize_gold(field_value(record, field))
        present = set(record_methods(record))
        absent = [m for m in methods if m not in present]
        missing.update(absent)
        if gold is None or absent:
            counts["no_gold"] += gold is None
            continue
        prompt = record_prompt_text(record)
        language = language_code(record.get("language") or "") or detect_language(prompt) or "unknown"
        pool_sizes.append(pool_size(record))
        outcomes = _record_outcomes(record, gold, methods)
        for system, answer in outcomes.items():
            correct.setdefault(language, {s: [] for s in systems})[system].append(float(answers_match(answer, gold)))
            no_answer.setdefault(language, Counter())[system] += answer is None
        scored.append(
            {
                "id": record.get("id"),
                "language": language,
                "gold": gold,
                "answers": outcomes,
                "correct": {system: answers_match(answer, gold) for system, answer in outcomes.items()},
            }
        )
        for m in methods:
            found = answer_language(result_text(record, m))
            verdict = (
                "undetermined"
                if found is None or language == "unknown"
                else ("correct" if found == language else "wrong")
            )
            in_language.setdefault(language, {s: [] for s in methods})[m].append(verdict)
    counts["missing_method"] = dict(missing)
    counts["evaluated"] = len(pool_sizes)
    if not pool_sizes:
        raise ConfigError(
            f"no record could be scored ({counts}); check that --answers {field!r} names the gold answer's field "
            f"(e.g. meta.answer) and that the records have results"
        )
    bootstrap = {"seed": seed, "resamples": resamples, "confidence": confidence}
    languages = sorted(correct)

    def accuracy(langs: Sequence[str]) -> dict[str, Any]:
        return {
            s: {
                "accuracy": _summary([v for lang in langs for v in correct[lang][s]], bootstrap),
                "no_answer": sum(no_answer[lang][s] for lang in langs),
            }
            for s in systems
        }

    def fidelity(langs: Sequence[str]) -> dict[str, Any]:
        table = {}
        for m in methods:
            verdicts = [v for lang in langs for v in in_language[lang][m]]
            determined = [float(v == "correct") for v in verdicts if v != "undetermined"]
            table[m] = {
                "correct": _summary(determined, bootstrap),
                **{f"n_{kind}": verdicts.count(kind) for kind in ("correct", "wrong", "undetermined")},
            }
        return table

    return {
        "kind": "accuracy",
        "answers_field": field,
        "methods": systems,
        "baselines": {
            "maj@k": "the majority-vote answer over the usable candidates (what `vote` picks)",
            "pass@k": "any candidate of the whole pool (excluded included) is right: oracle coverage",
            "single": "candidate 0 alone",
        },
        "k": {"min": min(pool_sizes), "max": max(pool_sizes)},
        "bootstrap": {**bootstrap, "unit": "record", "statistic": "mean"},
        "counts": counts,
        "languages": {lang: accuracy([lang]) for lang in languages},
        "overall": accuracy(languages),
        "language_correctness": {
            "languages": {lang: fidelity([lang]) for lang in languages},
            "overall": fidelity(languages),
        },
        "records": scored,
    }
