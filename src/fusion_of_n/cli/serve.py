"""``fusion-of-n serve``: the OpenAI-compatible proxy, its presets from --config and the flags."""

from __future__ import annotations

from typing import Any

import click

from ..config import RequestLimits, environment
from .common import friendly_errors, limit_options, method_choice, settings_from, setup_logging


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file of [presets.NAME] tables")
@click.option("--model", "models", multiple=True, metavar="SPEC", help="candidate model(s) of the 'fusion-of-n' preset")
@click.option("-n", "--samples-per-model", "n", type=int)
@click.option("--method", type=method_choice())
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
    from ..config import DEFAULT_PRESET, load_presets
    from ..server import create_app
    from ..server.runner import serve as run_server

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

    run_server(app, host, port, ready)
