"""The ``fusion-of-n`` group. Every subcommand is imported on first use, so ``fusion-of-n run`` never
loads the eval stack (sacrebleu, numpy, matplotlib) nor the server."""

from __future__ import annotations

import importlib
from typing import Any

import click

_COMMANDS = {
    "run": "fusion_of_n.cli.run:run",
    "generate": "fusion_of_n.cli.generate:generate",
    "export": "fusion_of_n.cli.generate:export",
    "serve": "fusion_of_n.cli.serve:serve",
    "models": "fusion_of_n.cli.models:models",
    "demo": "fusion_of_n.cli.demo:demo",
    "sweep": "fusion_of_n.cli.eval:sweep_command",
    "report": "fusion_of_n.cli.eval:report_command",
    "train": "fusion_of_n.cli.train:train",
    "view": "fusion_of_n.cli.view:view",
}
_EVAL_COMMANDS = {
    name: f"fusion_of_n.cli.eval:{name}_command" for name in ("winrate", "translation", "accuracy", "attribution")
}


class LazyGroup(click.Group):
    """Subcommands imported on first use: ``lazy`` maps a name to ``module:attribute``."""

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


@click.group(cls=LazyGroup, lazy=_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fusion-of-n")
def main() -> None:
    """Fuse N LLM candidates into one better answer (Fusion-of-N), or select one (Best-of-N and baselines)."""


main.add_command(
    LazyGroup(
        "eval",
        help="Evaluate generate outputs: win-rates, translation metrics, accuracy, attribution.",
        lazy=_EVAL_COMMANDS,
    )
)
