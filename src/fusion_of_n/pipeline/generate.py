"""``fusion-of-n generate``: inputs -> BatchRunner (or the Ray engine) -> JSONL (or Parquet) records."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..api import Pipeline
from ..config import PipelineSettings
from ..errors import ConfigError
from ..records import journal_file, write_parquet
from .inputs import read_rows
from .runner import BatchRunner, Summary, secrets_of

RowCallback = Callable[[int, bool], None]


def count_rows(path: str | None, limit: int | None, skip: int = 0) -> int | None:
    """A cheap total for the progress display: lines of JSONL/CSV, Parquet metadata; None if unknown."""
    total: int | None = None
    if path and os.path.isfile(path):
        if path.endswith((".jsonl", ".json")):
            total = _lines(path)
        elif path.endswith(".csv"):
            total = max(0, _lines(path) - 1)  # the header
        elif path.endswith(".parquet"):
            try:
                import pyarrow.parquet as pq

                total = pq.ParquetFile(path).metadata.num_rows
            except ImportError:
                total = None
    if total is not None:
        total = max(0, total - skip)
        if limit is not None:
            total = min(total, limit)
    return total if total is not None else limit


def _lines(path: str) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def run_generate(
    settings: PipelineSettings,
    env: Mapping[str, str],
    *,
    input_path: str | None,
    dataset: str | None,
    output: str,
    methods: Sequence[str],
    concurrency: int = 64,
    limit: int | None = None,
    skip: int = 0,
    engine: str = "local",
    out_format: str = "jsonl",
    force: bool = False,
    on_start: Callable[[int | None], None] | None = None,
    on_row: RowCallback | None = None,
) -> Summary:
    methods = tuple(dict.fromkeys(methods))  # keep order, drop repeats
    journal = journal_file(output) if out_format == "parquet" else output
    rows = read_rows(input_path, dataset=dataset, limit=limit, skip=skip)
    if on_start:
        on_start(count_rows(input_path, limit, skip))
    if engine == "ray":
        from .ray import run_ray

        summary = run_ray(settings, env, rows, journal, methods, concurrency=concurrency, force=force, on_row=on_row)
    elif engine == "local":
        summary = asyncio.run(_run_local(settings, env, rows, journal, methods, concurrency, force, on_row))
    else:
        raise ConfigError(f"unknown engine {engine!r}; use local or ray")
    if out_format == "parquet":
        write_parquet(journal, output)
    return summary


async def _run_local(
    settings: PipelineSettings,
    env: Mapping[str, str],
    rows: Any,
    output: str,
    methods: tuple[str, ...],
    concurrency: int,
    force: bool,
    on_row: RowCallback | None,
) -> Summary:
    async with Pipeline(settings, env) as pipeline:
        secrets = secrets_of(settings, env)
        runner = BatchRunner(
            pipeline, methods, output, concurrency=concurrency, force=force, on_row=on_row, secrets=secrets
        )
        return await runner.run(rows)
