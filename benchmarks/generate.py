"""Batch generation throughput: 2,000 rows against the fake upstream (0.2 s latency) at 256 rows in flight.

Prints efficiency = ideal backend-bound time / measured wall time (target >= 0.95) and the client's CPU
per upstream call, each the median of ``--repeats`` runs. Every run gets a fresh upstream process (so
each pays the same cold start) and is timed from the call of ``run_generate`` to its return: startup,
the output files and the 256 first connections are inside the window. The upstream runs in its own
process, so the CPU figure is the runner's alone. Both are also split at the first wave (the first 256
rows finished): "first wave" holds the fixed costs, "efficiency after it" is the other waves against
their ideal, the runner's steady state.

Side by side (alternating with the runner's runs, same rows, same connection limit and rows in flight)
a bare aiohttp client against a fresh upstream of the same kind: one POST and ``json.loads`` per row,
no pipeline and no records. Its efficiency is the ceiling this upstream and this machine allow an
asyncio client: with a fixed latency the replies of a wave arrive together, the upstream (a Python
process on the same cores) and the client handle them one at a time, and every wave adds that burst.
"runner / bare client" is the runner's share of that ceiling. The load average is printed because the
machine may be shared: compare figures measured at similar load.

Usage: python benchmarks/generate.py [--rows 2000] [--latency 0.2] [--concurrency 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(__file__))

import aiohttp
from _proxy_upstream import UpstreamProcess
from _report import figure

from fusion_of_n.config import PipelineSettings
from fusion_of_n.pipeline.generate import run_generate


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float  # the client's CPU seconds
    calls: int  # counted at the upstream
    upstream_cpu: float
    finished: list[float]  # seconds from the start at which each row finished, in order
    done: int = 0
    failed: int = 0

    def first_wave(self, concurrency: int) -> float:
        """When the first ``concurrency`` rows had finished: startup, the first connections and one latency."""
        return self.finished[min(concurrency, len(self.finished)) - 1]


def prompt(i: int) -> str:
    return f"Question {i}: what is {i} plus {i}?"


def write_rows(path: str, rows: int) -> None:
    with open(path, "w") as handle:
        for i in range(rows):
            handle.write(json.dumps({"id": f"row-{i}", "prompt": prompt(i), "language": "en"}) + "\n")


def runner_run(source: str, output: str, latency: float, concurrency: int) -> Run:
    """One ``generate`` run (method ``first``, n=1: one upstream call per row) against a fresh upstream."""
    with UpstreamProcess(latency=latency) as upstream:
        settings = PipelineSettings.of(
            models=[f"openai:m1@{upstream.url}#max_concurrency={concurrency}"], n=1, method="first"
        )
        upstream_cpu = upstream.stats()["cpu"]
        finished: list[float] = []
        cpu0, wall0 = time.process_time(), time.perf_counter()
        summary = run_generate(
            settings,
            {},
            input_path=source,
            dataset=None,
            output=output,
            methods=["first"],
            concurrency=concurrency,
            on_row=lambda tokens, failed: finished.append(time.perf_counter() - wall0),
        )
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        stats = upstream.stats()
    return Run(wall, cpu, stats["requests"], stats["cpu"] - upstream_cpu, finished, summary.done, summary.failed)


async def _bare(url: str, rows: int, concurrency: int, finished: list[float], started: float) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    headers = {"Content-Type": "application/json"}
    numbers = iter(range(rows))
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            for i in numbers:
                body = {"model": "m1", "messages": [{"role": "user", "content": prompt(i)}], "temperature": 0.7}
                async with session.post(f"{url}/chat/completions", data=json.dumps(body).encode()) as response:
                    json.loads(await response.read())
                finished.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def bare_run(rows: int, latency: float, concurrency: int) -> Run:
    """The same calls from a bare aiohttp client, against a fresh upstream: the ceiling."""
    with UpstreamProcess(latency=latency) as upstream:
        upstream_cpu = upstream.stats()["cpu"]
        finished: list[float] = []
        cpu0, wall0 = time.process_time(), time.perf_counter()
        asyncio.run(_bare(upstream.url, rows, concurrency, finished, wall0))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        stats = upstream.stats()
    return Run(wall, cpu, stats["requests"], stats["cpu"] - upstream_cpu, finished, len(finished))


def median(runs: list[Run], value: str) -> float:
    return float(statistics.median(getattr(run, value) for run in runs))


def after_first_wave(runs: list[Run], concurrency: int, ideal: float, latency: float) -> tuple[float, float]:
    """Median (first wave's wall, efficiency of the rest): the rest is ideally ``ideal - latency`` seconds
    and has no startup and no new connections in it, so this is the client's steady state."""
    firsts = [run.first_wave(concurrency) for run in runs]
    rests = [(ideal - latency) / max(run.wall - run.first_wave(concurrency), 1e-9) for run in runs]
    return statistics.median(firsts), statistics.median(rests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    load = os.getloadavg()[0]  # the machine is shared: say how busy it was
    runs: list[Run] = []
    bare: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "in.jsonl")
        write_rows(source, args.rows)
        for i in range(args.repeats):
            output = os.path.join(tmp, f"out-{i}.jsonl")
            runs.append(runner_run(source, output, args.latency, args.concurrency))
            bare.append(bare_run(args.rows, args.latency, args.concurrency))

    waves = math.ceil(args.rows / args.concurrency)
    ideal = waves * args.latency
    wall, calls = median(runs, "wall"), median(runs, "calls")
    efficiency, cpu_ms = ideal / wall, 1000 * median(runs, "cpu") / max(calls, 1)
    bare_wall = median(bare, "wall")
    bare_cpu_ms = 1000 * median(bare, "cpu") / max(median(bare, "calls"), 1)
    upstream_ms = 1000 * median(runs + bare, "upstream_cpu") / max(calls, 1)
    first, steady = after_first_wave(runs, args.concurrency, ideal, args.latency)
    bare_first, bare_steady = after_first_wave(bare, args.concurrency, ideal, args.latency)
    walls = " ".join(f"{run.wall:.2f}" for run in runs)
    done, failed = min(run.done for run in runs), max(run.failed for run in runs)
    print(f"rows written              {done} of {args.rows} ({failed} failed)")
    print(f"upstream calls            {calls:.0f}")
    print(f"measured wall time        {wall:.2f} s  (median of {len(runs)}: {walls})")
    print(f"ideal backend-bound time  {ideal:.2f} s  ({waves} waves of {args.concurrency} x {args.latency} s)")
    print(f"efficiency                {efficiency:.2f}  (target >= 0.95)")
    print(f"client CPU per call       {cpu_ms:.3f} ms")
    print(f"rows/s                    {args.rows / wall:.0f} (ideal {args.rows / ideal:.0f})")
    print(f"first wave                {first:.2f} s (ideal {args.latency:.2f} s: startup and the first connections)")
    print(f"efficiency after it       {steady:.2f}  (the other {waves - 1} waves, the runner's steady state)")
    print(
        f"bare aiohttp client       {bare_wall:.2f} s, efficiency {ideal / bare_wall:.2f}, "
        f"{bare_cpu_ms:.3f} ms CPU per call (the ceiling here)"
    )
    print(f"... its first wave        {bare_first:.2f} s, efficiency after it {bare_steady:.2f}")
    print(f"runner / bare client      {bare_wall / wall:.2f}")
    print(f"upstream CPU per request  {upstream_ms:.3f} ms")
    end_load, cores = os.getloadavg()[0], os.cpu_count()
    print(f"load average (1 min)      {load:.2f} at the start, {end_load:.2f} at the end ({cores} cores)")
    figure("generate.efficiency", efficiency, f"{efficiency:.2f}")
    figure("generate.cpu_ms", cpu_ms, f"{cpu_ms:.2f} ms CPU per call")
    figure("generate.steady_efficiency", steady, f"{steady:.2f} after the first wave")
    figure("generate.bare_efficiency", ideal / bare_wall, f"bare aiohttp client {ideal / bare_wall:.2f}")


if __name__ == "__main__":
    main()
