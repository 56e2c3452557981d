"""Constrained against free-form fusor output, on the same stored pools (before/after the grammar).

    python benchmarks/fusion_format_ab.py out/paper-mini/math.jsonl --fusor local:qwen2.5-coder-1.5b

The generate records hold the constrained fusion (the default since the grammar). This script fuses
every record's pool again with the same fusor, seed and budget but ``structured=none`` (free-form, as
before the grammar) and prints, with seeded 95% bootstrap intervals over records:
- accuracy of the constrained fusion (from the records),
- accuracy of the free-form reply read by the guessing rules alone (what the project did before),
- accuracy of the free-form reply after the re-ask step (what a server without constraints gets now),
and the flags of each. Needs the records' ``meta.answer`` gold answers.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
from typing import Any

from fusion_of_n.aggregators.fusion import Fusion, parse_fusion
from fusion_of_n.answers import extract_answer
from fusion_of_n.backends import create_backend
from fusion_of_n.eval.accuracy import answers_match, field_value, normalize_gold
from fusion_of_n.eval.stats import mean_ci
from fusion_of_n.records import (
    read_any_records,
    record_methods,
    record_pool,
    record_request,
    record_result,
    result_text,
)
from fusion_of_n.types import Candidate, Params


def pool_of(record: dict[str, Any]) -> list[Candidate]:
    """The candidates fusion saw in generate: the usable ones, or all when none is."""
    pool = record_pool(record)
    return list(pool.usable or pool.candidates)


async def main(args: argparse.Namespace) -> None:
    fusor = create_backend(f"{args.fusor}#structured=none", {})
    rows = [r for r in read_any_records(args.records) if not r.get("error") and "fusion" in record_methods(r)]
    correct: dict[str, list[float]] = collections.defaultdict(list)
    flags: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    try:
        for record in rows:
            gold = normalize_gold(field_value(record, "meta.answer"))
            params = Params(temperature=args.temperature, max_tokens=args.max_tokens, seed=args.seed)
            request = record_request(record, params)
            free = await Fusion(fusor).aggregate(request, pool_of(record))
            guessed = parse_fusion(free.extra["raw_reply"])
            stored = record_result(record, "fusion") or {}
            outcomes = {
                "constrained (records)": (result_text(record, "fusion"), stored.get("flags")),
                "free-form, guessing rules only (before)": (guessed.text, guessed.flags),
                "free-form + re-ask (server without constraints)": (free.text, free.flags),
            }
            for name, (text, flagged) in outcomes.items():
                correct[name].append(float(answers_match(extract_answer(text), gold)))
                flags[name].update(flagged or ["(none)"])
            print(f"{record['id']}: gold {gold}; free-form flags {list(free.flags)}", flush=True)
    finally:
        await fusor.aclose()
    print(f"\n{len(rows)} records, fusor {args.fusor}, seed {args.seed}, max_tokens {args.max_tokens}")
    for name, values in correct.items():
        stats = mean_ci(values, seed=0, resamples=2000)
        low, high = stats["ci"]  # type: ignore[misc]
        shown = ", ".join(f"{flag} {count}" for flag, count in sorted(flags[name].items()))
        print(f"{name:<50} {100 * stats['mean']:5.1f} % [{100 * low:.1f}, {100 * high:.1f}]  flags: {shown}")  # type: ignore[operator]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records")
    parser.add_argument("--fusor", default="local:qwen2.5-coder-1.5b")
    parser.add_argument("--max-tokens", type=int, default=384, help="the candidates' (the fusor gets twice)")
    parser.add_argument("--temperature", type=float, default=0.7, help="the candidates' (the fusor uses 0)")
    parser.add_argument("--seed", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
