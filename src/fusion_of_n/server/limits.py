"""The proxy's bounds: per request (:class:`~fusion_of_n.config.RequestLimits`, a 400 naming the field and
the limit) and on requests in flight (:class:`InFlight`, a 429 with ``Retry-After`` beyond it, never a queue).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..config import PipelineSettings, RequestLimits
from ..errors import ConfigError
from .responses import HTTPFailure
from .schema import ChatBody

DEFAULT_MAX_IN_FLIGHT = 64
RETRY_AFTER_SECONDS = 1


def effective_limits(server: RequestLimits, preset: PipelineSettings) -> RequestLimits:
    """The server's limits with the fields the preset's ``limits`` table sets."""
    if preset.limits is None:
        return server
    return server.model_copy(update={k: getattr(preset.limits, k) for k in preset.limits.model_fields_set})


def check_preset(name: str, settings: PipelineSettings, limits: RequestLimits) -> None:
    """A preset whose own pool exceeds its ``max_samples`` would refuse every request: fail at start-up."""
    samples = settings.n * len(settings.models)
    if samples > limits.max_samples:
        raise ConfigError(
            f"preset {name!r} samples {samples} per request (n={settings.n} x {len(settings.models)} model(s)), "
            f"more than its max_samples={limits.max_samples}; lower n or raise max_samples "
            "(serve --max-samples, or max_samples in the preset's limits table)"
        )


def _refuse(message: str, param: str | None) -> HTTPFailure:
    return HTTPFailure(400, message, "invalid_request_error", param=param, code="limit_exceeded")


def check_request(
    body: ChatBody,
    messages: Sequence[Any],
    per_model: int,
    models: int,
    limits: RequestLimits,
    label: Mapping[str, str],
) -> None:
    """Refuse a request beyond ``limits``: ``messages`` as received, ``per_model`` samples from each of
    ``models`` for each choice. ``label`` renames fields in the error (the Responses API calls max_tokens
    ``max_output_tokens`` and messages ``input``)."""
    for field in ("max_tokens", "max_completion_tokens"):
        value = getattr(body, field)
        if value is not None and value > limits.max_request_tokens:
            name = label.get(field, field)
            raise _refuse(
                f"'{name}' is {value}, more than this server allows ({limits.max_request_tokens}, "
                f"max_request_tokens); ask for at most {limits.max_request_tokens}",
                name,
            )
    stop = body.stop_list or ()
    if len(stop) > limits.max_stop:
        raise _refuse(f"'stop' has {len(stop)} strings; this server takes at most {limits.max_stop}", "stop")
    samples = body.n * per_model * models
    if samples > limits.max_samples:
        raise _refuse(
            f"this request asks for {samples} samples ({body.n} choice(s) x n={per_model} per model x {models} "
            f"model(s)), more than this server allows per request ({limits.max_samples}, max_samples); "
            "lower 'n' or 'fusion_of_n.n'",
            "fusion_of_n.n" if body.fusion_of_n and body.fusion_of_n.n else "n",
        )
    name = label.get("messages", "messages")
    if len(messages) > limits.max_messages:
        raise _refuse(
            f"'{name}' has {len(messages)} messages, more than this server takes ({limits.max_messages}, "
            "max_messages); shorten the conversation",
            name,
        )
    size = len(json.dumps(messages, ensure_ascii=False).encode())
    if size > limits.max_message_bytes:
        raise _refuse(
            f"'{name}' is {size} bytes, more than this server takes ({limits.max_message_bytes}, "
            "max_message_bytes); shorten the conversation",
            name,
        )


class InFlight:
    """Generation requests being answered; beyond ``limit`` a new one is refused (429), never queued.

    One event loop serves the app, so a plain counter is exact.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ConfigError(f"max_in_flight must be at least 1, got {limit}")
        self.limit = limit
        self.count = 0

    def enter(self) -> None:
        if self.count >= self.limit:
            raise HTTPFailure(
                429,
                f"this server is answering {self.count} requests, its limit (max_in_flight); "
                f"retry after {RETRY_AFTER_SECONDS} s",
                "rate_limit_error",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self.count += 1

    def leave(self) -> None:
        self.count -= 1
