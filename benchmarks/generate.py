"""Batch generation throughput: 2,000 rows against the fake upstream (0.2 s latency) at 256 rows in flight.

Prints efficiency = ideal backend-bound time / measured time (target >= 0.95) and the client's CPU per
upstream call. The fake upstream runs in its own process, so the CPU figure is the runner's alone.
Usage: python benchmarks/generate.py [--rows 2000] [--latency 0.2] [--concurrency 256]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

from _proxy_upstream import UpstreamProcess

from fusion_of_n.config import PipelineSettings
from fusion_of_n.pipeline.generate import run_generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, UpstreamProcess(latency=args.latency) as upstream:
        source = os.path.join(tmp, "in.jsonl")
        with open(source, "w") as handle:
            for i in range(args.rows):
                handle.write(
                    json.dumps({"id": f"row-{i}", "prompt": f"Question {i}: what is {i} plus {i}?", "language": "en"})
                    + "\n"
                )
        settings = PipelineSettings.of(
            models=[f"openai:m1@{upstream.url}#max_concurrency={args.concurrency}"], n=1, method="first"
        )
        cpu0, wall0 = time.process_time(), time.perf_counter()
        summary = run_generate(
            settings,
            {},
            input_path=source,
            dataset=None,
            output=os.path.join(tmp, "out.jsonl"),
            methods=["first"],
            concurrency=args.concurrency,
        )
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        calls = upstream.stats()["requests"]

    waves = math.ceil(args.rows / args.concurrency)
    ideal = waves * args.latency
    print(f"rows written              {summary.done} of {args.rows} ({summary.failed} failed)")
    print(f"upstream calls            {calls}")
    print(f"measured wall time        {wall:.2f} s")
    print(f"ideal backend-bound time  {ideal:.2f} s  ({waves} waves of {args.concurrency} x {args.latency} s)")
    print(f"efficiency                {ideal / wall:.2f}  (target >= 0.95)")
    print(f"client CPU per call       {1000 * cpu / max(calls, 1):.3f} ms")
    print(f"rows/s                    {summary.done / wall:.0f} (ideal {args.rows / ideal:.0f})")


if __name__ == "__main__":
    main()
