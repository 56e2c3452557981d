"""Adaptive N replayed on stored pools: how many samples and tokens it saves, and what it costs in accuracy.

    python benchmarks/adaptive_replay.py out/paper-mini/math.jsonl [--answers meta.answer]

For each generate record (N samples per model, in pool order) the adaptive rounds are replayed on the
stored candidates: the first ``round_sizes(N)[0]`` of them, then the next rounds, stopping where
``--adaptive`` would (``fusion_of_n.sampling.adaptive_prefix``). Samples are independent draws, so
the first k stored samples stand for what an adaptive run would have drawn. Vote is computed on the
drawn candidates and on the whole pool; accuracy against the gold answer and completion tokens are
printed with seeded 95% bootstrap intervals over records. No model is called.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fusion_of_n.answers import extract_answer
from fusion_of_n.eval.accuracy import answers_match, field_value, majority_answer, normalize_gold
from fusion_of_n.eval.stats import mean_ci
from fusion_of_n.records import pool_size, read_any_records, record_pool
from fusion_of_n.sampling import adaptive_prefix, round_sizes
from fusion_of_n.types import Candidate


def replay(record: dict[str, Any]) -> tuple[list[Candidate], list[Candidate]]:
    """(drawn, whole pool) for one record with a single model's samples, in pool order."""
    pool = list(record_pool(record).candidates)
    if len({c.model for c in pool}) != 1:
        sys.exit("replay takes records of one model's samples (a teacher pool interleaves models)")
    return pool[: adaptive_prefix(pool)], pool


def vote_correct(candidates: list[Candidate], gold: str | None) -> float:
    usable = [c for c in candidates if not c.excluded] or candidates
    return float(answers_match(majority_answer([extract_answer(c.text) for c in usable]), gold))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records")
    parser.add_argument("--answers", default="meta.answer", help="dotted path of the gold answer")
    args = parser.parse_args()
    full, adaptive, tokens_full, tokens_drawn, samples, sizes = [], [], [], [], [], []
    for record in read_any_records(args.records):
        if record.get("error") or not pool_size(record):
            continue
        gold = normalize_gold(field_value(record, args.answers))
        drawn, pool = replay(record)
        full.append(vote_correct(pool, gold))
        adaptive.append(vote_correct(drawn, gold))
        tokens_full.append(float(sum(c.completion_tokens or 0 for c in pool)))
        tokens_drawn.append(float(sum(c.completion_tokens or 0 for c in drawn)))
        samples.append(len(drawn))
        sizes.append(len(pool))
    if not full:
        sys.exit(f"no usable records in {args.records}")

    def show(name: str, values: list[float], scale: float = 1.0, unit: str = "") -> None:
        stats = mean_ci(values, seed=0, resamples=2000)
        low, high = stats["ci"]  # type: ignore[misc]
        print(f"{name:<42} {scale * stats['mean']:8.1f}{unit} [{scale * low:.1f}, {scale * high:.1f}]")  # type: ignore[operator]

    n = len(full)
    print(f"{n} records; adaptive rounds for N = {max(sizes)}: {round_sizes(max(sizes))}")
    show("vote accuracy, all N samples (%)", full, 100)
    show("vote accuracy, adaptive (%)", adaptive, 100)
    show("completion tokens per prompt, all N", tokens_full)
    show("completion tokens per prompt, adaptive", tokens_drawn)
    saved = [1 - d / f if f else 0.0 for d, f in zip(tokens_drawn, tokens_full, strict=True)]
    show("completion tokens saved (%)", saved, 100)
    show("samples drawn per prompt", [float(s) for s in samples])
    changed = sum(a != f for a, f in zip(adaptive, full, strict=True))
    print(f"records whose vote outcome changed: {changed} of {n}")


if __name__ == "__main__":
    main()
