"""Translation metrics for ``generate`` records: chrF, chrF++ and BLEU (sacrebleu), optional COMET.

Records are joined to reference rows ``{"id", "reference"[, "source"]}`` by id. Every method in the
records' ``results`` is scored, plus two baselines built from the candidate pool:

- ``oracle``: per segment, the candidate with the best segment score on ``oracle_metric`` (chrF by
  default; ties go to the lowest index), taken from the WHOLE pool, excluded (empty or truncated)
  candidates included, so it bounds every selector whatever ``include_flagged`` was. Fusion writes new
  text and can beat it.
- ``random_pick``: per segment, one candidate drawn from the pool a selector sees by default (the
  non-excluded candidates, or all when none is usable), seeded by ``seed`` and the record id.

Scores are CORPUS scores (sacrebleu's ``corpus_score`` exactly, computed from the same per-segment
sufficient statistics). Their intervals come from the percentile bootstrap over segments that
recomputes the corpus score from the summed statistics of each resample (what sacrebleu's own
``--confidence`` does), through :func:`fusion_of_n.eval.stats.bootstrap_ci`; the same seed gives every
method the same resamples. ``overall`` pools the statistics of all languages (each segment tokenized
for its own language), so it is a corpus score over every segment, not a mean of language scores.

BLEU tokenization is sacrebleu's default (``13a``) except zh -> ``zh``, ja -> ``ja-mecab`` and
ko -> ``ko-mecab`` when their MeCab packages are installed, else ``char`` for ja and ko.
Segment-level BLEU (``segments=True`` and the oracle) uses ``effective_order=True``.

A record's language is its ``language`` field (the target language), else the reference's detected one.
COMET (any ``unbabel-comet`` checkpoint, XCOMET included) is the mean segment score, with a mean CI;
its source is the reference row's ``source``, else the record's prompt.
"""

from __future__ import annotations

import functools
import json
import logging
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sacrebleu.metrics.base import Metric
from sacrebleu.metrics.bleu import BLEU
from sacrebleu.metrics.chrf import CHRF

from ..errors import ConfigError
from ..language import detect_language, language_code
from ..records import (
    methods_in,
    pool_size,
    record_methods,
    record_pool,
    record_prompt_text,
    record_result,
    result_text,
)
from ..types import Candidate
from .comet import CometScorer
from .stats import bootstrap_ci

__all__ = [
    "METRICS",
    "Reference",
    "bleu_tokenizer",
    "corpus_metric",
    "evaluate_translation",
    "read_references",
]

log = logging.getLogger(__name__)

METRICS = ("chrf", "chrf++", "bleu")
BASELINES = ("oracle", "random_pick")


@dataclass(frozen=True)
class Reference:
    reference: str
    source: str | None = None


@functools.cache
def _tokenizer_works(name: str) -> bool:
    try:
        BLEU(tokenize=name)
    except (RuntimeError, ImportError, AssertionError) as exc:  # sacrebleu raises these when MeCab is missing
        log.info("BLEU tokenizer %s unavailable (%s); using 'char'", name, str(exc).strip().splitlines()[0])
        return False
    return True


def bleu_tokenizer(language: str | None) -> str:
    """The sacrebleu BLEU tokenizer used for ``language`` (see the module docstring)."""
    if language == "zh":
        return "zh"
    if language in ("ja", "ko"):
        mecab = f"{language}-mecab"
        return mecab if _tokenizer_works(mecab) else "char"
    return BLEU.TOKENIZER_DEFAULT


def corpus_metric(name: str, language: str | None = None, *, segment: bool = False) -> Metric:
    """The sacrebleu metric object for ``name`` in ``language`` (``segment``: sentence-level BLEU)."""
    if name == "chrf":
        return CHRF()
    if name == "chrf++":
        return CHRF(word_order=2)
    if name == "bleu":
        return BLEU(tokenize=bleu_tokenizer(language), effective_order=segment)
    raise ConfigError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")


def _statistics(metric: Metric, hypotheses: Sequence[str], references: Sequence[str]) -> list[list[float]]:
    # sacrebleu's own bootstrap works on these sufficient statistics; summing rows = a corpus
    return [list(row) for row in metric._extract_corpus_statistics(list(hypotheses), [list(references)])]


def _corpus_score(metric: Metric, rows: Sequence[Sequence[float]]) -> float:
    return float(metric._aggregate_and_compute([list(row) for row in rows]).score)


def _corpus_ci(metric: Metric, rows: Sequence[Sequence[float]], **bootstrap: Any) -> list[float]:
    table = np.asarray(rows, dtype=float)

    def statistic(picks: np.ndarray) -> float:
        return float(metric._compute_score_from_stats(table[picks.astype(int)].sum(axis=0)).score)

    return list(bootstrap_ci(range(len(table)), statistic, **bootstrap))


def read_references(path: str) -> dict[str, Reference]:
    """``{id: Reference}`` from a JSONL file of ``{"id", "reference"[, "source"]}`` rows."""
    found: dict[str, Reference] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read --references {path}: {exc.strerror or exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f'{path}:{number} is not JSON; write one {{"id", "reference"}} object a line') from exc
        if not isinstance(row, dict) or "id" not in row or not isinstance(row.get("reference"), str):
            raise ConfigError(f'{path}:{number}: expected {{"id": ..., "reference": "text"}}, got {line[:80]!r}')
        key = str(row["id"])
        if key in found:
            raise ConfigError(f"{path}:{number}: id {key!r} appears twice; references must have unique ids")
        source = row.get("source")
        found[key] = Reference(row["reference"], source if isinstance(source, str) else None)
    return found


def _best_candidate(candidates: Sequence[Candidate], reference: str, metric: Metric) -> int:
    scores = [metric.sentence_score(c.text, [reference]).score for c in candidates]
    return int(np.argmax(scores))  # the first of equal best


def _random_candidate(candidates: Sequence[Candidate], seed: int, record_id: str) -> int:
    usable = [i for i, c in enumerate(candidates) if not c.excluded] or list(range(len(candidates)))
    return random.Random(f"{seed}:{record_id}").choice(usable)


def _selects(records: Sequence[Mapping[str, Any]], method: str) -> bool:
    """A selection method returns one candidate (``chosen`` set) on every record that has its result."""
    entries = (record_result(r, method) for r in records)
    return all(entry.get("chosen") is not None for entry in entries if entry is not None)


@dataclass(frozen=True)
class _Segment:
    id: str
    language: str
    reference: str
    source: str
    texts: dict[str, str]  # method or baseline -> hypothesis
    picks: dict[str, int]  # baseline -> the candidate's pool index


def _segments(
    records: list[dict[str, Any]], references: Mapping[str, Reference], oracle_metric: str, seed: int
) -> tuple[list[_Segment], list[str], list[str], dict[str, Any]]:
    usable = [r for r in records if r.get("error") is None]
    methods = methods_in(usable)
    selection = [m for m in methods if _selects(usable, m)]
    counts: dict[str, Any] = {"records": len(records), "error": len(records) - len(usable), "no_reference": 0}
    missing: Counter[str] = Counter()
    segments = []
    oracle_metrics: dict[str, Metric] = {}
    for record in usable:
        key = str(record.get("id"))
        ref = references.get(key)
        present = set(record_methods(record))
        absent = [m for m in methods if m not in present]
        missing.update(absent)
        if ref is None or absent or not pool_size(record):
            counts["no_reference"] += ref is None
            continue
        language = language_code(record.get("language") or "") or detect_language(ref.reference) or "unknown"
        if language not in oracle_metrics:
            oracle_metrics[language] = corpus_metric(oracle_metric, language, segment=True)
        candidates = sorted(record_pool(record).candidates, key=lambda c: c.index)
        positions = {
            "oracle": _best_candidate(candidates, ref.reference, oracle_metrics[language]),
            "random_pick": _random_candidate(candidates, seed, key),
        }
        texts = {m: result_text(record, m) for m in methods}
        texts.update({name: candidates[i].text for name, i in positions.items()})
        picks = {name: candidates[i].index for name, i in positions.items()}
        source = ref.source or record_prompt_text(record)
        segments.append(_Segment(key, language, ref.reference, source, texts, picks))
    counts["no_candidates"] = sum(1 for r in usable if not pool_size(r))
    counts["missing_method"] = dict(missing)
    counts["unused_references"] = len(set(references) - {str(r.get("id")) for r in records})
    counts["evaluated"] = len(segments)
    return segments, [*methods, *BASELINES], selection, counts


def _comet_scores(segments: Sequence[_Segment], systems: Sequence[str], comet: CometScorer) -> dict[str, list[float]]:
    triples = {(s.source, s.texts[m], s.reference) for s in segments for m in systems}  # score each text once
    ordered = sorted(triples)
    values = comet([{"src": src, "mt": mt, "ref": ref} for src, mt, ref in ordered])
    if len(values) != len(ordered):
        raise ConfigError(f"the COMET model returned {len(values)} scores for {len(ordered)} segments")
    lookup = dict(zip(ordered, values, strict=True))
    return {m: [float(lookup[(s.source, s.texts[m], s.reference)]) for s in segments] for m in systems}


def _score_metric(
    name: str,
    segs: Sequence[_Segment],
    systems: Sequence[str],
    table: dict[str, dict[str, dict[str, Any]]],
    per_segment: dict[str, dict[str, list[float]]],
    bootstrap: Mapping[str, Any],
) -> None:
    """Fill ``table[language][system][name]`` (and ``overall``) and the per-segment scores of one metric."""
    pooled: dict[str, list[list[float]]] = {m: [] for m in systems}
    for lang in sorted({s.language for s in segs}):
        group = [s for s in segs if s.language == lang]
        metric, seg_metric = corpus_metric(name, lang), corpus_metric(name, lang, segment=True)
        for m in systems:
            stats = _statistics(metric, [s.texts[m] for s in group], [s.reference for s in group])
            pooled[m].extend(stats)
            ci = _corpus_ci(metric, stats, **bootstrap)
            table[lang][m][name] = {"score": _corpus_score(metric, stats), "ci": ci, "n": len(stats)}
            scores = [float(seg_metric._compute_score_from_stats(row).score) for row in stats]
            per_segment[m].setdefault(name, []).extend(scores)
    overall = corpus_metric(name)  # a score from statistics does not depend on the tokenizer
    for m in systems:
        if len(table) == 2:  # one language: overall is the same corpus
            table["overall"][m][name] = next(iter(table.values()))[m][name]
            continue
        ci = _corpus_ci(overall, pooled[m], **bootstrap)
        table["overall"][m][name] = {"score": _corpus_score(overall, pooled[m]), "ci": ci, "n": len(pooled[m])}


def evaluate_translation(
    records: Iterable[dict[str, Any]],
    references: Mapping[str, Reference],
    *,
    oracle_metric: str = "chrf",
    comet: CometScorer | None = None,
    seed: int = 0,
    resamples: int = 1000,
    confidence: float = 0.95,
    segments: bool = False,
) -> dict[str, Any]:
    """The ``"kind": "translation"`` result for ``records`` (see the module docstring and the README)."""
    if oracle_metric not in METRICS:
        raise ConfigError(f"unknown --oracle-metric {oracle_metric!r}; choose one of {', '.join(METRICS)}")
    rows = list(records)
    segs, systems, selection, counts = _segments(rows, references, oracle_metric, seed)
    segs.sort(key=lambda s: s.language)  # stable: per-segment lists below follow this order
    if not segs:
        first = next((str(r.get("id")) for r in rows), None)
        raise ConfigError(
            f"no record could be scored ({counts}); check that record ids (first: {first!r}) match the reference "
            f"ids (first: {next(iter(references), None)!r}) and that the records have results"
        )
    bootstrap = {"resamples": resamples, "confidence": confidence, "seed": seed}
    languages = sorted({s.language for s in segs})
    table: dict[str, dict[str, dict[str, Any]]] = {lang: {m: {} for m in systems} for lang in [*languages, "overall"]}
    per_segment: dict[str, dict[str, list[float]]] = {m: {} for m in systems}
    for name in METRICS:
        _score_metric(name, segs, systems, table, per_segment, bootstrap)
    metrics = list(METRICS)
    if comet is not None:
        metrics.append("comet")
        comet_values = _comet_scores(segs, systems, comet)
        for lang in [*languages, "overall"]:
            idx = [i for i, s in enumerate(segs) if lang in ("overall", s.language)]
            for m in systems:
                values = [comet_values[m][i] for i in idx]
                ci = list(bootstrap_ci(values, **bootstrap))  # type: ignore[arg-type]
                table[lang][m]["comet"] = {"score": float(np.mean(values)), "ci": ci, "n": len(values)}
                per_segment[m]["comet"] = comet_values[m]
    result: dict[str, Any] = {
        "kind": "translation",
        "metrics": metrics,
        "methods": systems,
        "selection_methods": selection,
        "baselines": {
            "oracle": f"best candidate per segment by segment {oracle_metric}, whole pool (excluded included)",
            "random_pick": f"one usable candidate per segment, seeded ({seed} + record id)",
        },
        "oracle_metric": oracle_metric,
        "tokenizers": {lang: bleu_tokenizer(lang) for lang in languages},
        "bootstrap": {**bootstrap, "unit": "segment", "statistic": "corpus score (comet: mean)"},
        "counts": counts,
        "languages": {lang: table[lang] for lang in languages},
        "overall": table["overall"],
    }
    if segments:
        result["segments"] = [
            {
                "id": s.id,
                "language": s.language,
                "scores": {m: {k: v[i] for k, v in per_segment[m].items()} for m in systems},
                "picks": s.picks,
            }
            for i, s in enumerate(segs)
        ]
    return result
