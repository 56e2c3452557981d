"""The request body of ``POST /v1/chat/completions`` and the OpenAI error envelope.

Validation only checks shapes and ranges: the messages themselves are forwarded to the candidate
models exactly as received (system prompts, multi-turn history, names, content parts).
OpenAI parameters that do not change how candidates are sampled (``user``, ``metadata``, penalties,
...) are accepted and ignored, as is ``tool_choice`` "none" or "auto" without tools; ones whose meaning
we cannot honour (tools, structured output, logprobs) are rejected with a 400 naming them, rather than
silently dropped.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    type: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: bool = False


class Extension(BaseModel):
    """``fusion_of_n`` in the body (``extra_body={"fusion_of_n": {...}}`` with the OpenAI SDK)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    n: int | None = Field(default=None, ge=1, le=64, description="samples per model")
    method: str | None = None
    fusor: str | None = None
    return_candidates: bool = False
    adaptive: bool | None = None  # None: the preset's setting


class ChatBody(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=16, description="independent aggregations (choices)")
    stream: bool = False
    stream_options: StreamOptions | None = None
    fusion_of_n: Extension | None = None

    @property
    def stop_list(self) -> tuple[str, ...] | None:
        if self.stop is None:
            return None
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


UNSUPPORTED = {
    "tools": "tool calls are not fused; call the model directly for tool use",
    "tool_choice": "tool calls are not fused; call the model directly for tool use",
    "functions": "function calls are not fused; call the model directly",
    "function_call": "function calls are not fused; call the model directly",
    "response_format": "structured output is not supported by fusion; ask for the format in the prompt",
    "logprobs": "logprobs of a fused answer do not exist; leave logprobs out",
    "top_logprobs": "logprobs of a fused answer do not exist; leave top_logprobs out",
}

HARMLESS = {"tool_choice": ("none", "auto")}  # without tools (refused above), no tool can be called


class BodyError(ValueError):
    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.param = param


def parse_body(data: Any) -> ChatBody:
    """Validate a decoded JSON body; raise BodyError naming the first offending field."""
    if not isinstance(data, dict):
        raise BodyError("the request body must be a JSON object", None)
    for key, why in UNSUPPORTED.items():
        if data.get(key) not in (None, False, [], {"type": "text"}, *HARMLESS.get(key, ())):
            raise BodyError(f"'{key}' is not supported: {why}", key)
    try:
        body = ChatBody.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = _param(error["loc"])
        if error["type"] == "missing":
            raise BodyError(f"'{param}' is required", param) from None
        if error["type"] == "extra_forbidden":
            known = "n, method, fusor, return_candidates, adaptive"
            raise BodyError(f"unknown field '{param}' (fusion_of_n takes {known})", param) from None
        raise BodyError(f"invalid '{param}': {error['msg']}", param) from None
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        if body.max_tokens != body.max_completion_tokens:
            raise BodyError("give max_tokens or max_completion_tokens, not two different values", "max_tokens")
    return body


_TYPE_TAGS = {"str", "int", "float", "bool", "none", "list", "dict"}


def _param(loc: tuple[int | str, ...]) -> str | None:
    """The field path of a pydantic error, without the union-member tags it adds ("str", "list[...]")."""
    parts = [str(p) for p in loc if isinstance(p, int) or (p.isidentifier() and p.islower() and p not in _TYPE_TAGS)]
    return ".".join(parts) or None


def error_envelope(message: str, kind: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
