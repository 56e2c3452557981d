"""The package's layout: every click import lives in ``fusion_of_n.cli``, the CLI's method choices and
pipeline defaults come from the aggregator registry and PipelineSettings, and subcommands load lazily."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import click
import pytest

import fusion_of_n
from fusion_of_n.aggregators.base import AggregatorOptions, build_aggregator, methods
from fusion_of_n.cli import main
from fusion_of_n.config import PipelineSettings
from fusion_of_n.errors import ConfigError
from fusion_of_n.eval.sweep import MODEL_METHODS, SWEEP_METHODS

PACKAGE = Path(fusion_of_n.__file__).parent
CLI_ONLY = ("click", "rich")  # the command line parses and draws; the library returns results


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, at any depth (function bodies included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_outside_the_cli_package_imports_click_or_rich() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert any(p.parent.name == "eval" for p in sources)  # the walk sees the whole package
    offenders = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in sources
        if path.relative_to(PACKAGE).parts[0] != "cli"
        for name in sorted(imported_modules(path) & set(CLI_ONLY))
    ]
    assert offenders == []


def every_command(group: click.Group, ctx: click.Context) -> list[click.Command]:
    commands: list[click.Command] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        commands += every_command(command, ctx) if isinstance(command, click.Group) else [command]
    return commands


def test_every_method_choice_is_the_aggregator_registry() -> None:
    ctx = click.Context(main)
    choices = {
        f"{command.name} --{param.name}": list(param.type.choices)
        for command in every_command(main, ctx)
        for param in command.params
        if param.name in ("method", "methods") and isinstance(param.type, click.Choice)
    }
    assert set(choices) == {"run --method", "generate --methods", "serve --method"}
    assert all(listed == methods() for listed in choices.values()), choices


def test_the_registry_knows_which_methods_call_a_model() -> None:
    """``register(name, uses=...)`` agrees with the builders: a method that calls a model cannot be built
    without one; the sweep caches exactly those."""
    needs_a_model = set()
    for method in methods():
        try:
            build_aggregator(method, AggregatorOptions())
        except ConfigError:
            needs_a_model.add(method)
    assert needs_a_model == set(methods(uses="fusor")) | set(methods(uses="scorer")) == MODEL_METHODS
    assert set(SWEEP_METHODS) <= set(methods())


@pytest.mark.parametrize(("command", "option", "field"), [
    ("run", "n", "n"), ("run", "temperature", "temperature"), ("run", "min_candidates", "min_candidates"),
    ("run", "method", "method"), ("demo", "n", "n"), ("generate", "n", "n"), ("generate", "temperature", "temperature"),
])  # fmt: skip
def test_cli_defaults_are_the_pipeline_settings_defaults(command: str, option: str, field: str) -> None:
    found = main.get_command(click.Context(main), command)
    assert found is not None
    param = next(p for p in found.params if p.name == option)
    assert param.default == PipelineSettings.model_fields[field].default
    assert (PipelineSettings().n, PipelineSettings().temperature) == (5, 0.7)  # what the help has always shown


def test_run_loads_neither_the_eval_stack_nor_the_server() -> None:
    probe = (
        "import sys\n"
        "from fusion_of_n.cli import main\n"
        "try:\n"
        "    main(['run', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('fusion_of_n.eval', 'fusion_of_n.server', 'fusion_of_n.train', 'numpy', 'sacrebleu', 'rich')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
