"""Print a sweep result as a markdown table (k rows, method columns) and compare `auto` with the best
fixed method at each k.

    python benchmarks/sweep_table.py out/paper-mini/sweep-auto.json

Cells are the mean quality over prompts with its 95% bootstrap interval and the tokens per prompt (as
`fusion-of-n sweep` summarised them). The verdict per k: auto is "no worse beyond the CI" when its mean
is at least the lower bound of the best fixed method's interval.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any


def _cell(point: dict[str, Any], percent: bool) -> str:
    quality = point["quality"]
    scale = 100.0 if percent else 1.0
    low, high = (scale * v for v in quality["ci"])
    failed = f", {point['n_failed']} failed" if point.get("n_failed") else ""
    return f"{scale * quality['mean']:.1f} [{low:.1f}, {high:.1f}] ({point['tokens']:,.0f} tok{failed})"


def main(path: str) -> int:
    with open(path, encoding="utf-8") as handle:
        result = json.load(handle)
    if result.get("kind") != "sweep":
        print(f"{path} is not a sweep result (fusion-of-n sweep -o FILE)", file=sys.stderr)
        return 2
    percent = result.get("metric") == "accuracy"
    by_k: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for point in result["summary"]:
        by_k[point["k"]][point["method"]] = point
    methods = [m for m in result["methods"] if any(m in row for row in by_k.values())]
    unit = "accuracy %" if percent else result.get("metric", "quality")
    print(f"{result['input']}: {result['n_records']} prompts, {unit} [95% CI] (tokens per prompt)\n")
    print("| k | " + " | ".join(methods) + " |")
    print("| --- |" + " --- |" * len(methods))
    for k in sorted(by_k):
        print(f"| {k} | " + " | ".join(_cell(by_k[k][m], percent) if m in by_k[k] else "" for m in methods) + " |")
    if "auto" not in methods:
        return 0
    print()
    for k in sorted(by_k):
        row = by_k[k]
        fixed = {m: p for m, p in row.items() if m != "auto" and "+" not in m}
        if "auto" not in row or not fixed:
            continue
        best_name, best = max(fixed.items(), key=lambda item: item[1]["quality"]["mean"])
        auto = row["auto"]["quality"]["mean"]
        verdict = "no worse beyond the CI" if auto >= best["quality"]["ci"][0] else "WORSE beyond the CI"
        scale = 100.0 if percent else 1.0
        print(
            f"k={k}: auto {scale * auto:.1f} against the best fixed method, {best_name} "
            f"{scale * best['quality']['mean']:.1f} [{scale * best['quality']['ci'][0]:.1f}, "
            f"{scale * best['quality']['ci'][1]:.1f}]: {verdict}"
        )
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(sys.argv[1]))
