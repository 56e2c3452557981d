"""The pieces of OpenAI-shaped responses shared by the JSON and the streaming paths."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from ..errors import BackendError, ConfigError, FusionOfNError, NotEnoughCandidates
from ..fastjson import dumps
from ..types import Result, Usage
from .schema import ChatBody, error_envelope


class HTTPFailure(Exception):
    """A failure that becomes an OpenAI error envelope with ``status`` (and ``headers``, e.g. Retry-After)."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.kind, self.param, self.code = status, kind, param, code
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        envelope = error_envelope(str(self), self.kind, param=self.param, code=self.code)
        return json_response(envelope, status=self.status, headers=self.headers)


def json_response(data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """Like ``aiohttp.web.json_response``, serialized by :func:`fusion_of_n.fastjson.dumps`."""
    return web.Response(
        body=dumps(data), status=status, headers=headers, content_type="application/json", charset="utf-8"
    )


def upstream_failure(exc: FusionOfNError, scrub: Callable[[str], str]) -> HTTPFailure:
    """The client's view of a library error: its message through ``scrub`` (no upstream URLs or specs)."""
    message = scrub(str(exc))
    if isinstance(exc, (BackendError, NotEnoughCandidates)):
        return HTTPFailure(502, f"upstream failure: {message}", "upstream_error", code="upstream_error")
    if isinstance(exc, ConfigError):
        return HTTPFailure(400, message, "invalid_request_error")
    return HTTPFailure(500, message, "server_error")


def finish_reason(result: Result) -> str:
    truncated = "fusor_truncated" in result.flags or (
        result.chosen is not None and result.candidates[result.chosen].finish_reason == "length"
    )
    return "length" if truncated else "stop"


def usage_of(results: list[Result]) -> dict[str, int]:
    total = Usage()
    for result in results:
        total = total + result.total_usage
    return {
        "prompt_tokens": total.prompt_tokens,
        "completion_tokens": total.completion_tokens,
        "total_tokens": total.total_tokens,
    }


def strategies(results: list[Result]) -> dict[str, Any] | None:
    """For ``auto``: what each choice ran and why, sent even without return_candidates; else None."""
    if not any("strategy" in r.extra for r in results):
        return None
    picks = [{"strategy": r.extra.get("strategy"), "evidence": r.extra.get("evidence")} for r in results]
    return {"method": results[0].method, "choices": picks}


_NAMED = ("fusor", "scorer", "selector")  # Result.extra entries that name a backend


def extension(results: list[Result], scrub: Callable[[str], str]) -> dict[str, Any]:
    """``return_candidates``: each Result but its text, backends named by their aliases (``scrub``)."""
    choices = []
    for result in results:
        details = result.to_dict()
        details.pop("text")
        for candidate in details["candidates"]:
            candidate["model"] = scrub(candidate["model"])
        details["failures"] = [{"model": scrub(f.model), "error": scrub(f.error)} for f in result.failures]
        details["extra"] = {k: scrub(v) if k in _NAMED and isinstance(v, str) else v for k, v in result.extra.items()}
        choices.append(details)
    return {"method": results[0].method if results else None, "choices": choices}


def fusion_field(results: list[Result], with_candidates: bool, scrub: Callable[[str], str]) -> dict[str, Any] | None:
    """The ``fusion_of_n`` field of a reply: the candidates when asked for, ``auto``'s strategies always."""
    return extension(results, scrub) if with_candidates else strategies(results)


def envelope(body: ChatBody, kind: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{secrets.token_hex(16)}",
        "object": kind,
        "created": int(time.time()),
        "model": body.model,
        "system_fingerprint": None,
    }


def completion(
    body: ChatBody, results: list[Result], with_candidates: bool, scrub: Callable[[str], str]
) -> dict[str, Any]:
    payload = envelope(body, "chat.completion")
    payload["choices"] = [
        {
            "index": i,
            "message": {"role": "assistant", "content": r.text},
            "logprobs": None,
            "finish_reason": finish_reason(r),
        }
        for i, r in enumerate(results)
    ]
    payload["usage"] = usage_of(results)
    if extra := fusion_field(results, with_candidates, scrub):
        payload["fusion_of_n"] = extra
    return payload
