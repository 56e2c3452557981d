"""Proxy benchmark: ``fusion-of-n serve`` against OptiLLM on the same fake upstream, in one table.

One fake OpenAI-compatible upstream (its own process, fixed latency) serves both proxies; each proxy is
a subprocess whose CPU time is read from /proc before and after its run. Rows:

- overhead: a client calling the upstream directly, our proxy with ``method=first, n=1``, OptiLLM's
  ``none`` passthrough and a bare aiohttp forwarder (``_bare_forwarder.py``: the floor for a Python proxy
  here), each one upstream call, interleaved request by request; added latency is the proxied p50/p95
  minus the direct p50/p95;
- approaches: our ``fusion`` and ``bon`` (LLM judge = the same model) against OptiLLM's ``moa`` and
  ``bon``, one request at a time. Calls and tokens are counted at the upstream (whitespace words,
  as the fake server computes usage); "reported" is what the proxy's own ``usage`` claims.

OptiLLM is installed on first use into ``<cache>/optillm-venv`` (see ``_proxy_servers.py``). A proxy
that cannot be installed or started gets rows that say why; nothing is estimated in its place.

    .venv/bin/python benchmarks/proxy.py [--latency 0.05] [--n 3] [--overhead-requests 200] [--requests 20]
        [--cache /tmp/fusion-of-n-bench] [--serve-command ".venv/bin/fusion-of-n serve"]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from _proxy_servers import (
    FUSION_OF_N,
    ProxyProcess,
    Unavailable,
    bare,
    cpu_seconds,
    install_optillm,
    optillm,
    ours,
    serve_missing,
)
from _proxy_upstream import UpstreamProcess
from _report import figure

PROMPT = [{"role": "user", "content": "Why is the sky blue? Answer in one or two sentences."}]


@dataclass
class Target:
    """One row: where to send, what to send, and (after measuring) what was seen."""

    label: str
    n_label: str
    url: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    proxy: ProxyProcess | None = None
    problem: str | None = None
    walls: list[float] = field(default_factory=list)
    cpu: float | None = None
    counted: dict[str, Any] = field(default_factory=dict)
    reported: tuple[float | None, float | None] = (None, None)
    overhead: bool = False  # a single-call row: show its latency over the direct row


async def send(session: aiohttp.ClientSession, target: Target) -> tuple[float, dict[str, Any]]:
    """Wall seconds of one request; raises Unavailable on an error or an empty answer."""
    started = time.perf_counter()
    async with session.post(f"{target.url}/chat/completions", json=target.body) as response:
        data: dict[str, Any] = await response.json(content_type=None)
    wall = time.perf_counter() - started
    choices = data.get("choices") or [{}]
    text = (choices[0].get("message") or {}).get("content")
    if response.status != 200 or not text or text.startswith("Error:"):
        raise Unavailable(f"HTTP {response.status}: {str(data.get('error') or text)[:120]}")
    return wall, data


async def count_calls(session: aiohttp.ClientSession, up: UpstreamProcess, target: Target, requests: int) -> None:
    """Send ``requests`` requests and keep what the upstream saw (per request) and the usage reported."""
    up.reset()
    reported: list[tuple[float | None, float | None]] = []
    for _ in range(requests):
        _, data = await send(session, target)
        usage = data.get("usage") or {}
        reported.append((usage.get("prompt_tokens"), usage.get("completion_tokens")))
    target.counted = {**up.stats(), "per": requests}
    target.reported = (mean_or_none([r[0] for r in reported]), mean_or_none([r[1] for r in reported]))


def mean_or_none(values: list[float | None]) -> float | None:
    """None when any response left the field out (a partial sum would look like a real count)."""
    present = [v for v in values if v is not None]
    return sum(present) / len(values) if len(present) == len(values) and values else None


async def overhead(up: UpstreamProcess, targets: list[Target], requests: int) -> None:
    """Interleave single-call requests to the upstream and through each proxy."""
    live = [t for t in targets if t.problem is None]
    async with aiohttp.ClientSession() as session:
        for target in live:
            try:
                await count_calls(session, up, target, 5)
            except (Unavailable, aiohttp.ClientError) as exc:
                target.problem = f"failed: {exc}"
        live = [t for t in live if t.problem is None]
        before = {id(t): cpu_seconds(t.proxy.pid) for t in live if t.proxy}
        for _ in range(requests):
            for target in live:
                try:
                    wall, _ = await send(session, target)
                except (Unavailable, aiohttp.ClientError) as exc:
                    target.problem = f"failed: {exc}"
                    continue
                target.walls.append(wall)
            live = [t for t in live if t.problem is None]
        for target in live:
            if target.proxy:
                target.cpu = (cpu_seconds(target.proxy.pid) - before[id(target)]) / requests


async def approach(up: UpstreamProcess, target: Target, requests: int) -> None:
    if target.problem is not None or target.proxy is None:
        return
    async with aiohttp.ClientSession() as session:
        try:
            await send(session, target)  # warm up: connections, lazy imports
            await count_calls(session, up, target, 3)
            cpu = cpu_seconds(target.proxy.pid)
            for _ in range(requests):
                wall, _ = await send(session, target)
                target.walls.append(wall)
            target.cpu = (cpu_seconds(target.proxy.pid) - cpu) / requests
        except (Unavailable, aiohttp.ClientError) as exc:
            target.problem, target.walls = f"failed: {exc}", []


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) > 1 else values[0]


def render(targets: list[Target], direct: Target, latency: float) -> None:
    head = (
        f"{'row':<30} {'N':<30} {'calls':>5} {'n per call':<10} {'prompt':>6} {'compl':>6} {'reported p/c':>13} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'x lat':>6} {'+p50 ms':>7} {'+p95 ms':>7} {'CPU ms':>7}"
    )
    print(head)
    print("-" * len(head))
    for t in targets:
        if t.problem is not None:
            print(f"{t.label:<30} {t.n_label:<30} {t.problem}")
            continue
        c, per = t.counted, t.counted["per"]
        pattern = "+".join(str(n) for n, k in sorted(c["n_values"].items(), reverse=True) for _ in range(k // per))
        rep = "/".join("-" if v is None else f"{v:.0f}" for v in t.reported)
        p50, high = statistics.median(t.walls), p95(t.walls)
        plus = f"{'':>7} {'':>7}"
        if t.overhead and direct.walls:
            plus = f"{1000 * (p50 - statistics.median(direct.walls)):>7.2f} {1000 * (high - p95(direct.walls)):>7.2f}"
            added = 1000 * (p50 - statistics.median(direct.walls))
            if t.label.startswith("fusion-of-n"):
                figure("proxy.plus_p50_ms", added, f"+{added:.2f} ms")
                if t.cpu is not None:
                    figure("proxy.cpu_ms", 1000 * t.cpu, f"{1000 * t.cpu:.2f} ms CPU")
            elif t.label.startswith("bare"):
                figure("proxy.bare_plus_p50_ms", added, f"bare aiohttp +{added:.2f} ms")
                if t.cpu is not None:
                    figure("proxy.bare_cpu_ms", 1000 * t.cpu, f"{1000 * t.cpu:.2f} ms CPU")
            else:
                figure("proxy.optillm_plus_p50_ms", added, f"OptiLLM +{added:.1f} ms")
        cpu = "" if t.cpu is None else f"{1000 * t.cpu:.2f}"
        print(
            f"{t.label:<30} {t.n_label:<30} {c['requests'] / per:>5.1f} {pattern:<10} "
            f"{c['prompt_tokens'] / per:>6.0f} {c['completion_tokens'] / per:>6.0f} {rep:>13} "
            f"{1000 * p50:>7.1f} {1000 * high:>7.1f} {p50 / latency:>6.1f} "
            f"{plus} {cpu:>7}"
        )


def legend(args: argparse.Namespace) -> None:
    print(
        f"\nUpstream latency {1000 * args.latency:.0f} ms per call. Overhead rows: {args.overhead_requests} requests "
        f"each, interleaved; approach rows: {args.requests} sequential requests each.\n"
        "calls, n per call, prompt, compl: upstream requests, their n, and tokens per client request, counted at "
        "the upstream.\nreported p/c: the proxy's own usage (prompt/completion, '-' = not reported). x lat: "
        "p50 / upstream latency (sequential upstream round trips, plus overhead).\n+p50/+p95: proxied minus direct "
        "percentile. CPU ms: the proxy process's user+system CPU per request (/proc, 10 ms ticks)."
    )
    fast = [name for name in ("uvloop", "orjson") if importlib.util.find_spec(name)]
    where = " (in this interpreter; --serve-command may differ)" if args.serve_command else ""
    print(
        f"fusion-of-n serve's event loop and JSON writer{where}: "
        + (", ".join(fast) + " (the fast extra)" if fast else "asyncio and json (pip install 'fusion-of-n[fast]')")
        + ("" if len(fast) in (0, 2) else "; only part of the fast extra is installed")
    )


def build_targets(args: argparse.Namespace, up: UpstreamProcess, stack: ExitStack) -> list[Target]:
    n = args.n
    rows = {
        "direct": Target("direct to the fake upstream", "1 call", up.url, {"model": "fake", "messages": PROMPT}),
        "first": Target("fusion-of-n first", "n=1", body={"fusion_of_n": {"n": 1, "method": "first"}}),
        "none": Target("OptiLLM none", "n=1 (passthrough)", body={"model": "none-fake"}),
        "bare": Target("bare aiohttp forwarder", "n=1 (the floor)", body={"model": "fake", "messages": PROMPT}),
        "fusion": Target("fusion-of-n fusion", f"N={n} + 1 fusor call", body={"fusion_of_n": {"n": n}}),
        "moa": Target("OptiLLM moa", "N=3 fixed + critique + final", body={"model": "moa-fake"}),
        "bon": Target("fusion-of-n bon", f"N={n} + {n} judge calls", body={"fusion_of_n": {"n": n, "method": "bon"}}),
        "obon": Target("OptiLLM bon", f"N={n} (--best-of-n) + {n} ratings", body={"model": "bon-fake"}),
    }
    ours_rows, optillm_rows = [rows[k] for k in ("first", "fusion", "bon")], [rows[k] for k in ("none", "moa", "obon")]
    for t in ours_rows:
        t.body = {"model": "fusion-of-n", "messages": PROMPT, **t.body}
    for t in optillm_rows:
        t.body = {**t.body, "messages": PROMPT}
    rows["first"].overhead = rows["none"].overhead = rows["bare"].overhead = True
    if args.n != 3:
        rows["moa"].n_label = "N=3 fixed (cannot change)"
    start(ours_rows, lambda: _start_ours(args, up, stack))
    start(optillm_rows, lambda: stack.enter_context(optillm(install_optillm(args.cache), up.url, args.cache, n)))
    start([rows["bare"]], lambda: stack.enter_context(bare(up.url, args.cache)))
    return list(rows.values())


def _start_ours(args: argparse.Namespace, up: UpstreamProcess, stack: ExitStack) -> ProxyProcess:
    if args.serve_command is None and (missing := serve_missing()):
        raise Unavailable(f"not measured: {missing}")
    command = args.serve_command.split() if args.serve_command else [str(FUSION_OF_N), "serve"]
    proxy = ours(command, up.url, args.cache)
    return stack.enter_context(proxy)


def start(rows: list[Target], launch: Callable[[], ProxyProcess]) -> None:
    try:
        proxy: ProxyProcess = launch()
    except Unavailable as exc:
        for t in rows:
            t.problem = str(exc)
        return
    for t in rows:
        t.proxy, t.url = proxy, proxy.url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.05, help="upstream seconds per call")
    parser.add_argument("--n", type=int, default=3, help="candidates for every approach that takes N")
    parser.add_argument("--overhead-requests", type=int, default=200)
    parser.add_argument("--requests", type=int, default=20, help="per approach row")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/fusion-of-n-bench"), help="OptiLLM venv, logs")
    parser.add_argument("--serve-command", help=f"our proxy's command (default: {FUSION_OF_N} serve)")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    with UpstreamProcess(latency=args.latency) as up, ExitStack() as stack:
        targets = build_targets(args, up, stack)
        direct = targets[0]
        asyncio.run(overhead(up, targets[:4], args.overhead_requests))
        for target in targets[4:]:
            asyncio.run(approach(up, target, args.requests))
    print()
    render(targets, direct, args.latency)
    legend(args)


if __name__ == "__main__":
    main()
