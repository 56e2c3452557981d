"""What every command shares: logging set-up, the error boundary (one line naming the fix) and the
options of the commands that sample and aggregate, whose defaults are :class:`PipelineSettings`'."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..aggregators.base import methods
from ..config import DEFAULT_MODEL, PipelineSettings, RequestLimits
from ..errors import FusionOfNError

F = TypeVar("F", bound=Callable[..., Any])


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def friendly_errors(func: F) -> F:
    """The CLI boundary: our errors become one line on stderr and exit 1; -v shows tracebacks."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verbose = click.get_current_context().params.get("verbose", 0)
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except FusionOfNError as exc:
            if verbose:
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # the one place besides the server that catches everything
            if verbose:
                raise
            click.echo(f"error: unexpected {type(exc).__name__}: {exc} (run again with -v for the traceback)", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def default(name: str) -> Any:
    """The default of a :class:`PipelineSettings` field: the one place the CLI's defaults are written."""
    return PipelineSettings.model_fields[name].default


def method_choice() -> click.Choice[str]:
    """The aggregation methods, as the registry knows them (``aggregators.base.methods()``)."""
    return click.Choice(methods())


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
        click.option("-n", "--samples-per-model", "n", type=int, default=default("n"), show_default=True),
        click.option("--fusor", metavar="SPEC", help="model that fuses (default: the first --model)"),
        click.option("--judge", metavar="SPEC", help="LLM judge for bon (default: the fusor)"),
        click.option("--reward", metavar="SPEC", help="reward model for bon: hf:/path or vllm:MODEL@URL"),
        click.option("--temperature", type=float, default=default("temperature"), show_default=True),
        click.option("--top-p", type=float),
        click.option("--max-tokens", type=int, help="per candidate (the fusor gets twice this by default)"),
        click.option("--fusor-max-tokens", type=int),
        click.option("--seed", type=int),
        click.option("--language", help="target language of the answer (default: detected from the prompt)"),
        click.option("--system", help="system prompt for the candidates"),
        click.option("--min-candidates", type=int, default=default("min_candidates"), show_default=True),
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
    values["models"] = params.get("models") or default("models")
    values.update(overrides)
    return PipelineSettings.of(**values)
