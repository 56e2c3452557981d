"""A minimal ``POST /v1/responses`` (the OpenAI Responses API) on the chat-completions data path.

:func:`parse` reads the body into a chat-completions body (``input`` -> messages, ``instructions`` -> a
system message first, ``max_output_tokens`` -> max_tokens), which then takes the same checks, limits,
:class:`~.plan.Plan` and Pipeline calls as ``/v1/chat/completions``; :class:`Reply` writes the result as
a ``response`` object, and :class:`ResponsesEncoder` streams it as the Responses API's events
(``response.created``, ``response.output_text.delta``, ``response.output_text.done``,
``response.completed``, with the item and content-part events the SDK's ``responses.stream()`` needs).

Taken: ``input`` as text or a list of messages with text content, ``instructions``, ``temperature``,
``top_p``, ``max_output_tokens``, ``stream``, ``fusion_of_n``; ``metadata`` is echoed; ``user``,
``store`` and the like are ignored (nothing is stored). Refused with a 400 naming the field, as their
meaning cannot be honoured: tools, a ``tool_choice`` other than none/auto, ``previous_response_id`` and
``conversation`` (no server-side state), ``reasoning``, ``include``, ``background``, ``prompt``, a text
format other than text, ``top_logprobs``, input items other than messages, content other than text.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from ..types import Result
from .plan import Plan
from .responses import finish_reason, fusion_field, usage_of
from .schema import BodyError, ChatBody, parse_body

LABELS = {"max_tokens": "max_output_tokens", "messages": "input"}
UNSUPPORTED = {
    "tools": "tool calls are not fused; call the model directly for tool use",
    "previous_response_id": "this server keeps no responses; send the whole conversation in 'input'",
    "conversation": "this server keeps no conversations; send the whole conversation in 'input'",
    "reasoning": "reasoning settings are not supported; leave 'reasoning' out",
    "include": "there are no extra outputs to include; leave 'include' out",
    "background": "background responses are not supported; use stream: true for long answers",
    "prompt": "stored prompts are not supported; send 'instructions' and 'input'",
    "top_logprobs": "logprobs of a fused answer do not exist; leave 'top_logprobs' out",
}
_ROLES = ("user", "assistant", "system", "developer")
_TEXT_PARTS = ("input_text", "output_text", "text")


def parse(raw: Any) -> tuple[ChatBody, list[dict[str, Any]]]:
    """The chat-completions body of a Responses API body, and its messages; BodyError names the field."""
    if not isinstance(raw, dict):
        raise BodyError("the request body must be a JSON object", None)
    for key, why in UNSUPPORTED.items():
        if raw.get(key) not in (None, False, [], {}):
            raise BodyError(f"'{key}' is not supported: {why}", key)
    if raw.get("tool_choice") not in (None, "none", "auto"):
        raise BodyError(
            "'tool_choice' is not supported: tool calls are not fused; leave it out or send none", "tool_choice"
        )
    text = raw.get("text")
    if text is not None and (not isinstance(text, dict) or text.get("format") not in (None, {"type": "text"})):
        raise BodyError("'text.format' is not supported: ask for the format in the prompt", "text.format")
    messages = _messages(raw.get("input"), raw.get("instructions"))
    chat: dict[str, Any] = {"model": raw.get("model"), "messages": messages}
    for source, target in (("temperature", "temperature"), ("top_p", "top_p"), ("max_output_tokens", "max_tokens")):
        if raw.get(source) is not None:
            chat[target] = raw[source]
    for key in ("stream", "fusion_of_n"):
        if raw.get(key) is not None:
            chat[key] = raw[key]
    try:
        return parse_body(chat), messages
    except BodyError as exc:  # name the field as this client sent it (messages may have gained a system one)
        param = exc.param or ""
        head, dot, rest = param.partition(".")
        if head in LABELS:
            renamed = LABELS[head] if head == "messages" else LABELS[head] + dot + rest
            raise BodyError(str(exc).replace(f"'{param}'", f"'{renamed}'"), renamed) from None
        raise


def _messages(value: Any, instructions: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        messages = [{"role": "user", "content": value}]
    elif isinstance(value, list) and value:
        messages = [_message(item, f"input.{i}") for i, item in enumerate(value)]
    else:
        raise BodyError("'input' is required: a string or a non-empty list of messages", "input")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise BodyError("'instructions' must be a string", "instructions")
        messages.insert(0, {"role": "system", "content": instructions})
    return messages


def _message(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict) or item.get("type", "message") != "message":
        kind = item.get("type") if isinstance(item, dict) else type(item).__name__
        raise BodyError(f"'{where}.type' is {kind!r}; this server takes message items only", f"{where}.type")
    role, content = item.get("role"), item.get("content")
    if role not in _ROLES:
        raise BodyError(f"'{where}.role' must be one of: {', '.join(_ROLES)}", f"{where}.role")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise BodyError(f"'{where}.content' must be a string or a list of text parts", f"{where}.content")
    parts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in _TEXT_PARTS or not isinstance(part.get("text"), str):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise BodyError(
                f"'{where}.content.{j}.type' is {kind!r}; this server takes text parts (input_text) only",
                f"{where}.content.{j}.type",
            )
        parts.append({"type": "text", "text": part["text"]})
    return {"role": role, "content": parts}


class Reply:
    """The ``response`` object of one request, in any state (the stream sends it several times)."""

    def __init__(self, raw: dict[str, Any], plan: Plan) -> None:
        self.raw, self.plan = raw, plan
        self.id = f"resp_{uuid.uuid4().hex}"
        self.item_id = f"msg_{uuid.uuid4().hex}"
        self.created = int(time.time())

    def item(self, text: str, status: str) -> dict[str, Any]:
        content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        return {"id": self.item_id, "type": "message", "status": status, "role": "assistant", "content": content}

    def object(self, result: Result | None = None, *, status: str | None = None, error: Any = None) -> dict[str, Any]:
        """In progress without ``result``; completed (or incomplete, when cut by max tokens) with one."""
        params = self.plan.requests[0].params
        incomplete = result is not None and finish_reason(result) == "length"
        status = status or ("in_progress" if result is None else "incomplete" if incomplete else "completed")
        payload: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "model": self.plan.preset,
            "output": [] if result is None else [self.item(result.text, status)],
            "usage": None if result is None else self.usage(result),
            "error": error,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "instructions": self.raw.get("instructions"),
            "max_output_tokens": self.raw.get("max_output_tokens"),
            "metadata": self.raw.get("metadata") or {},
            "parallel_tool_calls": False,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "tool_choice": "none",
            "tools": [],
            "text": {"format": {"type": "text"}},
            "truncation": "disabled",
            "store": False,
        }
        if result is not None and (extra := fusion_field([result], self.plan.with_candidates, self.plan.scrub)):
            payload["fusion_of_n"] = extra
        return payload

    @staticmethod
    def usage(result: Result) -> dict[str, Any]:
        usage = usage_of([result])
        return {
            "input_tokens": usage["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage["total_tokens"],
        }


class ResponsesEncoder:
    """The Responses API's stream events for a one-choice :class:`~.streaming.stream_choices`."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.sequence = 0
        self.result: Result | None = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()

    def _part(self, text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def start(self, choices: int) -> list[bytes]:
        where = {"item_id": self.reply.item_id, "output_index": 0, "content_index": 0}
        return [
            self._event("response.created", response=self.reply.object()),
            self._event("response.in_progress", response=self.reply.object()),
            self._event(
                "response.output_item.added", output_index=0, item={**self.reply.item("", "in_progress"), "content": []}
            ),
            self._event("response.content_part.added", **where, part=self._part("")),
        ]

    def text(self, index: int, piece: str) -> list[bytes]:
        where = {"item_id": self.reply.item_id, "output_index": 0, "content_index": 0}
        return [self._event("response.output_text.delta", **where, delta=piece, logprobs=[])]

    def finished(self, index: int, result: Result) -> list[bytes]:
        self.result = result
        where = {"item_id": self.reply.item_id, "output_index": 0, "content_index": 0}
        status = self.reply.object(result)["status"]
        return [
            self._event("response.output_text.done", **where, text=result.text, logprobs=[]),
            self._event("response.content_part.done", **where, part=self._part(result.text)),
            self._event("response.output_item.done", output_index=0, item=self.reply.item(result.text, status)),
        ]

    def end(self, results: list[Result]) -> list[bytes]:
        final = self.reply.object(results[0])
        kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
        return [self._event(kind, response=final)]

    def failed(self, message: str, kind: str, code: str | None) -> list[bytes]:
        failed = self.reply.object(status="failed", error={"code": code or kind, "message": message})
        return [
            self._event("error", code=code or kind, message=message, param=None),
            self._event("response.failed", response=failed),
        ]
