"""Sampling benchmark: one ``n=N`` request vs N single requests, and client CPU per upstream call.

The fake OpenAI-compatible server runs in a separate process (with a fixed latency per request), so
the CPU time measured here is the client's alone. Prints two small tables; nothing is asserted.

    .venv/bin/python benchmarks/sampling.py [--latency 0.2] [--n 8] [--calls 2048] [--in-flight 256]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from collections.abc import Awaitable, Callable

from _report import figure
from _server_process import ServerProcess, Upstream

from fusion_of_n.backends.openai import OpenAIBackend
from fusion_of_n.testing import FakeOpenAIServer
from fusion_of_n.types import Params, Request

REPLY = "a fused answer of about a dozen words, enough to look like a real reply"


def _upstream(latency: float, honour_n: bool = True) -> Upstream:
    """In the server's process: a fake server answering REPLY; ``stats()`` counts every request."""
    srv = FakeOpenAIServer([REPLY], latency=latency, honour_n=honour_n)
    return Upstream(srv, lambda: {"requests": len(srv.requests)})


async def measure(server: ServerProcess, op: Callable[[], Awaitable[object]], repeats: int) -> tuple[float, float]:
    """Median wall seconds of ``op`` and the upstream calls it made (per run)."""
    walls = []
    server.reset()
    for _ in range(repeats):
        started = time.perf_counter()
        await op()
        walls.append(time.perf_counter() - started)
    return statistics.median(walls), server.stats()["requests"] / repeats


async def compare_n(honouring: ServerProcess, ignoring: ServerProcess, n: int, repeats: int) -> None:
    request = Request.from_prompt("Why is the sky blue?", params=Params(temperature=0.7, seed=1))
    singles = [request.with_params(seed=1 + i) for i in range(n)]
    backend = OpenAIBackend("m1", base_url=honouring.url)
    await backend.generate(request)  # open a connection first

    async def concurrent() -> None:
        await asyncio.gather(*(backend.generate(r) for r in singles))

    async def sequential() -> None:
        for r in singles:
            await backend.generate(r)

    async def first_call_on_ignoring_server() -> None:
        fresh = OpenAIBackend("m1", base_url=ignoring.url)
        await fresh.generate(request, n=n)
        await fresh.aclose()

    learned = OpenAIBackend("m1", base_url=ignoring.url)
    await learned.generate(request, n=2)  # learns that this server ignores n

    rows = [
        (f"one request with n={n}", await measure(honouring, lambda: backend.generate(request, n=n), repeats)),
        (f"{n} single requests, concurrent", await measure(honouring, concurrent, repeats)),
        (f"{n} single requests, sequential", await measure(honouring, sequential, repeats)),
        ("server ignores n: first call", await measure(ignoring, first_call_on_ignoring_server, repeats)),
        ("server ignores n: later calls", await measure(ignoring, lambda: learned.generate(request, n=n), repeats)),
    ]
    await backend.aclose()
    await learned.aclose()
    base = rows[0][1][0]
    print(f"\n(a) N={n} candidates, server latency {LATENCY:g} s, median of {repeats} runs")
    print(f"{'strategy':<36} {'wall s':>8} {'calls':>6} {'x n=N':>7}")
    for label, (wall, calls) in rows:
        print(f"{label:<36} {wall:>8.3f} {calls:>6.0f} {wall / base:>7.2f}")
    figure("sampling.n8_s", base, f"{base:.3f} s")
    figure("sampling.sequential_s", rows[2][1][0], f"{rows[2][1][0]:.3f} s")


async def throughput(server: ServerProcess, calls: int, in_flight: int) -> None:
    backend = OpenAIBackend("m1", base_url=server.url, max_concurrency=in_flight)
    request = Request.from_prompt("Why is the sky blue?")
    await asyncio.gather(*(backend.generate(request) for _ in range(in_flight)))  # warm the pool
    server.reset()
    server_cpu = server.stats()["cpu"]
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(backend.generate(request) for _ in range(calls)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    stats = server.stats()
    await backend.aclose()
    ideal = in_flight / LATENCY
    print(f"\n(b) {calls} calls, max_concurrency={in_flight}, server latency {LATENCY:g} s")
    print(f"{'upstream calls seen by the server':<40} {stats['requests']:>10}")
    print(f"{'max in flight seen by the server':<40} {stats['max_in_flight']:>10}")
    print(f"{'client CPU per upstream call (ms)':<40} {1000 * cpu / calls:>10.3f}")
    print(f"{'server CPU per call (ms, other process)':<40} {1000 * (stats['cpu'] - server_cpu) / calls:>10.3f}")
    print(f"{'achieved requests/s':<40} {calls / wall:>10.1f}")
    print(f"{'ideal latency-bound requests/s':<40} {ideal:>10.1f}")
    print(f"{'achieved / ideal':<40} {calls / wall / ideal:>10.2f}")
    # All in-flight requests finish together, so each wave pays latency + the CPU of both sides.
    per_call = (cpu + stats["cpu"] - server_cpu) / calls
    print(f"{'lockstep estimate latency/(latency+CPU)':<40} {LATENCY / (LATENCY + in_flight * per_call):>10.2f}")


LATENCY = 0.2


def main() -> None:
    global LATENCY
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=LATENCY)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2048)
    parser.add_argument("--in-flight", type=int, default=256)
    args = parser.parse_args()
    LATENCY = args.latency
    logging.getLogger("fusion_of_n").setLevel(logging.ERROR)  # each fresh backend warns once that n is ignored
    with (
        ServerProcess(_upstream, latency=LATENCY) as honouring,
        ServerProcess(_upstream, latency=LATENCY, honour_n=False) as ignoring,
    ):
        asyncio.run(compare_n(honouring, ignoring, args.n, args.repeats))
        asyncio.run(throughput(honouring, args.calls, args.in_flight))


if __name__ == "__main__":
    main()
