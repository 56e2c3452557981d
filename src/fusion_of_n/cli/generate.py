"""``fusion-of-n generate`` (synthetic data: a pool per input row, one record per row, resumable, with a
live progress line) and ``fusion-of-n export`` (those records as chat-format SFT data)."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..config import environment
from .common import default, friendly_errors, method_choice, pipeline_options, settings_from, setup_logging


@click.command()
@click.argument("input_path", metavar="INPUT", required=False)
@click.option("-o", "--output", required=True, help="JSONL file of records (appended to; resumable)")
@click.option("--dataset", help="built-in source instead of INPUT: mgsm-symbolic:LANG or mt-bench")
@pipeline_options
@click.option(
    "--method",
    "methods",
    multiple=True,
    default=(default("method"),),
    show_default=True,
    type=method_choice(),
    help="repeat for several: every method aggregates the same pool",
)
@click.option("--concurrency", type=int, default=64, show_default=True, help="rows in flight")
@click.option("--limit", type=int, help="read at most this many input rows")
@click.option("--skip", type=int, default=0, help="pass over this many input rows first (a held-out split)")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--format", "out_format", type=click.Choice(["jsonl", "parquet"]), default="jsonl", show_default=True)
@click.option(
    "--fail-on-error",
    type=float,
    default=0.1,
    show_default=True,
    help="exit non-zero when more than this fraction of rows failed",
)
@click.option("--force", is_flag=True, help="start over when OUTPUT was made with another pool or methods")
@friendly_errors
def generate(
    input_path: str | None,
    output: str,
    dataset: str | None,
    methods: tuple[str, ...],
    concurrency: int,
    limit: int | None,
    skip: int,
    engine: str,
    out_format: str,
    fail_on_error: float,
    force: bool,
    verbose: int,
    **params: Any,
) -> None:
    """Synthetic data: one candidate pool per INPUT row (JSONL, CSV, Parquet or a saved HF dataset folder),
    aggregated by every --method, one record per row in OUTPUT. Re-run the same command to resume."""
    from ..pipeline.generate import run_generate
    from .progress import BatchProgress

    setup_logging(verbose)
    if (input_path is None) == (dataset is None):
        raise click.UsageError("give INPUT or --dataset (one of them)")
    settings = settings_from(params)
    with BatchProgress() as progress:
        summary = run_generate(
            settings,
            environment(),
            input_path=input_path,
            dataset=dataset,
            output=output,
            methods=methods,
            concurrency=concurrency,
            limit=limit,
            skip=skip,
            engine=engine,
            out_format=out_format,
            force=force,
            on_start=progress.start,
            on_row=lambda tokens, failed: progress.advance(tokens=tokens, error=failed),
        )
    click.echo(summary.line(), err=True)
    if summary.error_fraction > fail_on_error:
        click.echo(
            f"error: {summary.error_fraction:.1%} of rows failed (more than --fail-on-error "
            f"{fail_on_error:.1%}); see {summary.errors_file}",
            err=True,
        )
        sys.exit(1)


@click.command()
@click.argument("output")
@click.option("--method", required=True, help="whose answers become the assistant turns")
@click.option("--to", "target", required=True, help="chat-format JSONL for SFT (TRL's messages format)")
@click.option("-v", "--verbose", count=True)
@friendly_errors
def export(output: str, method: str, target: str, verbose: int) -> None:
    """Write chat-format SFT records (user prompt + assistant answer) from a generate OUTPUT."""
    from ..pipeline.export import export_sft

    setup_logging(verbose)
    summary = export_sft(output, method, target)
    click.echo(f"wrote {summary.written} records to {target}; skipped {summary.skipped}", err=True)
