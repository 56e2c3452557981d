"""What every command shares: logging set-up and the error boundary (one line naming the fix)."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .errors import FusionOfNError

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
