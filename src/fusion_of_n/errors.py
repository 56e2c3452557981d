"""The error tree. Every message names the fix.

::

    FusionOfNError
     ├── ConfigError             bad spec, flag or option; the message says what to write instead
     │    └── MissingDependency   an optional package or model package is not installed (names the pip command)
     ├── BackendError            an upstream call failed (after retries where retrying made sense)
     │    ├── UpstreamHTTPError   the server answered with an error status (carries status and its message)
     │    └── UpstreamUnreachable connection refused, DNS, timeouts (names the URL)
     ├── NotEnoughCandidates     fewer usable candidates than ``min_candidates``; lists the upstream failures
     └── ModelIntegrityError     an assembled model file does not match its sha256

Only the CLI and the server catch ``Exception``; everything else lets these propagate.

Text that came from an upstream (error bodies, unexpected replies) passes through :func:`redact`
before it reaches a message or a log line: it removes the API keys in use and common key shapes,
then shortens, in that order, so a key cut in half by the limit cannot leak its first half.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable, Sequence

MASK = "***"
MIN_SECRET_CHARS = 4
"""Shorter key values (``x``, ``-``) are placeholders for keyless servers: redacting them would mangle the text."""

_KEY_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), rf"\1{MASK}"),
    (re.compile(r"\b(sk|xai)-[A-Za-z0-9_-]{8,}"), rf"\1-{MASK}"),  # OpenAI, Anthropic (sk-ant-), DeepSeek, xAI
    (re.compile(r"\b(hf|gsk|ghp|gho|ghs|ghu|github_pat|glpat)_[A-Za-z0-9_-]{8,}"), rf"\1_{MASK}"),
    (re.compile(r"\bAIza[A-Za-z0-9_-]{20,}"), f"AIza{MASK}"),  # Google
    (re.compile(r"\bAKIA[A-Z0-9]{12,}"), f"AKIA{MASK}"),  # AWS access key id
    (re.compile(r"(://)[^/\s@:]+:[^/\s@]+@"), rf"\1{MASK}@"),  # user:password@ in a URL
    (re.compile(r"([?&](?:key|api_key|token|access_token|sig)=)[^&#\s\"']+", re.IGNORECASE), rf"\1{MASK}"),
    (
        re.compile(r"\b((?:x-)?api[_-]?key|(?:access|auth)[_-]?token)([\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}]{4,}", re.I),
        rf"\1\2{MASK}",
    ),
)


def redact(text: str, secrets: Iterable[str | None] = (), *, limit: int | None = None) -> str:
    """``text`` without the ``secrets`` (exact values, also JSON- and URL-escaped) and common key shapes
    (``sk-...``, ``Bearer ...``, ``hf_...``, ``api_key=...``, ``user:pass@`` in URLs), then cut to
    ``limit`` characters (plus ``...``). The one place upstream text is cleaned: always redact, then cut.

    >>> redact("bad key Bearer sk-abcdefgh12345678 for my-own-key", ["my-own-key"], limit=30)
    'bad key Bearer *** for ***'
    """
    for secret in sorted(_variants(secrets), key=len, reverse=True):
        text = text.replace(secret, MASK)
    for pattern, replacement in _KEY_SHAPES:
        text = pattern.sub(replacement, text)
    if limit is not None and len(text) > limit:
        text = text[:limit] + "..."
    return text


def _variants(secrets: Iterable[str | None]) -> set[str]:
    """Each secret as it may be echoed: as is, inside a JSON string, URL-encoded."""
    found: set[str] = set()
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_CHARS:
            found |= {secret, json.dumps(secret)[1:-1], secret.replace("/", "\\/"), urllib.parse.quote(secret, safe="")}
    return found


class FusionOfNError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(FusionOfNError, ValueError):
    """A spec, flag or option is wrong; the message says what to write instead."""


class MissingDependency(ConfigError, ImportError):
    """An optional dependency or model package is missing; the message names the pip command."""


class BackendError(FusionOfNError):
    """An upstream model call failed."""

    def __init__(self, message: str, *, backend: str = "", url: str | None = None) -> None:
        super().__init__(message)
        self.backend = backend
        self.url = url


class UpstreamHTTPError(BackendError):
    """The upstream answered with an HTTP error status."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        backend: str = "",
        url: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, backend=backend, url=url)
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500


class UpstreamUnreachable(BackendError):
    """The upstream could not be reached or did not answer in time."""


class NotEnoughCandidates(FusionOfNError):
    """Too few usable candidates came back; the message lists every upstream failure."""

    def __init__(self, got: int, needed: int, failures: Sequence[str]) -> None:
        lines = "; ".join(failures) or "no upstream errors were reported"
        super().__init__(f"got {got} candidate(s) but need at least {needed} (min_candidates): {lines}")
        self.got = got
        self.needed = needed
        self.failures = tuple(failures)


class ModelIntegrityError(FusionOfNError):
    """A model file does not have the expected sha256."""
