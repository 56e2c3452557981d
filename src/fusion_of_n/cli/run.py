"""``fusion-of-n run PROMPT``: one prompt, one answer on stdout, a one-line summary on stderr."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from ..api import Pipeline
from ..config import PipelineSettings, environment
from ..types import Result
from .common import default, friendly_errors, method_choice, pipeline_options, settings_from, setup_logging


@click.command()
@click.argument("prompt", required=False)
@pipeline_options
@click.option("--method", default=default("method"), show_default=True, type=method_choice())
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
    """``[fusion] 5/5 candidates · 6 calls · 120+340 tokens · 2.1s`` (adaptive rounds, flags, failures)."""
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
