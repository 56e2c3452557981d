"""A benchmark's headline figures, for ``benchmarks/measured.py`` (the README's "Measured here" table).

A benchmark calls :func:`figure` for each figure the README quotes. When ``FON_BENCH_RESULTS`` names a
file, each figure is appended to it as one JSON line; otherwise nothing is written (the benchmark just
prints, as always).
"""

from __future__ import annotations

import json
import os
import sys


def figure(key: str, value: float, shown: str) -> None:
    """Record figure ``key`` (e.g. ``"local.engine_speedup"``) measured as ``value``; ``shown`` is how the
    README writes it (e.g. ``"2.1x"``). The command is this process's own."""
    path = os.environ.get("FON_BENCH_RESULTS")
    if not path:
        return
    script = os.path.relpath(sys.argv[0])
    command = " ".join([f"python {script}", *sys.argv[1:]])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"key": key, "value": value, "shown": shown, "command": command}) + "\n")
