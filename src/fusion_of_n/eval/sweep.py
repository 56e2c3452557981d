"""N-sweep: quality and tokens as functions of the pool size k, from one stored pool per record.

For each record of a generate file and each k, ``seeds`` subsets of k candidates are drawn
(:func:`draw_subset`: seeded by the sweep seed, the record id and k, so runs are reproducible and a
subset does not change when other ks or records are added). Candidates keep their pool indices. Each
subset is re-aggregated by each method through :meth:`fusion_of_n.api.Pipeline.aggregate` and the
answer is scored by a :data:`Metric` (accuracy against a gold field, or sentence chrF against
references, 0-100).

Cost: the subset's share of the record's stored sampling tokens
(:func:`~fusion_of_n.eval.subsets.sampling_tokens`) plus the aggregation's own usage.

Methods that call a model (``fusion``, ``bon``, ``usc``) are cached: one JSONL line per (record id,
method, sorted subset indices, fusor/judge name, digest of the prompt and subset texts) in
:data:`~fusion_of_n.eval.subsets.CACHE_FILE` under the cache folder, so re-running a sweep or adding a k
makes no repeated call. Aggregators run with seed 0, so the key holds all that decides the fusor's
prompt but its budget: twice the sampling ``max_tokens`` generate recorded in ``OUTPUT.run.json`` (as
in generate), else twice the longest candidate; start a new cache folder when that changes.
Selection methods (vote, mbr, random, first) make no model calls and are recomputed. A failed
aggregation (upstream error) is counted in ``n_failed`` of its point, never scored, never cached.

``adaptive``: each method also gets the series ``METHOD+adaptive`` at k = N (the pool size): per
record and seed, the stored samples are put in a seeded order (they are independent draws) and
``--adaptive``'s rounds are replayed on it (:func:`adaptive_subset`); the method aggregates what would
have been drawn, and the tokens are that subset's share. So quality against tokens shows each method
with and without adaptive N.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..aggregators.base import ROLES
from ..aggregators.base import methods as registered_methods
from ..answers import extract_answer
from ..api import Pipeline
from ..config import PipelineSettings
from ..errors import BackendError, ConfigError
from ..records import pool_size, read_checked_records, record_pool, record_request, run_file
from ..sampling import adaptive_prefix
from ..types import Params
from .accuracy import answers_match, field_value, normalize_gold
from .stats import mean_ci
from .subsets import SweepCache, sampling_tokens
from .translation import read_references

log = logging.getLogger(__name__)

MODEL_METHODS = frozenset(m for role in ROLES for m in registered_methods(uses=role))
"""The methods that call a model (the fusor or bon's scorer), from the aggregator registry: their results are cached."""
SWEEP_METHODS = ("fusion", "bon", "vote", "mbr", "random", "first")
"""The methods a sweep compares unless told otherwise (registered methods; usc and auto are left out)."""
SWEEP_KS = (1, 2, 3, 5, 8)
SWEEP_METRICS = ("accuracy", "chrf")
ADAPTIVE = "+adaptive"
SWEEP_FIELDS = ("id", "candidates")  # a sweep re-aggregates the stored pool: results are not needed
Metric = Callable[[Mapping[str, Any], str], float | None]
"""(record, answer text) -> quality, or None when the record cannot be scored (no gold/reference)."""


def draw_subset(record_id: str, pool_size: int, k: int, seed: int) -> tuple[int, ...]:
    """``k`` distinct pool positions out of ``pool_size``, sorted; reproducible from its arguments."""
    if not 1 <= k <= pool_size:
        raise ValueError(f"k={k} must be between 1 and the pool size {pool_size}")
    return tuple(sorted(random.Random(f"{seed}:{record_id}:{k}").sample(range(pool_size), k)))


def accuracy_metric(answers: str = "meta.answer") -> Metric:
    """1.0 when the answer extracted from the text matches the gold at ``answers`` (the rules of
    ``eval accuracy``: :func:`~fusion_of_n.eval.accuracy.answers_match`), else 0.0; None without gold."""

    extract = functools.lru_cache(maxsize=1 << 16)(extract_answer)  # selections repeat the same texts

    def score(record: Mapping[str, Any], text: str) -> float | None:
        gold = normalize_gold(field_value(record, answers))
        return None if gold is None else float(answers_match(extract(text), gold))

    return score


def chrf_metric(references: Mapping[str, Sequence[str]]) -> Metric:
    """Sentence chrF (sacrebleu, 0-100) against the references of the record's id; None without one."""
    from sacrebleu.metrics.chrf import CHRF

    chrf = CHRF()

    def score(record: Mapping[str, Any], text: str) -> float | None:
        refs = references.get(str(record.get("id")))
        return float(chrf.sentence_score(text, list(refs)).score) if refs else None

    return score


@dataclass
class SweepStats:
    calls_made: int = 0
    cache_hits: int = 0
    done: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Job:
    record: Mapping[str, Any]
    method: str
    subset: tuple[int, ...]
    key: str


async def _aggregate(pipeline: Pipeline, job: Job, params: Params | None) -> dict[str, Any]:
    result = await pipeline.aggregate(
        record_request(job.record, params), record_pool(job.record, job.subset), job.method
    )
    usage = result.aggregation_usage.to_dict()
    return {"text": result.text, "chosen": result.chosen, "flags": list(result.flags), "usage": usage}


def _by(pipeline: Pipeline, method: str) -> str | None:
    """The name of what makes ``method``'s model calls (part of the cache key)."""
    if method == "bon":
        return pipeline.scorer().name
    return pipeline.fusor.name if method in MODEL_METHODS else None


async def _run_jobs(
    pipeline: Pipeline, jobs: Iterable[Job], cache: SweepCache, params: Params | None, concurrency: int
) -> tuple[dict[str, dict[str, Any] | None], SweepStats]:
    """Every job's outcome by key (None: it failed upstream), ``concurrency`` at a time."""
    outcomes: dict[str, dict[str, Any] | None] = {}
    stats = SweepStats()
    queue = iter(jobs)

    async def worker() -> None:
        for job in queue:  # workers share one iterator: each job is taken once
            stats.done += 1
            if stats.done % 500 == 0:
                log.info("sweep: %d aggregations done (%d calls made, %d from the cache)", stats.done,
                         stats.calls_made, stats.cache_hits)  # fmt: skip
            cached = job.method in MODEL_METHODS
            hit = cache.get(job.key) if cached else None
            if hit is not None:
                stats.cache_hits += 1
                outcomes[job.key] = hit
                continue
            try:
                outcome = await _aggregate(pipeline, job, params)
            except BackendError as exc:  # upstream trouble: count it; bugs and config errors propagate
                log.warning("sweep: %s on %s failed: %s", job.method, job.record["id"], exc)
                stats.failures.append(f"{job.record['id']} {job.method} {list(job.subset)}: {exc}")
                outcomes[job.key] = None
                continue
            stats.calls_made += outcome["usage"]["calls"]
            if cached:
                cache.put(job.key, outcome)
            outcomes[job.key] = outcome

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return outcomes, stats


def _mean(rows: Sequence[Mapping[str, Any]], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows) if rows else float("nan")


def _cell(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean tokens of a set of (record, seed) rows, and how often each aggregation flag was raised
    (e.g. ``all_unscored``: bon's judge rated none, the first candidate stood in)."""
    flags = Counter(flag for row in rows for flag in row["flags"])
    means = {key: _mean(rows, key) for key in ("tokens", "sampling_tokens", "aggregation_tokens")}
    return {**means, "flags": dict(sorted(flags.items()))}


def _summary(rows: Sequence[Mapping[str, Any]], seed: int) -> dict[str, Any]:
    """One (method, k): quality averaged over seeds per record, then mean and CI over records."""
    per_record: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        per_record[row["id"]].append(row["quality"])
    quality = mean_ci([sum(v) / len(v) for v in per_record.values()], seed=seed)
    return {"quality": quality, **_cell(rows), "n_records": len(per_record)}


Planned = tuple[str, int, int, Mapping[str, Any], tuple[int, ...], str]  # method, k, seed, record, subset, key


def _plan(
    pipeline: Pipeline, records: Sequence[Mapping[str, Any]], ks: Sequence[int], seeds: range, methods: Sequence[str]
) -> tuple[dict[str, Job], list[Planned], dict[str, int]]:
    """The distinct jobs (one per cache key) and every (method, k, seed, record) that needs one."""
    by = {method: _by(pipeline, method) for method in methods}
    jobs: dict[str, Job] = {}
    plan: list[Planned] = []
    skipped: dict[str, int] = defaultdict(int)
    for record in records:
        rid, size = str(record["id"]), pool_size(record)
        for k in ks:
            if k > size:
                skipped[f"pool_smaller_than_k{k}"] += 1
                continue
            for s in seeds:
                subset = draw_subset(rid, size, k, s)
                for method in methods:
                    if method in MODEL_METHODS:
                        key = SweepCache.key(record, method, subset, by[method])
                    else:  # recomputed every run: the key only merges repeats within this run
                        key = json.dumps([rid, method, subset])
                    jobs.setdefault(key, Job(record, method, subset, key))
                    plan.append((method, k, s, record, subset, key))
    return jobs, plan, skipped


def adaptive_subset(record: Mapping[str, Any], seed: int) -> tuple[int, ...]:
    """The pool positions ``--adaptive`` would have drawn, replayed on a seeded order of the stored pool."""
    order = list(range(pool_size(record)))
    random.Random(f"{seed}:{record['id']}:adaptive").shuffle(order)
    drawn = adaptive_prefix(record_pool(record, order).candidates)
    return tuple(sorted(order[:drawn]))


def _plan_adaptive(
    pipeline: Pipeline,
    records: Sequence[Mapping[str, Any]],
    seeds: range,
    methods: Sequence[str],
    jobs: dict[str, Job],
    plan: list[Planned],
    k: int,
) -> None:
    """Add the ``METHOD+adaptive`` entries (labelled with k = the largest pool) to ``jobs`` and ``plan``."""
    by = {method: _by(pipeline, method) for method in methods}
    for record in records:
        for s in seeds:
            subset = adaptive_subset(record, s)
            for method in methods:
                if method in MODEL_METHODS:
                    key = SweepCache.key(record, method, subset, by[method])
                else:
                    key = json.dumps([str(record["id"]), method, subset])
                jobs.setdefault(key, Job(record, method, subset, key))
                plan.append((method + ADAPTIVE, k, s, record, subset, key))


def _points(
    plan: Sequence[Planned], outcomes: Mapping[str, dict[str, Any] | None], metric: Metric
) -> dict[tuple[str, int, int], list[dict[str, Any]]]:
    """Per (method, k, seed): one row per record with its quality and tokens (None: it failed)."""
    cells: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
    for method, k, s, record, subset, key in plan:
        outcome = outcomes[key]
        if outcome is None:
            cells[(method, k, s)].append({"id": record["id"], "failed": True})
            continue
        quality = metric(record, outcome["text"])
        spent, own = sampling_tokens(record, subset), outcome["usage"]["total_tokens"]
        row = {"id": record["id"], "quality": quality, "sampling_tokens": spent, "aggregation_tokens": own}
        cells[(method, k, s)].append({**row, "tokens": spent + own, "failed": False, "flags": outcome["flags"]})
    return cells


async def run_sweep(
    records: Iterable[Mapping[str, Any]],
    pipeline: Pipeline,
    metric: Metric,
    *,
    ks: Sequence[int],
    seeds: int = 3,
    methods: Sequence[str] = SWEEP_METHODS,
    cache: SweepCache | None = None,
    seed: int = 0,
    params: Params | None = None,
    concurrency: int = 8,
    adaptive: bool = False,
) -> dict[str, Any]:
    """The ``"kind": "sweep"`` result: ``points`` per (method, k, seed) and a ``summary`` per (method, k);
    with ``adaptive``, also ``METHOD+adaptive`` at k = the largest pool (module docstring)."""
    usable: list[Mapping[str, Any]] = []
    rejected: dict[str, int] = defaultdict(int)
    for record in records:
        if record.get("error") or not pool_size(record):
            rejected["error_or_no_candidates"] += 1
        elif metric(record, "") is None:
            rejected["no_gold_or_reference"] += 1
        else:
            usable.append(record)
    if not usable:
        raise ConfigError(f"no record can be swept ({dict(rejected)}); check --answers / --references")
    largest = max(pool_size(r) for r in usable)
    if bad := [k for k in ks if not 1 <= k <= largest]:
        raise ConfigError(f"--k {bad[0]} is impossible: pools hold at most {largest} candidates; choose k <= {largest}")
    for method in methods:
        pipeline.aggregator(method)  # a bad method or a missing fusor/judge fails before any call
    ks = sorted(set(ks))
    seed_range = range(seed, seed + seeds)
    jobs, plan, skipped = _plan(pipeline, usable, ks, seed_range, methods)
    series = [(method, list(ks)) for method in methods]
    if adaptive:
        _plan_adaptive(pipeline, usable, seed_range, methods, jobs, plan, largest)
        series += [(method + ADAPTIVE, [largest]) for method in methods]
    outcomes, stats = await _run_jobs(pipeline, jobs.values(), cache or SweepCache(None), params, concurrency)
    cells = _points(plan, outcomes, metric)
    points, summary = [], []
    for method, method_ks in series:
        for k in method_ks:
            rows: list[dict[str, Any]] = []
            for s in seed_range:
                cell = [r for r in cells.get((method, k, s), []) if not r["failed"]]
                failed = len(cells.get((method, k, s), [])) - len(cell)
                rows += cell
                point = {"method": method, "k": k, "seed": s, "quality": _mean(cell, "quality"), **_cell(cell)}
                points.append({**point, "n_records": len(cell), "n_failed": failed})
            n_failed = sum(p["n_failed"] for p in points[-seeds:])
            summary.append({"method": method, "k": k, **_summary(rows, seed), "n_failed": n_failed})
    return {
        "kind": "sweep",
        "ks": list(ks),
        "seeds": seeds,
        "seed": seed,
        "methods": [method for method, _ in series],
        "n_records": len(usable),
        "skipped": {**rejected, **skipped},
        "calls": {"made": stats.calls_made, "cache_hits": stats.cache_hits, "failed": len(stats.failures)},
        "failures": stats.failures[:20],
        "points": points,
        "summary": summary,
    }


def _manifest_params(output_file: str) -> Params | None:
    """The sampling parameters generate recorded next to OUTPUT (fusion's budget depends on max_tokens)."""
    try:
        with open(run_file(output_file), encoding="utf-8") as handle:
            params = json.load(handle).get("params") or {}
    except (OSError, ValueError):
        return None
    stop = params.get("stop")
    return Params(
        params.get("temperature"),
        params.get("top_p"),
        params.get("max_tokens"),
        params.get("seed"),
        tuple(stop) if stop else None,
    )


def _need(names: Sequence[str], what: str) -> str:
    """``bon needs a judge``, ``fusion and usc need a fusor``, ``fusion, usc and auto need a fusor``."""
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    return f"{listed} {'needs' if len(names) == 1 else 'need'} {what}"


def sweep_settings(
    methods: Sequence[str], fusor: Any = None, judge: Any = None, max_tokens: int | None = None
) -> PipelineSettings:
    """Settings for re-aggregation only: the fusor/judge (specs or Backend objects), no sampling;
    ``max_tokens`` is the candidates' (from generate's run file), which sizes the fusor's budget as
    generate sized it.

    Aggregators run with seed 0 (fusion's presentation order, random's pick) whatever the subset seed,
    so a cached aggregation stays valid across sweeps."""
    fusing = [m for m in methods if m in registered_methods(uses="fusor")]
    if fusing and fusor is None:
        raise ConfigError(f"{_need(fusing, 'a fusor')}: pass --fusor SPEC (e.g. openai:MODEL@URL)")
    scoring = [m for m in methods if m in registered_methods(uses="scorer")]
    if scoring and judge is None and fusor is None:
        raise ConfigError(f"{_need(scoring, 'a judge')}: pass --judge SPEC (or --fusor, which then judges)")
    # Pipeline wants a model to sample from; the sweep never samples, and selection methods call nothing.
    model = fusor if fusor is not None else judge if judge is not None else "fake:echo"
    return PipelineSettings.of(models=(model,), fusor=fusor, judge=judge, seed=0, max_tokens=max_tokens)


def _name(model: Any) -> Any:
    """A spec as given (or None), or a Backend object's name: what the result records."""
    return model if model is None or isinstance(model, str) else getattr(model, "name", str(model))


def sweep_file(
    path: str,
    *,
    ks: Sequence[int] = SWEEP_KS,
    methods: Sequence[str] = SWEEP_METHODS,
    metric: str = "accuracy",
    answers: str = "meta.answer",
    references: str | None = None,
    fusor: Any = None,
    judge: Any = None,
    seeds: int = 3,
    seed: int = 0,
    cache: str | None = None,
    concurrency: int = 8,
    adaptive: bool = False,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Quality and tokens against k: re-aggregate seeded k-subsets of each stored pool in the generate
    file ``path`` (what ``fusion-of-n sweep`` writes).

    ``metric`` is ``accuracy`` (0-1, against the gold answer at the dotted field ``answers``) or ``chrf``
    (0-100, against the REFS.jsonl ``references``); ``fusor``/``judge`` are specs or Backend objects
    (built with ``env``); ``cache`` is the folder of the call cache (None: in memory). The result is
    :func:`run_sweep`'s with ``input``, ``metric``, ``answers``, ``fusor``, ``judge`` and ``seconds``."""
    if metric == "chrf":
        if references is None:
            raise ConfigError("--metric chrf needs --references REFS.jsonl")
        scorer = chrf_metric({rid: [ref.reference] for rid, ref in read_references(references).items()})
    elif metric == "accuracy":
        scorer = accuracy_metric(answers)
    else:
        raise ConfigError(f"unknown metric {metric!r}; use one of: {', '.join(SWEEP_METRICS)}")
    params = _manifest_params(path)
    settings = sweep_settings(methods, fusor, judge, max_tokens=params.max_tokens if params else None)
    started = time.perf_counter()

    async def main() -> dict[str, Any]:
        async with Pipeline(settings, env) as pipeline:
            return await run_sweep(
                read_checked_records(path, need=SWEEP_FIELDS),
                pipeline,
                scorer,
                ks=ks,
                seeds=seeds,
                methods=methods,
                cache=SweepCache(cache),
                seed=seed,
                params=params,
                concurrency=concurrency,
                adaptive=adaptive,
            )

    result = asyncio.run(main())
    return {
        "kind": "sweep",
        "input": path,
        "metric": metric,
        "answers": answers if metric == "accuracy" else None,
        "fusor": _name(fusor),
        "judge": _name(judge),
        **result,
        "seconds": round(time.perf_counter() - started, 3),
    }
