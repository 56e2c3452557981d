"""Any OpenAI-compatible chat completions endpoint (spec ``openai:MODEL[@BASE_URL][#OPTIONS]``).

Options: ``key_env=VAR`` (read the API key from VAR instead of OPENAI_API_KEY; VAR set to an empty
value sends no key, for a keyless server while OPENAI_API_KEY is set), ``max_concurrency``
(requests in flight, default 32), ``timeout`` (read timeout in seconds, default 600),
``connect_timeout`` (default 10), ``retries`` (default 5) and ``structured`` (how a request's
``Params.output_format`` is enforced: ``auto``, the default, sends it as ``response_format`` with its
JSON schema, which vLLM, SGLang, llama.cpp's server and OpenAI accept, and when the server refuses
that with a 400 sends the request again without it and stops sending it (logged once), so the reply is
free text that the caller parses as before; ``json`` always sends it, a refusal is an error; ``none``
never sends it).

N samples are asked for as one request with ``n=N``. A server that returns fewer choices (llama.cpp's
server ignores ``n``) gets the missing ones as concurrent single requests, each with its own seed
when a seed is set; once a server has answered ``n>1`` with one choice, this backend sends singles
straight away.

A key bound for a plain ``http://`` URL that is not loopback is logged as a warning once per host
(see :mod:`fusion_of_n.http`); upstream text quoted in errors is redacted, then cut.

``stream(request)`` streams one completion (``stream: true`` with ``stream_options.include_usage``);
a server that sends no usage chunk gets usage with zero tokens (logged once at INFO), never a guess.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from ..errors import BackendError, ConfigError, UpstreamHTTPError
from ..http import MAX_QUOTE_CHARS, HTTPClient
from ..types import Candidate, Delta, Generation, Params, Request, TokenAlternatives, Usage
from .base import ModelSpec

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
OPTIONS = {"key_env", "max_concurrency", "timeout", "connect_timeout", "retries", "structured"}
STRUCTURED = ("auto", "json", "none")

_Response = tuple[list[Mapping[str, Any]], Mapping[str, Any]]
"""One HTTP response: its choices (validated to carry a message) and its reported usage."""


class OpenAIBackend:
    """Samples from ``model`` at ``base_url``; owns one :class:`HTTPClient` (its pool and its limit)."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        key_env: str = DEFAULT_KEY_ENV,
        max_concurrency: int = 32,
        timeout: float = 600.0,
        connect_timeout: float = 10.0,
        retries: int = 5,
        structured: str = "auto",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if structured not in STRUCTURED:
            raise ConfigError(f"structured={structured!r} is not one of {', '.join(STRUCTURED)}")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.name = f"openai:{model}@{self.base_url}"
        self.key_env = key_env
        self.client = HTTPClient(
            self.base_url,
            name=self.name,
            api_key=api_key,
            key_env=key_env,
            max_concurrency=max_concurrency,
            connect_timeout=connect_timeout,
            read_timeout=timeout,
            retries=retries,
            sleep=sleep,
        )
        self._has_key = bool(api_key)
        self.ignores_n = False  # learned: the server answers n>1 with a single choice
        self._warned_n = False
        self._warned_usage = False
        self.structured = structured  # "auto" becomes "none" once the server refuses a response_format

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.name!r})"

    @classmethod
    def from_spec(cls, spec: ModelSpec, env: Mapping[str, str]) -> OpenAIBackend:
        spec.check_options(OPTIONS)
        key_env = spec.option("key_env")
        if key_env:
            api_key = env.get(key_env)
            if api_key is None:
                raise ConfigError(
                    f"model spec {spec} reads its API key from {key_env} (key_env={key_env}), but {key_env} "
                    f"is not set; export {key_env}=... (an empty {key_env}= sends no key, for a keyless "
                    f"server) or remove key_env to use {DEFAULT_KEY_ENV}"
                )
            api_key = api_key or None
        else:
            api_key = env.get(DEFAULT_KEY_ENV) or None
        return cls(
            spec.model,
            base_url=spec.base_url or env.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL,
            api_key=api_key,
            key_env=key_env or DEFAULT_KEY_ENV,
            max_concurrency=spec.int_option("max_concurrency", 32, minimum=1),
            timeout=spec.float_option("timeout", 600.0, minimum=0.001),
            connect_timeout=spec.float_option("connect_timeout", 10.0, minimum=0.001),
            retries=spec.int_option("retries", 5, minimum=0),
            structured=spec.option("structured") or "auto",
        )

    async def generate(self, request: Request, *, n: int = 1) -> Generation:
        if n < 1:
            raise ConfigError(f"n must be at least 1, got {n}")
        started = time.perf_counter()
        responses: list[_Response] = []
        if n > 1 and not self.ignores_n:
            first = await self._complete(request, n, request.params.seed)
            responses.append(first)
            missing = range(len(first[0]), n)
            if missing:
                self._learn_n(n, len(first[0]))
        else:
            missing = range(n)
        seed = request.params.seed
        if len(missing) == 1:  # n=1: awaited here, no task to schedule
            responses.append(await self._complete(request, 1, None if seed is None else seed + missing[0]))
        elif missing:
            responses += await asyncio.gather(
                *(self._complete(request, 1, None if seed is None else seed + i) for i in missing)
            )
        candidates: list[Candidate] = []
        prompt_tokens = completion_tokens = 0
        for choices, usage in responses:
            prompt_tokens += _int(usage.get("prompt_tokens"))
            completion_tokens += _int(usage.get("completion_tokens"))
            reported = usage.get("completion_tokens")
            per_choice = _int(reported) if len(choices) == 1 and reported is not None else None
            start = len(candidates)
            candidates += [self._candidate(choice, start + i, per_choice) for i, choice in enumerate(choices)]
        seconds = time.perf_counter() - started
        return Generation(tuple(candidates), Usage(len(responses), prompt_tokens, completion_tokens, seconds))

    async def stream(self, request: Request) -> AsyncIterator[Delta]:
        """Stream one completion: text deltas as they arrive, then a Delta with finish_reason and usage."""
        started = time.perf_counter()
        finish_reason: str | None = None
        usage: Mapping[str, Any] | None = None
        with self._key_hint():
            async with contextlib.aclosing(self._chunks(request)) as chunks:
                async for chunk in chunks:
                    if isinstance(chunk.get("usage"), Mapping):
                        usage = chunk["usage"]
                    for choice in chunk.get("choices") or ():
                        if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                            continue
                        delta = choice.get("delta")
                        text = delta.get("content") if isinstance(delta, Mapping) else None
                        if isinstance(text, str) and text:
                            yield Delta(text)
                        finish_reason = choice.get("finish_reason") or finish_reason
        if finish_reason is None:
            raise BackendError(
                f"backend {self.name!r} ended the stream without a finish_reason; the completion may be cut "
                "short, check the server's logs",
                backend=self.name,
                url=self.client.url("/chat/completions"),
            )
        if usage is None and not self._warned_usage:
            self._warned_usage = True
            log.info("%s sent no usage in its stream; token counts of streamed calls are reported as 0", self.name)
        usage = usage or {}
        seconds = time.perf_counter() - started
        tokens = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
        yield Delta(finish_reason=str(finish_reason), usage=Usage(1, *tokens, seconds))

    async def aclose(self) -> None:
        await self.client.aclose()

    def _structured(self, params: Params) -> bool:
        fmt = params.output_format
        return fmt is not None and fmt.json_schema is not None and self.structured != "none"

    def _refused(self, exc: UpstreamHTTPError, sent: bool) -> bool:
        """Whether a 400 refused the response_format we sent in "auto" mode; then stop sending it."""
        if not (sent and self.structured == "auto" and exc.status == 400):
            return False
        self.structured = "none"
        log.warning(
            "%s refused response_format (%s); sending free-form requests from now on (structured=none)", self.name, exc
        )
        return True

    async def _chunks(self, request: Request) -> AsyncGenerator[dict[str, Any], None]:
        """The stream's chunks, sent once more without response_format when "auto" learns it is refused."""
        sent = self._structured(request.params)
        body = request_body(self.model, request.messages, request.params, 1, structured=sent)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        started = False
        try:
            async with contextlib.aclosing(self.client.post_stream("/chat/completions", body)) as chunks:
                async for chunk in chunks:
                    started = True
                    yield chunk
        except UpstreamHTTPError as exc:
            if started or not self._refused(exc, sent):
                raise
            async for chunk in self._chunks(request):
                yield chunk

    def _key_hint(self) -> _KeyHint:
        """Say which key variable was used (never the key) when the upstream rejects it."""
        return _KeyHint(self)

    def _learn_n(self, asked: int, got: int) -> None:
        """Remember a server that ignores n; warn once per backend."""
        self.ignores_n = self.ignores_n or got == 1
        if self._warned_n:
            return
        self._warned_n = True
        if got == 1:
            log.warning(
                "%s answered n=%d with 1 choice (the server ignores n); sending concurrent single requests from now on",
                self.name,
                asked,
            )
        else:
            log.warning(
                "%s answered n=%d with %d choices; asking for the rest with single requests", self.name, asked, got
            )

    async def _complete(self, request: Request, n: int, seed: int | None) -> _Response:
        """One request; returns its (at most ``n``) choices and its reported usage."""
        params = request.params if seed == request.params.seed else request.params.replace(seed=seed)
        sent = self._structured(params)
        body = request_body(self.model, request.messages, params, n, structured=sent)
        with self._key_hint():
            try:
                data = await self.client.post_json("/chat/completions", body)
            except UpstreamHTTPError as exc:
                if not self._refused(exc, sent):
                    raise
                body = request_body(self.model, request.messages, params, n, structured=False)
                data = await self.client.post_json("/chat/completions", body)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise BackendError(
                f"backend {self.name!r} answered 200 without choices ({self._snippet(data)}); the server did not "
                "produce a completion, check its logs",
                backend=self.name,
                url=self.client.url("/chat/completions"),
            )
        for choice in choices[:n]:
            if not isinstance(choice, Mapping) or not isinstance(choice.get("message"), Mapping):
                raise BackendError(
                    f"backend {self.name!r} answered a choice without a message ({self._snippet(choice)}); "
                    "check that the base URL serves the chat completions API",
                    backend=self.name,
                    url=self.client.url("/chat/completions"),
                )
        reported = data.get("usage")
        return choices[:n], reported if isinstance(reported, Mapping) else {}

    def _snippet(self, data: Any) -> str:
        """Part of an unexpected upstream reply, for an error: redacted first, then cut to 200 characters."""
        return self.client.redact(repr(data), limit=MAX_QUOTE_CHARS)

    def _candidate(self, choice: Mapping[str, Any], index: int, completion_tokens: int | None) -> Candidate:
        content = choice["message"].get("content")
        return Candidate(
            text=content if isinstance(content, str) else "",
            model=self.name,
            finish_reason=choice.get("finish_reason"),
            index=index,
            completion_tokens=completion_tokens,
            logprobs=parse_logprobs(choice.get("logprobs")),
        )


class _KeyHint:
    """``with backend._key_hint()``: a class rather than a generator, as it wraps every call."""

    __slots__ = ("backend",)

    def __init__(self, backend: OpenAIBackend) -> None:
        self.backend = backend

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, UpstreamHTTPError) and exc.status in (401, 403):
            b = self.backend
            sent = f"sent the key from {b.key_env}" if b._has_key else f"no key was sent: set {b.key_env}"
            exc.args = (f"{exc} ({sent})",)


def request_body(
    model: str, messages: Sequence[Mapping[str, Any]], params: Params, n: int, *, structured: bool = False
) -> dict[str, Any]:
    """The chat completions body: messages exactly as given, params mapped, None values omitted;
    ``structured`` adds the output format's JSON schema as ``response_format``."""
    body: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages]}
    if n > 1:
        body["n"] = n
    mapped = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
        "seed": params.seed,
        "stop": list(params.stop) if params.stop is not None else None,
    }
    body.update((key, value) for key, value in mapped.items() if value is not None)
    if params.top_logprobs is not None:
        body["logprobs"] = True
        body["top_logprobs"] = params.top_logprobs
    fmt = params.output_format
    if structured and fmt is not None and fmt.json_schema is not None:
        schema = {"name": fmt.name, "schema": dict(fmt.json_schema), "strict": True}
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    return body


def parse_logprobs(data: Any) -> tuple[TokenAlternatives, ...] | None:
    """``choice.logprobs.content[j].top_logprobs`` -> per token, ((token, logprob), ...)."""
    content = data.get("content") if isinstance(data, Mapping) else None
    if not isinstance(content, list):
        return None
    tokens: list[TokenAlternatives] = []
    for item in content:
        if not isinstance(item, Mapping):
            continue
        top = item.get("top_logprobs") or [item]  # top_logprobs=0: only the sampled token
        tokens.append(
            tuple(
                (str(alt.get("token", "")), float(alt.get("logprob", 0.0))) for alt in top if isinstance(alt, Mapping)
            )
        )
    return tuple(tokens)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
