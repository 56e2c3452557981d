"""``fusion-of-n view``: generate outputs (and eval results of the same rows) in the browser."""

from __future__ import annotations

import asyncio
import time
import webbrowser

import click

from ..errors import ConfigError
from .common import friendly_errors, setup_logging

EVERY_INTERFACE = ("0.0.0.0", "::", "")


@click.command()
@click.argument("data", nargs=-1, required=True, metavar="DATA [MORE ...]", type=click.Path(dir_okay=False))
@click.option(
    "--eval",
    "eval_paths",
    multiple=True,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="a winrate, accuracy or attribution result of the same rows (fusion-of-n eval ... -o FILE); repeatable",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to listen on (this machine only)")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0 picks a free one")
@click.option("--open", "open_browser", is_flag=True, help="open the viewer in the default browser")
@click.option("-v", "--verbose", count=True, help="-v: info logs and tracebacks, -vv: debug")
@friendly_errors
def view(
    data: tuple[str, ...], eval_paths: tuple[str, ...], host: str, port: int, open_browser: bool, verbose: int
) -> None:
    """Browse generate OUTPUT files (JSONL or Parquet) in a local web page: list, filter and search the
    rows; open one to see its candidates side by side and the fused answer tinted by the candidate each
    span was copied from; compare two methods or two files. The records are indexed, not loaded: a
    100,000-row file opens in seconds. Ctrl-C stops the server."""
    from ..server.runner import serve_forever
    from ..view import create_view_app
    from ..view.app import LOOPBACK, VIEWER

    setup_logging(verbose)
    started = time.perf_counter()
    allowed = None if host in EVERY_INTERFACE else {*LOOPBACK, host}
    app = create_view_app(data, eval_paths, allowed_hosts=allowed)
    seconds = time.perf_counter() - started
    files = app[VIEWER].files
    rows = sum(len(f) for f in files)

    def ready(bound: int) -> None:
        shown = "127.0.0.1" if host in EVERY_INTERFACE else (f"[{host}]" if ":" in host else host)
        url = f"http://{shown}:{bound}/"
        click.echo(f"fusion-of-n view: {url}  ({rows:,} records in {len(files)} file(s), indexed in {seconds:.1f}s)")
        if open_browser:
            webbrowser.open(url)

    try:
        asyncio.run(serve_forever(app, host, port, ready))
    except OSError as exc:
        raise ConfigError(str(exc)) from None
