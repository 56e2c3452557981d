"""One retrying JSON HTTP client shared by every HTTP backend and scorer.

- one ``aiohttp.ClientSession`` per event loop, created lazily and reused (connection pooling);
- at most ``max_concurrency`` requests in flight (a semaphore, and a connector limit to match);
  a streamed response holds its slot until the stream ends or is closed;
- retries with exponential backoff and full jitter on 429, 5xx, connection errors and timeouts,
  honouring ``Retry-After``; other 4xx fail at once. A streamed request is retried only until the
  first byte of its body arrives: after that a failure raises (a retry would repeat delivered text);
- errors carry the upstream's own message and name the fix; the API key never appears in an error,
  a repr or a log line: upstream text goes through :func:`fusion_of_n.errors.redact` (the key in use
  and common key shapes are masked, then the text is shortened);
- an API key bound for a plain ``http://`` URL that is not loopback is logged as a WARNING, once per
  host and process, with the fix (use https, or send no key to a keyless server);
- :data:`ALLOW_REMOTE_REQUESTS` set to False refuses every request to a host beyond loopback before it
  is sent (the test suite does this; like pydantic-ai's ``ALLOW_MODEL_REQUESTS``).
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import json
import logging
import random
import time
import urllib.parse
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import aiohttp

from .errors import BackendError, UpstreamHTTPError, UpstreamUnreachable, redact
from .fastjson import dumps
from .sse import SSEDecoder

log = logging.getLogger(__name__)

T = TypeVar("T")

ALLOW_REMOTE_REQUESTS = True
"""Whether an :class:`HTTPClient` may send a request to a host beyond loopback (127.0.0.0/8, ::1,
localhost). True in the library: reaching servers is its job. The test suite sets it to False, so a test
that points a backend at a real server fails at once with a :class:`RuntimeError` naming this flag."""

MAX_MESSAGE_CHARS = 500
MAX_QUOTE_CHARS = 200
_HINTS = {
    400: "the upstream rejected the request; check the parameters it names",
    401: "check the API key variable for this backend (is it set, and for this server?)",
    403: "check the API key variable for this backend and that the key may use this model",
    404: "check the model name with GET {base}/models, or the base URL",
    413: "the request is too large; shorten the prompt or lower max_tokens",
    422: "the upstream rejected the request; check the parameters it names",
}


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (delay in seconds or an HTTP-date) into seconds from ``now``."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def upstream_message(raw: bytes, secrets: Iterable[str | None] = ()) -> str:
    """The upstream's own error text: the OpenAI envelope's message, else the body text; redacted
    (``secrets`` and key shapes), then cut to :data:`MAX_MESSAGE_CHARS`."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            text = str(error["message"])
        elif isinstance(error, str) and error:
            text = error
        elif isinstance(data.get("message"), str):
            text = data["message"]
    text = redact(" ".join(text.split()), secrets, limit=MAX_MESSAGE_CHARS)
    return text or "(empty body)"


def warn_if_key_sent_in_clear(base_url: str, name: str, key_env: str | None = None) -> None:
    """Log once per host (and process) that an API key goes to ``base_url`` over plain, non-loopback http."""
    parts = urllib.parse.urlsplit(base_url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "http" or _is_loopback(host) or host in _WARNED_HOSTS:
        return
    _WARNED_HOSTS.add(host)
    variable = key_env or "the API key variable"
    log.warning(
        "%s sends its API key (from %s) unencrypted over http:// to %s, where anyone on the network path can "
        "read it; use an https:// URL for this server, or, if it needs no key, send none: add #key_env=NO_KEY "
        "to its model spec and export NO_KEY= (empty), or leave %s empty",
        redact(name),
        variable,
        host,
        variable,
    )


_WARNED_HOSTS: set[str] = set()
"""Hosts already warned about: a process-wide once-only registry, like the ``warnings`` module's."""


def _refuse_remote_unless_allowed(url: str) -> None:
    if ALLOW_REMOTE_REQUESTS:
        return
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if not _is_loopback(host):
        raise RuntimeError(
            f"request to {redact(url)} refused: fusion_of_n.http.ALLOW_REMOTE_REQUESTS is False and {host!r} "
            "is not loopback; point the backend at 127.0.0.1, or set ALLOW_REMOTE_REQUESTS = True "
            "(in the test suite: mark the test @pytest.mark.network)"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1
    return address.is_loopback


class HTTPClient:
    """A JSON client for one upstream base URL.

    >>> client = HTTPClient("http://127.0.0.1:8080/v1", name="openai:llama3")
    >>> data = await client.post_json("/chat/completions", {...})   # doctest: +SKIP
    >>> await client.aclose()                                        # doctest: +SKIP

    ``sleep`` is what waits between retries; tests pass a recorder instead of timing the waits.
    The session belongs to the event loop that first used it: ``aclose()`` it before that loop ends
    (a later loop then starts a fresh one; without ``aclose()`` the old connections are abandoned).
    A ``Retry-After`` longer than ``backoff_max`` is not waited for: the error is raised at once
    (with ``retry_after`` set), so a call never blocks longer than the caller allowed.
    ``key_env`` names the variable the key came from, for the plain-http warning (never the key itself).
    """

    def __init__(
        self,
        base_url: str,
        *,
        name: str,
        api_key: str | None = None,
        key_env: str | None = None,
        max_concurrency: int = 32,
        connect_timeout: float = 10.0,
        read_timeout: float = 600.0,
        retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        self.base_url = base_url.rstrip("/")
        self.name = name
        self._api_key = api_key or None
        if self._api_key:
            warn_if_key_sent_in_clear(self.base_url, name, key_env)
        self.max_concurrency = max_concurrency
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retries = retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._sleep = sleep
        self._random = random.Random()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._semaphore: asyncio.Semaphore | None = None

    def __repr__(self) -> str:
        auth = "with API key" if self._api_key else "no API key"
        return f"HTTPClient({self.base_url!r}, name={self.name!r}, {auth})"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def redact(self, text: str, *, limit: int | None = None) -> str:
        """``text`` without this client's API key or anything shaped like a key, then cut to ``limit``."""
        return redact(text, (self._api_key,), limit=limit)

    async def post_json(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._request("POST", path, dumps(body))

    async def get_json(self, path: str) -> dict[str, Any]:
        return await self._request("GET", path, None)

    async def post_stream(self, path: str, body: Mapping[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """POST ``body`` and yield the JSON object of each Server-Sent Event until ``data: [DONE]``.

        Failures before the first byte of the body are retried like :meth:`post_json`; later ones
        raise (an error event sent mid-stream raises :class:`UpstreamHTTPError` with its message).
        Closing the iterator early (``aclose()``, cancellation) closes the connection, which is how
        the upstream learns to stop. Wrap it in ``contextlib.aclosing`` when you may stop early.
        """
        url = self.url(path)
        data = dumps(body)
        stream = await self._retrying("POST", url, lambda: self._open_stream(url, data))
        finished = False
        try:
            decoder = SSEDecoder()
            chunk = stream.first
            while chunk:
                for event in decoder.feed(chunk):
                    if event == "[DONE]":
                        finished = True
                        return
                    yield self._event(url, event)
                chunk = await self._read_more(stream.response, url)
            for event in decoder.close():
                if event == "[DONE]":
                    break
                yield self._event(url, event)
            finished = True
        finally:
            if finished:
                stream.response.release()
            else:
                stream.response.close()  # drop the connection: the upstream stops generating
            stream.semaphore.release()

    async def aclose(self) -> None:
        session, self._session, self._loop, self._semaphore = self._session, None, None, None
        if session is not None and not session.closed:
            await session.close()

    async def __aenter__(self) -> HTTPClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _state(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._session is None or self._semaphore is None or self._loop is not loop or self._session.closed:
            if self._session is not None and self._loop is not loop:
                log.debug("%s: new event loop, starting a new HTTP session", self.name)
                self._session.detach()  # bound to the old loop; aclose() before a loop ends avoids this
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout, sock_read=self.read_timeout)
            connector = aiohttp.TCPConnector(limit=self.max_concurrency, limit_per_host=0)
            self._session = aiohttp.ClientSession(headers=headers, timeout=timeout, connector=connector)
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
            self._loop = loop
        return self._session, self._semaphore

    async def _request(self, method: str, path: str, data: bytes | None) -> dict[str, Any]:
        url = self.url(path)
        return await self._retrying(method, url, lambda: self._once(method, url, data))

    async def _retrying(self, method: str, url: str, attempt_once: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt_once`` until it succeeds, retrying retryable upstream errors with backoff."""
        _refuse_remote_unless_allowed(url)
        attempt = 0
        while True:
            try:
                return await attempt_once()
            except (UpstreamHTTPError, UpstreamUnreachable) as exc:
                retry_after = None
                if isinstance(exc, UpstreamHTTPError):
                    if not exc.retryable:
                        raise
                    retry_after = exc.retry_after
                    if retry_after is not None and retry_after > self.backoff_max:
                        raise UpstreamHTTPError(
                            f"{exc}; it asked to retry after {retry_after:g} s, more than "
                            f"backoff_max={self.backoff_max:g} s: lower the load or retry later",
                            status=exc.status,
                            backend=exc.backend,
                            url=exc.url,
                            retry_after=retry_after,
                        ) from None
                if attempt >= self.retries:
                    if self.retries:
                        exc.args = (f"{exc} (gave up after {attempt + 1} attempts)",)
                    raise
                delay = self._backoff(attempt, retry_after)
                attempt += 1
                level = logging.INFO if getattr(exc, "status", None) == 429 else logging.WARNING
                log.log(
                    level,
                    "%s: %s %s failed (%s); retry %d/%d in %.2f s",
                    self.redact(self.name),
                    method,
                    self.redact(url),
                    _short_reason(exc),
                    attempt,
                    self.retries,
                    delay,
                )
                await self._sleep(delay)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter: uniform in [0, min(backoff_max, base * 2**attempt)], but never below Retry-After."""
        ceiling = min(self.backoff_max, self.backoff_base * 2**attempt)
        delay = self._random.uniform(0.0, ceiling)
        return max(delay, retry_after) if retry_after is not None else delay

    async def _once(self, method: str, url: str, data: bytes | None) -> dict[str, Any]:
        session, semaphore = self._state()
        async with semaphore, self._reaching(url), session.request(method, url, data=data) as response:
            raw = await response.read()
            status = response.status
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        if status >= 400:
            raise self._http_error(status, url, raw, retry_after)
        return self._json_object(url, raw, status=status, shown=lambda: upstream_message(raw))

    async def _open_stream(self, url: str, data: bytes) -> _OpenStream:
        """Send the request and wait for the first bytes of the body; every failure so far is retryable."""
        session, semaphore = self._state()
        await semaphore.acquire()
        response: aiohttp.ClientResponse | None = None
        try:
            async with self._reaching(url):
                response = await session.post(url, data=data, headers={"Accept": "text/event-stream"})
                if response.status >= 400:
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                    raise self._http_error(response.status, url, await response.read(), retry_after)
                if response.content_type == "application/json":
                    raise BackendError(
                        self.redact(
                            f"backend {self.name!r} ({url}) answered a streaming request with one JSON body "
                            f"({self._quote(await response.read())!r}); the server does not support "
                            "stream=true, use generate instead"
                        ),
                        backend=self.name,
                        url=url,
                    )
                first = await response.content.readany()
        except BaseException:
            if response is not None:
                response.close()
            semaphore.release()
            raise
        return _OpenStream(response, semaphore, first)

    async def _read_more(self, response: aiohttp.ClientResponse, url: str) -> bytes:
        """The next bytes of a started stream (b"" at its end); a failure here is not retried."""
        try:
            async with self._reaching(url):
                return await response.content.readany()
        except UpstreamUnreachable as error:
            error.args = (f"{error} (the stream broke after it started; not retried, the text so far was delivered)",)
            raise

    def _event(self, url: str, data: str) -> dict[str, Any]:
        """One event's JSON object; an error envelope raises UpstreamHTTPError with its message."""
        parsed = self._json_object(url, data, shown=lambda: data)
        error = parsed.get("error")
        if error:
            code = error.get("code") if isinstance(error, dict) else None
            status = code if isinstance(code, int) and 400 <= code <= 599 else 500
            message = upstream_message(data.encode(), (self._api_key,))
            raise UpstreamHTTPError(
                self.redact(
                    f"backend {self.name!r} ({url}) sent an error in the middle of the stream: {message}; "
                    "the upstream server failed, check its logs"
                ),
                status=status,
                backend=self.name,
                url=url,
            )
        return parsed

    def _json_object(
        self, url: str, raw: str | bytes, *, shown: Callable[[], str], status: int | None = None
    ) -> dict[str, Any]:
        """``raw`` parsed as a JSON object (a response body with ``status``, else a stream event); anything
        else is a BackendError quoting ``shown()`` (redacted), which is only computed then."""
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
        arrived = "sent a stream event" if status is None else f"answered {status} with a body"
        raise BackendError(
            self.redact(
                f"backend {self.name!r} ({url}) {arrived} that is not a JSON object: "
                f"{self.redact(shown(), limit=MAX_QUOTE_CHARS)!r}; check that the base URL points at an "
                "OpenAI-compatible API (it usually ends in /v1)"
            ),
            backend=self.name,
            url=url,
        )

    def _reaching(self, url: str) -> _Reaching:
        """Turn aiohttp's timeouts and connection failures into UpstreamUnreachable (which is retryable)."""
        return _Reaching(self, url)

    def _http_error(self, status: int, url: str, raw: bytes, retry_after: float | None) -> UpstreamHTTPError:
        message = upstream_message(raw, (self._api_key,))
        text = f"backend {self.name!r} ({url}) returned {status}: {message}"
        hint = _HINTS.get(status)
        if status == 429:
            hint = "rate limited; lower max_concurrency or wait"
        elif status >= 500:
            hint = "the upstream server failed; check its logs"
        if hint:
            text += "; " + hint.format(base=self.base_url)
        return UpstreamHTTPError(self.redact(text), status=status, backend=self.name, url=url, retry_after=retry_after)

    def _unreachable(self, url: str, exc: BaseException, *, timeout: bool) -> UpstreamUnreachable:
        if timeout:
            detail = (
                f"did not answer in time (connect_timeout={self.connect_timeout:g} s, "
                f"read_timeout={self.read_timeout:g} s); check the server's load or raise the timeout"
            )
        else:
            reason = self.redact(str(exc), limit=MAX_MESSAGE_CHARS) or type(exc).__name__
            detail = f"could not be reached ({reason}); check that the server is running and the base URL is right"
        return UpstreamUnreachable(self.redact(f"backend {self.name!r} at {url} {detail}"), backend=self.name, url=url)

    def _quote(self, raw: bytes) -> str:
        """An upstream body shown in an error: its message (or text), redacted, then cut short."""
        return self.redact(upstream_message(raw, (self._api_key,)), limit=MAX_QUOTE_CHARS)


class _Reaching:
    """``async with client._reaching(url)``: a class rather than a generator, as it wraps every call."""

    __slots__ = ("client", "url")

    def __init__(self, client: HTTPClient, url: str) -> None:
        self.client, self.url = client, url

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
            raise self.client._unreachable(self.url, exc, timeout=True) from None
        if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
            raise self.client._unreachable(self.url, exc, timeout=False) from None


class _OpenStream:
    """A streamed response whose status is fine, the semaphore slot it holds, and its first bytes."""

    def __init__(self, response: aiohttp.ClientResponse, semaphore: asyncio.Semaphore, first: bytes) -> None:
        self.response = response
        self.semaphore = semaphore
        self.first = first


def _short_reason(exc: BackendError) -> str:
    if isinstance(exc, UpstreamHTTPError):
        return f"HTTP {exc.status}"
    return "unreachable"
