"""The pieces of OpenAI-shaped responses shared by the JSON and the streaming paths."""

from __future__ import annotations

import time
import uuid
from typing import Any

from aiohttp import web

from ..errors import BackendError, ConfigError, FusionOfNError, NotEnoughCandidates
from ..types import Result, Usage
from .schema import ChatBody, error_envelope


class HTTPFailure(Exception):
    """A failure that becomes an OpenAI error envelope with ``status``."""

    def __init__(self, status: int, message: str, kind: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.param, self.code = status, kind, param, code

    def response(self) -> web.Response:
        envelope = error_envelope(str(self), self.kind, param=self.param, code=self.code)
        return web.json_response(envelope, status=self.status)


def upstream_failure(exc: FusionOfNError) -> HTTPFailure:
    if isinstance(exc, (BackendError, NotEnoughCandidates)):
        return HTTPFailure(502, f"upstream failure: {exc}", "upstream_error", code="upstream_error")
    if isinstance(exc, ConfigError):
        return HTTPFailure(400, str(exc), "invalid_request_error")
    return HTTPFailure(500, str(exc), "server_error")


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


def extension(results: list[Result], method: str) -> dict[str, Any]:
    choices = []
    for result in results:
        details = result.to_dict()
        details.pop("text")
        choices.append(details)
    return {"method": method, "choices": choices}


def envelope(body: ChatBody, kind: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": body.model,
        "system_fingerprint": None,
    }


def completion(body: ChatBody, results: list[Result], with_candidates: bool) -> dict[str, Any]:
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
    if with_candidates:
        payload["fusion_of_n"] = extension(results, results[0].method)
    elif picked := strategies(results):
        payload["fusion_of_n"] = picked
    return payload
