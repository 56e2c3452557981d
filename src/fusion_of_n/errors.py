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
"""

from __future__ import annotations

from collections.abc import Sequence


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
