"""`fusion-of-n demo`: one candidate pool per prompt, aggregated by fusion, bon and vote side by side."""

from __future__ import annotations

import time
from collections.abc import Mapping

from rich.console import Console
from rich.table import Table

from .api import Pipeline
from .config import PipelineSettings
from .types import Result

DEMO_PROMPTS = (
    ("German (translation)", "Translate into German: The weather is nice today, so we are going for a walk in the park."),
    (
        "Spanish (math)",
        "María tiene 3 cajas con 12 manzanas cada una. Regala 10 manzanas a sus vecinos. "
        "¿Cuántas manzanas le quedan? Explica tu razonamiento paso a paso.",
    ),
    ("French (explanation)", "Explique en trois phrases simples pourquoi le ciel est bleu."),
)
DEMO_METHODS = ("fusion", "bon", "vote")


def _row(result: Result) -> tuple[str, str, str, str]:
    stages = {k: v for k, v in result.usage.items() if k != "sampling"}
    tokens = sum(u.total_tokens for u in stages.values())
    seconds = sum(u.seconds for u in stages.values())
    how = result.method if result.chosen is None else f"{result.method} (picked #{result.chosen + 1})"
    if result.flags:
        how += "\n" + ", ".join(result.flags)
    return how, result.text.strip(), f"+{tokens}", f"{seconds:.1f}"


async def run_demo(settings: PipelineSettings, env: Mapping[str, str], console: Console | None = None) -> None:
    console = console or Console()
    models = ", ".join(str(m) for m in settings.models)
    console.print(f"[bold]fusion-of-n demo[/bold]: {settings.n} candidates per prompt from {models}; "
                  f"fusor and judge: {settings.fusor or settings.models[0]}")
    started = time.perf_counter()
    async with Pipeline(settings, env) as pipeline:
        for title, prompt in DEMO_PROMPTS:
            request = pipeline.request(prompt)
            pool = await pipeline.sample(request)
            table = Table(title=f"{title}: {prompt}", show_lines=True, title_justify="left")
            table.add_column("method", style="bold", no_wrap=True)
            table.add_column("answer", ratio=1)
            table.add_column("tokens", justify="right")
            table.add_column("s", justify="right")
            usable = len(pool.usable)
            table.add_row(
                "candidates", f"{usable} usable of {len(pool.candidates)} sampled",
                str(pool.usage.total_tokens), f"{pool.usage.seconds:.1f}",
            )
            for method in DEMO_METHODS:
                table.add_row(*_row(await pipeline.aggregate(request, pool, method)))
            console.print(table)
    console.print(f"done in {time.perf_counter() - started:.0f}s "
                  "(tokens: sampling for the pool; '+N': what each method added on top of it)")
