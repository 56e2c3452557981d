"""What proxy clients see of the configuration: preset names and model aliases, never upstream URLs or specs.

A model's alias is its spec without ``@BASE_URL`` and ``#OPTIONS`` (``openai:llama3``), with a local
path cut to its last part (``local:my.gguf``). Specs of one model (the same provider, model and base URL)
share one alias; two models with one alias become ``alias``, ``alias~2``, ... in configuration order.
:meth:`Names.scrub` cleans any text meant for a client (error messages): configured specs and backend
names become their aliases, any other ``PROVIDER:MODEL@URL#OPTIONS`` loses its URL and options, and a
remaining URL, or the host (and port) of a configured base URL, becomes ``<upstream>``. The server log
keeps the full text.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

from ..backends.base import ModelSpec
from ..errors import ConfigError

_SPEC = re.compile(r"(?P<head>\b[A-Za-z][\w.-]*:[^\s'\"@#()]+)(?:@https?://[^\s'\"#()]*)?(?:#[\w=,.:/~-]*)?")
_URL = re.compile(r"\b(?:https?|wss?)://[^\s'\"<>()]+")


def _parsed(spec: str) -> ModelSpec | None:
    try:
        return ModelSpec.parse(spec)
    except ConfigError:
        return None


def alias(spec: str) -> str:
    """``PROVIDER:MODEL`` of a spec or backend name, without base URL, options or a local file's folder."""
    parsed = _parsed(spec)
    if parsed is None:
        return _URL.sub("<upstream>", spec)
    model = parsed.model
    if model.startswith(("/", "~", ".")) or "\\" in model:
        model = re.split(r"[\\/]", model.rstrip("/\\"))[-1] or model
    return f"{parsed.provider}:{model}"


def _hosts(name: str) -> set[str]:
    """The host and host:port of a spec's base URL (connection errors name them without the URL)."""
    parsed = _parsed(name)
    if parsed is None or not parsed.base_url:
        return set()
    url = urllib.parse.urlsplit(parsed.base_url)
    return {part for part in (url.hostname, url.netloc.rpartition("@")[2]) if part}


def _identity(name: str) -> object:
    parsed = _parsed(name)
    return name if parsed is None else (parsed.provider, parsed.model, parsed.base_url)


class Names:
    """Aliases of the configured models (specs first, then backend names, so an alias leads to a spec)."""

    def __init__(self, names: Iterable[str]) -> None:
        self._alias: dict[str, str] = {}  # spec or backend name -> alias
        self._spec: dict[str, str] = {}  # alias -> the first spec or name given for it
        hosts: set[str] = set()
        by_identity: dict[object, str] = {}
        for name in names:
            identity = _identity(name)
            hosts |= _hosts(name)
            if identity not in by_identity:
                label = base = alias(name)
                copy = 1
                while label in self._spec:
                    copy += 1
                    label = f"{base}~{copy}"
                by_identity[identity] = label
                self._spec[label] = name
            self._alias[name] = by_identity[identity]
        ordered = sorted(hosts, key=len, reverse=True)
        self._hosts = re.compile("|".join(rf"(?<![\w.-]){re.escape(h)}(?![\w.-])" for h in ordered)) if hosts else None

    def alias(self, name: str) -> str:
        return self._alias.get(name) or alias(name)

    def spec(self, name: str) -> str:
        """The spec behind an alias; a spec or unknown name as given."""
        return self._spec.get(name, name)

    def scrub(self, text: str) -> str:
        """``text`` without upstream URLs and specs (see the module docstring)."""
        for name in sorted(self._alias, key=len, reverse=True):
            text = text.replace(name, self._alias[name])
        text = _SPEC.sub(lambda match: match["head"], text)
        text = _URL.sub("<upstream>", text)
        return self._hosts.sub("<upstream>", text) if self._hosts else text
