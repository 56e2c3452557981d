"""How fast ``fusion-of-n view`` opens a large generate output, and what its index costs in memory.

    python benchmarks/view_index.py [--rows 100000] [--keep DIR]

Writes a synthetic generate output (JSONL, the records ``generate`` writes: a ~300-character prompt,
5 candidates of ~1 KB each, a fused answer that copies two of them, a Best-of-N pick, the fusor's
analysis, usage per stage; languages, flags and a few failed rows in ``OUTPUT.errors.jsonl``) to a
temporary folder, then measures side by side in this process:

- the index build (``create_view_app``: every line read once) and the server start;
- memory: the peak RSS growth of the build (``ru_maxrss``; a large file is read by forked processes,
  whose peak is shown too) and, in a second build under ``tracemalloc``, the Python heap the index
  keeps and its peak, against the file's size;
- latencies over HTTP on 127.0.0.1: the first ``/api/records`` page, one ``/api/record/<id>`` (middle
  and last row: a seek, a parse and the attribution), a sorted page, and a search (a rare and a common
  word; first scan, then from the cache).

Target (issue 13): a 100,000-row file opens in under 2 seconds with memory proportional to the index.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import statistics
import tempfile
import time
import tracemalloc
import urllib.request
from pathlib import Path
from typing import Any

from fusion_of_n.records import errors_file
from fusion_of_n.server.runner import BackgroundServer
from fusion_of_n.view import create_view_app

WORDS = (
    "the train covers kilometres during first hour journey afterwards slows down second total distance answer "
    "we compute sum numbers check result carefully each step gives because then so therefore multiply divide "
    "apples baskets table count every one two three four five six seven eight nine ten average speed time"
).split()
LANGUAGES = ("en", "en", "en", "de", "fr", "ja", "sw")


def sentences(rng: random.Random, count: int) -> list[str]:
    return [" ".join(rng.choices(WORDS, k=rng.randint(8, 18))).capitalize() + "." for _ in range(count)]


def text(rng: random.Random, pool: list[str], chars: int) -> str:
    parts: list[str] = []
    while sum(map(len, parts)) < chars:
        parts.append(rng.choice(pool))
    return " ".join(parts)


def stage(rng: random.Random, calls: int) -> dict[str, Any]:
    prompt, completion = rng.randint(100, 400) * calls, rng.randint(200, 300) * calls
    return {
        "calls": calls,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "seconds": round(rng.uniform(0.5, 4.0), 3),
    }


def record(row: int, rng: random.Random, pool: list[str]) -> dict[str, Any]:
    texts = [text(rng, pool, 1000) + f" The answer is {row % 97}." for _ in range(5)]
    truncated = rng.random() < 0.03
    candidates = [
        {
            "index": i,
            "model": f"openai:teacher-{i % 2}@http://127.0.0.1:8080/v1",
            "text": t,
            "finish_reason": "length" if truncated and i == 4 else "stop",
            "completion_tokens": len(t) // 4,
            "excluded": truncated and i == 4,
            "flags": ["truncated"] if truncated and i == 4 else [],
            "scores": {"bon": round(rng.uniform(1, 10), 2)},
        }
        for i, t in enumerate(texts)
    ]
    first, second = rng.sample(range(5), 2)
    fused = f"{texts[first][:450]} {text(rng, pool, 150)} {texts[second][300:700]} The answer is {row % 97}."
    usage = {"sampling": stage(rng, 1), "fusion": stage(rng, 1), "bon": stage(rng, 5)}
    usage["total"] = {k: sum(u[k] for u in usage.values()) for k in usage["sampling"]}
    return {
        "id": str(row),
        "line": row + 1,
        "prompt": text(rng, pool, 300) + "?",
        "messages": None,
        "language": LANGUAGES[row % len(LANGUAGES)],
        "system": None,
        "meta": {"answer": str(row % 97)},
        "candidates": candidates,
        "results": {
            "fusion": {
                "text": fused,
                "chosen": None,
                "score": None,
                "analysis": text(rng, pool, 200),
                "flags": ["fusor_truncated"] if rng.random() < 0.01 else [],
                "by": "openai:fusor@http://127.0.0.1:8080/v1",
                "presentation_order": rng.sample(range(5), 5),
            },
            "bon": {"text": texts[first], "chosen": first, "score": 9.5, "analysis": None, "flags": [], "by": "judge"},
        },
        "usage": usage,
        "seconds": round(rng.uniform(1, 12), 3),
        "failures": [],
        "error": None,
    }


def write_output(path: Path, rows: int) -> None:
    """The records as ``generate`` writes them (one ``json.dumps`` line each), and 0.5% failed rows."""
    rng = random.Random(0)
    pool = sentences(rng, 4000)
    with open(path, "w", encoding="utf-8") as out, open(errors_file(str(path)), "w", encoding="utf-8") as errors:
        for row in range(rows):
            if row % 200 == 199:
                failed = {"id": str(row), "line": row + 1, "prompt": "?", "language": "en", "meta": {}}
                failed["error"] = {"stage": "sampling", "type": "UpstreamHTTPError", "message": "503 from upstream"}
                errors.write(json.dumps(failed) + "\n")
            else:
                out.write(json.dumps(record(row, rng, pool), ensure_ascii=False) + "\n")


def get(base: str, path: str) -> tuple[float, Any]:
    started = time.perf_counter()
    with urllib.request.urlopen(base + path, timeout=120) as response:
        body = json.loads(response.read())
    return time.perf_counter() - started, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="write the file here (kept) instead of a temporary folder")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="view-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "out.jsonl"
    started = time.perf_counter()
    write_output(path, args.rows)
    size = path.stat().st_size + Path(errors_file(str(path))).stat().st_size
    print(f"wrote {args.rows:,} rows, {size / 2**20:,.0f} MiB ({size / args.rows / 1024:.1f} KiB per row) to {path}")
    print(f"  in {time.perf_counter() - started:.1f}s\n")

    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    app = create_view_app([str(path)])
    built = time.perf_counter() - started
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    reader = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # the forked readers, if any
    with BackgroundServer(lambda: app) as server:
        opened = time.perf_counter() - started
        base = f"http://127.0.0.1:{server.port}"
        last = str(args.rows - 2)
        timings = {
            "first /api/records page (50 rows)": get(base, "/api/records?limit=50")[0],
            "/api/record/<id> (middle row)": get(base, f"/api/record/{args.rows // 2}")[0],
            "/api/record/<id> (last row)": get(base, f"/api/record/{last}")[0],
            "page sorted by tokens, descending": get(base, "/api/records?sort=tokens&order=desc")[0],
            "page filtered (language=de, flag=truncated)": get(base, "/api/records?language=de&flag=truncated")[0],
        }
        for word in ("zebra", "carefully"):
            first, body = get(base, f"/api/records?q={word}")
            again = statistics.median(get(base, f"/api/records?q={word}&offset={50 * i}")[0] for i in range(3))
            timings[f"search {word!r} ({body['total']:,} rows): first scan"] = first
            timings[f"search {word!r}: next pages (cached)"] = again
    gc.collect()
    tracemalloc.start()
    traced = create_view_app([str(path)])
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del traced

    rows = args.rows
    print(f"{'measure':<48}{'value':>14}")
    print(f"{'index build (create_view_app)':<48}{built:>13.2f}s")
    print(f"{'opens: index + server ready':<48}{opened:>13.2f}s  (target < 2 s)")
    print(f"{'peak RSS growth of the build':<48}{grown / 2**20:>11.1f} MiB  ({grown / size:.1%} of the file)")
    if reader:
        print(f"{'peak RSS of a forked reading process':<48}{reader / 2**20:>11.1f} MiB  (shares the parent's pages)")
    print(f"{'index kept (tracemalloc, Python heap)':<48}{kept / 2**20:>11.1f} MiB  ({kept / rows:,.0f} B per row)")
    print(f"{'index peak while building (tracemalloc)':<48}{peak / 2**20:>11.1f} MiB  ({peak / size:.1%} of the file)")
    for name, seconds in timings.items():
        print(f"{name:<48}{seconds * 1000:>12.1f}ms")


if __name__ == "__main__":
    main()
