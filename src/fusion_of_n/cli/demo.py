"""``fusion-of-n demo``: one candidate pool per prompt, aggregated by fusion, bon and vote side by side.

rich is imported when the demo runs, not when the command is listed (``fusion-of-n --help`` stays fast).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from ..api import Pipeline
from ..config import PipelineSettings, environment
from ..types import Result
from .common import friendly_errors, pipeline_options, settings_from, setup_logging

if TYPE_CHECKING:
    from rich.console import Console
    from rich.panel import Panel

DEMO_PROMPTS = (
    (
        "German (translation)",
        "Translate into German: The weather is nice today, so we are going for a walk in the park.",
    ),
    (
        "Spanish (math)",
        "María tiene 3 cajas con 12 manzanas cada una. Regala 10 manzanas a sus vecinos. "
        "¿Cuántas manzanas le quedan? Explica tu razonamiento brevemente.",
    ),
    ("French (explanation)", "Explique en trois phrases simples pourquoi le ciel est bleu."),
)
DEMO_METHODS = ("fusion", "bon", "vote")
STRONG_FUSOR = "local:qwen2.5-coder-1.5b"
DEMO_MAX_TOKENS = 256


@click.command()
@pipeline_options
@friendly_errors
def demo(verbose: int, **params: Any) -> None:
    """Built-in prompts in three languages; fusion, bon and vote aggregate the same candidate pool.

    The fusor and judge default to the embedded 1.5B model when it is installed (the paper fuses
    with a stronger model than the candidates'), else to the first --model.
    """
    setup_logging(verbose)
    env = environment()
    fusor, judge = demo_defaults(params.pop("fusor"), params.pop("judge"), env)
    max_tokens = params.get("max_tokens") or DEMO_MAX_TOKENS
    settings = settings_from(params, fusor=fusor, judge=judge, max_tokens=max_tokens)
    asyncio.run(run_demo(settings, env))


def demo_defaults(fusor: str | None, judge: str | None, env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The paper fuses with a stronger model than the candidates': use the embedded 1.5B when installed."""
    from ..backends.local import list_models
    from ..config import cache_dir

    if fusor is None:
        installed = {m.name for m in list_models(cache_dir(env)) if m.installed}
        if STRONG_FUSOR.split(":", 1)[1] in installed:
            fusor = STRONG_FUSOR
    return fusor, judge or fusor


def _label(model: object) -> str:
    """A spec as written, or a Backend object's name."""
    return model if isinstance(model, str) else str(getattr(model, "name", model))


def _panel(result: Result, width: int | None) -> Panel:
    from rich.markup import escape
    from rich.panel import Panel
    from rich.text import Text

    stages = {k: v for k, v in result.usage.items() if k != "sampling"}
    tokens = sum(u.total_tokens for u in stages.values())
    seconds = sum(u.seconds for u in stages.values())
    title = result.method if result.chosen is None else f"{result.method}: candidate {result.chosen + 1}"
    subtitle = f"+{tokens} tokens · {seconds:.1f}s" + (f" · {', '.join(result.flags)}" if result.flags else "")
    # model text is shown as is: a str would be read as rich markup ("\\[" lost its backslash, "[/x]" raised)
    body = Text(result.text.strip() or "(empty)")
    return Panel(body, title=escape(title), subtitle=escape(subtitle), width=width, title_align="left")


async def run_demo(settings: PipelineSettings, env: Mapping[str, str], console: Console | None = None) -> None:
    """Sample each of :data:`DEMO_PROMPTS` once and show every :data:`DEMO_METHODS` answer of that pool."""
    from rich.columns import Columns
    from rich.console import Console, Group
    from rich.markup import escape
    from rich.text import Text

    console = console or Console()
    models = escape(", ".join(_label(m) for m in settings.models))
    fusor = escape(_label(settings.fusor or settings.models[0]))
    judge = escape(_label(settings.judge)) if settings.judge else fusor
    console.print(
        f"[bold]fusion-of-n demo[/bold]: {settings.n} candidates per prompt from {models} "
        f"(max {settings.max_tokens} tokens each); fusor: {fusor}; bon judge: {judge}"
    )
    width = (console.width - 2) // len(DEMO_METHODS) if console.width >= 120 else None
    started = time.perf_counter()
    async with Pipeline(settings, env) as pipeline:
        for title, prompt in DEMO_PROMPTS:
            request = pipeline.request(prompt)
            pool = await pipeline.sample(request)
            console.rule(f"[bold]{title}")
            console.print(Text(prompt))
            left_out = escape(", ".join(f"#{c.index + 1} {c.flags[0]}" for c in pool.candidates if c.excluded))
            console.print(
                f"[dim]pool: {len(pool.usable)} usable of {len(pool.candidates)} candidates "
                f"(left out: {left_out or 'none'}) · {pool.usage.total_tokens} tokens · {pool.usage.seconds:.1f}s[/dim]"
            )
            results = [await pipeline.aggregate(request, pool, method) for method in DEMO_METHODS]
            console.print(
                Columns([_panel(r, width) for r in results]) if width else Group(*(_panel(r, None) for r in results))
            )
    console.print(
        f"done in {time.perf_counter() - started:.0f}s. Every method aggregated the same pool; "
        "'+N tokens' is what a method spent on top of sampling it."
    )
