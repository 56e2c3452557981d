"""The Backend protocol, model specs ``PROVIDER:MODEL[@BASE_URL][#OPTIONS]`` and the provider registry.

Examples::

    openai:llama3@http://127.0.0.1:8080/v1
    openai:gpt-4o-mini#key_env=MY_KEY,max_concurrency=16
    local:qwen2.5-coder-0.5b
    local:/models/my.gguf
    fake:echo

``#OPTIONS`` are ``key=value`` pairs separated by commas (a URL fragment is never sent to a server,
so it cannot clash with a real base URL). Each provider documents the options it takes and rejects
the others.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..errors import ConfigError
from ..types import Delta, Generation, Request

_SPEC = re.compile(r"^(?P<provider>[A-Za-z][\w.-]*):(?P<model>.*?)(?:@(?P<url>https?://[^#]*))?(?:#(?P<opts>.*))?$")


@dataclass(frozen=True)
class ModelSpec:
    provider: str
    model: str
    base_url: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        match = _SPEC.match(text.strip())
        if not match or not match.group("model"):
            raise ConfigError(
                f"model spec {text!r} is not PROVIDER:MODEL[@BASE_URL], e.g. "
                "'local:qwen2.5-coder-0.5b' or 'openai:llama3@http://127.0.0.1:8080/v1'"
            )
        options: dict[str, str] = {}
        for pair in filter(None, (match.group("opts") or "").split(",")):
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"option {pair!r} in model spec {text!r} must look like key=value")
            options[key.strip()] = value.strip()
        url = match.group("url")
        return cls(match.group("provider").lower(), match.group("model"), url.rstrip("/") if url else None, options)

    def __str__(self) -> str:
        text = f"{self.provider}:{self.model}"
        if self.base_url:
            text += f"@{self.base_url}"
        if self.options:
            text += "#" + ",".join(f"{k}={v}" for k, v in self.options.items())
        return text

    def option(self, key: str, default: str | None = None) -> str | None:
        return self.options.get(key, default)

    def int_option(self, key: str, default: int, *, minimum: int) -> int:
        """An integer option ``>= minimum``, or ``default`` when absent; anything else is a ConfigError."""
        return int(self._number_option(key, int, default, minimum))

    def float_option(self, key: str, default: float, *, minimum: float) -> float:
        """A number option ``>= minimum``, or ``default`` when absent; anything else is a ConfigError."""
        return self._number_option(key, float, default, minimum)

    def _number_option(self, key: str, kind: type[int] | type[float], default: float, minimum: float) -> float:
        raw = self.options.get(key)
        if raw is None or raw == "":
            return default
        try:
            value: float | None = kind(raw)
        except ValueError:
            value = None
        if value is None or value < minimum:
            what = "an integer" if kind is int else "a number"
            raise ConfigError(f"option {key}={raw} in model spec {self} must be {what} >= {minimum:g}")
        return value

    def check_options(self, allowed: set[str]) -> None:
        unknown = sorted(set(self.options) - allowed)
        if unknown:
            raise ConfigError(
                f"model spec {self} has unknown option(s) {', '.join(unknown)}; "
                f"{self.provider}: takes {', '.join(sorted(allowed)) or 'no options'}"
            )


@runtime_checkable
class Backend(Protocol):
    """Something that samples chat completions. Each backend owns its concurrency limit."""

    name: str

    async def generate(self, request: Request, *, n: int = 1) -> Generation:
        """Return ``n`` candidates for ``request`` (fewer only by raising)."""
        ...

    async def aclose(self) -> None:
        """Release sessions, threads or models held by this backend."""
        ...


@runtime_checkable
class StreamingBackend(Backend, Protocol):
    """A backend that can also stream one completion token by token (the proxy streams the fusor)."""

    def stream(self, request: Request) -> AsyncIterator[Delta]:
        """Yield text deltas as they arrive; the last Delta carries finish_reason and usage.

        Closing the iterator early (``aclose()``, cancellation) must abort the upstream work.
        """
        ...


BackendFactory = Callable[[ModelSpec, Mapping[str, str]], Backend]
"""Builds a backend from a spec and an environment mapping (keys, default URLs)."""

# provider -> "module:attribute" of a factory, imported on first use so that e.g. llama_cpp is
# imported only by a process that asks for a local model. ``fake:`` is registered here like the others,
# not by the testing package on import: library code builds ``fake:echo`` too (a sweep that never
# samples), and a spec must work without importing fusion_of_n.testing first.
_PROVIDERS: dict[str, str | BackendFactory] = {
    "openai": "fusion_of_n.backends.openai:OpenAIBackend.from_spec",
    "local": "fusion_of_n.backends.local:LocalBackend.from_spec",
    "fake": "fusion_of_n.testing.fake:FakeBackend.from_spec",
}


def register_backend(provider: str, factory: str | BackendFactory) -> None:
    """Add a provider (``factory`` may be a callable or a lazy ``"module:attr"`` reference)."""
    _PROVIDERS[provider.lower()] = factory


def providers() -> list[str]:
    return sorted(_PROVIDERS)


def _resolve(ref: str | BackendFactory) -> BackendFactory:
    if not isinstance(ref, str):
        return ref
    module_name, _, attr = ref.partition(":")
    target: object = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target  # type: ignore[return-value]


def create_backend(spec: str | ModelSpec, env: Mapping[str, str] | None = None) -> Backend:
    """Build a backend from a spec string. ``env`` supplies keys and default URLs (config passes os.environ)."""
    parsed = spec if isinstance(spec, ModelSpec) else ModelSpec.parse(spec)
    ref = _PROVIDERS.get(parsed.provider)
    if ref is None:
        raise ConfigError(
            f"unknown provider {parsed.provider!r} in model spec {spec!s}; use one of: {', '.join(providers())}"
        )
    return _resolve(ref)(parsed, env or {})


@dataclass(frozen=True)
class OwnedBackend:
    """A backend and whether its holder owns it: one built here from a spec is closed by the holder,
    a Backend object passed in stays its caller's to close.

    ``async with resolve_backend(judge, env) as backend: ...`` closes ``backend`` on exit only if
    it was built from a spec; a long-lived holder keeps the OwnedBackend and calls :meth:`aclose`.
    """

    backend: Backend
    owned: bool

    async def aclose(self) -> None:
        """Close the backend if it is owned; leave it open otherwise."""
        if self.owned:
            await self.backend.aclose()

    async def __aenter__(self) -> Backend:
        return self.backend

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def resolve_backend(model: str | ModelSpec | Backend, env: Mapping[str, str] | None = None) -> OwnedBackend:
    """``model`` as a backend: built from a spec (owned: the holder closes it), or the Backend object
    itself (not owned)."""
    if isinstance(model, str | ModelSpec):
        return OwnedBackend(create_backend(model, env), owned=True)
    return OwnedBackend(model, owned=False)
