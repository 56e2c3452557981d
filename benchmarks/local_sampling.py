"""Embedded-model sampling: N samples one by one vs decoded together as parallel sequences.

Both ways run side by side in one process on the same loaded model, alternating, on GSM-style
prompts (the work `generate` and `run` do on the embedded default). Prints wall seconds and generated
tokens per second for each, and their ratio; nothing is asserted.

    .venv/bin/python benchmarks/local_sampling.py [--model qwen2.5-coder-0.5b] [--n 5] [--max-tokens 256] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path

from fusion_of_n.backends.local import LocalBackend
from fusion_of_n.types import Params, Request

PROMPTS = (
    "A baker makes 24 rolls, sells 3/4 of them and gives 2 away. How many are left? Think step by step.",
    "Tom reads 12 pages a day. How many days does a 150-page book take him? Think step by step.",
    "A train travels 180 km in 2.5 hours. What is its average speed in km/h? Think step by step.",
)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cache = Path(os.environ.get("FUSION_OF_N_CACHE", "~/.cache/fusion-of-n")).expanduser()
    ways = {
        "one by one (parallel=1)": LocalBackend(args.model, cache_dir=cache, parallel=1),
        f"together (parallel={min(args.n, 16)})": LocalBackend(args.model, cache_dir=cache, parallel=min(args.n, 16)),
    }
    for backend in ways.values():
        await backend.load()  # one model, loaded once; the first batched call also builds its context
        await backend.generate(Request.from_prompt("Hi", params=Params(max_tokens=2)), n=2)
    walls: dict[str, list[float]] = {name: [] for name in ways}
    tokens: dict[str, int] = dict.fromkeys(ways, 0)
    for round_ in range(args.rounds):
        for number, prompt in enumerate(PROMPTS):
            params = Params(temperature=0.7, max_tokens=args.max_tokens, seed=100 * round_ + number)
            for name, backend in ways.items():
                started = time.perf_counter()
                generation = await backend.generate(Request.from_prompt(prompt, params=params), n=args.n)
                walls[name].append(time.perf_counter() - started)
                tokens[name] += generation.usage.completion_tokens
    print(f"{args.model}: N={args.n}, max_tokens={args.max_tokens}, {len(PROMPTS) * args.rounds} prompts each")
    print(f"{'way':<28} {'median s/prompt':>16} {'total s':>9} {'tokens':>8} {'tok/s':>7}")
    for name in ways:
        total = sum(walls[name])
        print(
            f"{name:<28} {statistics.median(walls[name]):>16.2f} {total:>9.1f} {tokens[name]:>8} "
            f"{tokens[name] / total:>7.1f}"
        )
    one, together = (sum(walls[name]) for name in ways)
    print(f"wall-time ratio one-by-one / together: {one / together:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
