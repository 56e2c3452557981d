"""The README's "Measured here" table, regenerated from the benchmarks that print its figures.

Every benchmark records its headline figures through ``_report.figure`` when ``FON_BENCH_RESULTS`` is set.
This script runs the quick ones (``--run``, what ``make bench`` does: a few minutes on 2 cores), merges
their figures into ``benchmarks/measured.json`` (each with the command that printed it and the date),
merges any other results file given with ``--results`` (e.g. from ``benchmarks/install_time.sh``, which
takes ~20 minutes), prints the table, and with ``--write README.md`` replaces the table between the
``<!-- measured-here -->`` markers. A figure no run has recorded shows as "not measured".

    .venv/bin/python benchmarks/measured.py [--run] [--only NAME ...] [--results FILE ...] [--write README.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
STORE = HERE / "measured.json"
BEGIN, END = "<!-- measured-here:begin -->", "<!-- measured-here:end -->"

# the quick benchmarks `make bench` runs, by name
QUICK = {
    "sampling": ["sampling.py", "--repeats", "3"],
    "generate": ["generate.py"],
    "extraction": ["extraction.py", "--repeats", "3"],
    "proxy": ["proxy.py", "--overhead-requests", "200", "--requests", "5"],
    "decode_step": ["decode_step.py", "--steps", "16"],
    "local_sampling": ["local_sampling.py", "--rows", "4", "--max-tokens", "192"],
}


@dataclass(frozen=True)
class Row:
    what: str
    keys: tuple[str, ...]
    goal: str = ""


ROWS = (
    Row(
        "embedded 0.5B, `generate` over mgsm-symbolic, N=5: the decode loop with 4 rows in flight vs one by one "
        "(tokens/s)",
        ("local.rows_speedup", "local.rows_tok_s", "local.one_tok_s"),
        ">= 1.8x",
    ),
    Row("... the decode loop, 1 row at a time (its 5 samples together) vs one by one", ("local.row_speedup",)),
    Row(
        "one decode step of the 0.5B: 16 sequences vs 1 (tokens/s), and the arithmetic rate at 16",
        ("decode.b16_speedup", "decode.b16_gmacs"),
    ),
    Row(
        "proxy added latency p50 and CPU per request, pass-through; in the same run a bare aiohttp forwarder "
        "(the floor) and OptiLLM",
        (
            "proxy.plus_p50_ms",
            "proxy.cpu_ms",
            "proxy.bare_plus_p50_ms",
            "proxy.bare_cpu_ms",
            "proxy.optillm_plus_p50_ms",
        ),
        "<= 1.0 ms, <= 1.0 ms CPU",
    ),
    Row(
        "`generate` efficiency at 256 rows in flight, 0.2 s upstream latency (client CPU per call); in the same run "
        "a bare aiohttp client making the same calls (the ceiling here)",
        ("generate.efficiency", "generate.cpu_ms", "generate.steady_efficiency", "generate.bare_efficiency"),
        ">= 0.95",
    ),
    Row(
        "N=8 candidates against a server: one request with `n=8` vs 8 sequential requests (wall s)",
        ("sampling.n8_s", "sampling.sequential_s"),
    ),
    Row("`vote` over a 28 KB adversarial `\\boxed{` candidate", ("extraction.vote_ms",)),
    Row(
        "fresh clone `make demo` (install, compile llama.cpp, assemble the model, demo)",
        ("install.demo_min",),
        "<= 8 min",
    ),
    Row("`make test` after it (dev set, whole suite)", ("install.test_min",), "<= 6 min"),
)


def run_quick(names: list[str]) -> list[dict[str, object]]:
    figures: list[dict[str, object]] = []
    python = sys.executable
    for name in names:
        with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as results:
            env = {**os.environ, "FON_BENCH_RESULTS": results.name}
            command = [python, str(HERE / QUICK[name][0]), *QUICK[name][1:]]
            print(f"== {name}: {' '.join(command[1:])}", flush=True)
            finished = subprocess.run(command, env=env, cwd=HERE.parent, check=False)
            if finished.returncode:
                print(f"== {name} failed (exit {finished.returncode}); its figures stay as they were", flush=True)
            figures += [json.loads(line) for line in Path(results.name).read_text().splitlines() if line.strip()]
    return figures


def merge(store: dict[str, dict[str, object]], figures: list[dict[str, object]]) -> None:
    today = datetime.date.today().isoformat()
    for item in figures:
        key = str(item["key"])
        store[key] = {k: item[k] for k in ("value", "shown", "command")} | {"date": item.get("date", today)}


def table(store: dict[str, dict[str, object]]) -> str:
    lines = ["| what | measured | goal | printed by |", "| --- | --- | --- | --- |"]
    for row in ROWS:
        found = [store[k] for k in row.keys if k in store]
        shown = ", ".join(str(f["shown"]) for f in found) or "not measured"
        commands = sorted({f"`{f['command']}` ({f['date']})" for f in found})
        lines.append(f"| {row.what} | {shown} | {row.goal} | {'; '.join(commands)} |")
    return "\n".join(lines)


def write(readme: Path, text: str) -> None:
    content = readme.read_text(encoding="utf-8")
    if BEGIN not in content or END not in content:
        sys.exit(f"{readme} has no {BEGIN} ... {END} block; add the markers where the table belongs")
    head, rest = content.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="store_true", help="run the quick benchmarks first")
    parser.add_argument("--only", nargs="+", choices=sorted(QUICK), help="run only these")
    parser.add_argument("--results", nargs="+", type=Path, default=[], help="figures recorded by other runs")
    parser.add_argument("--write", type=Path, help="the README to update")
    args = parser.parse_args()
    store: dict[str, dict[str, object]] = json.loads(STORE.read_text()) if STORE.exists() else {}
    figures: list[dict[str, object]] = []
    if args.run or args.only:
        figures += run_quick(args.only or list(QUICK))
    for path in args.results:
        figures += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if figures:
        merge(store, figures)
        STORE.write_text(json.dumps(store, indent=1, sort_keys=True) + "\n")
    text = table(store)
    print(text)
    if args.write:
        write(args.write, text)
        print(f"wrote the table into {args.write}")


if __name__ == "__main__":
    main()
