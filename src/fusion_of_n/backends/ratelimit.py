"""Keep a backend under a requests-per-minute and a tokens-per-minute budget (``--rpm``, ``--tpm``).

:class:`RateLimited` wraps any :class:`~fusion_of_n.backends.base.Backend` (and is a
:class:`~fusion_of_n.backends.base.StreamingBackend` when the wrapped one streams). Each budget is a
token bucket holding one minute's worth, full at the start and refilled continuously, so a run may
burst one minute's budget and then proceeds at the steady rate.

What a call costs:

- requests: one per ``generate`` / ``stream`` call (an ``n=N`` call is one request); when the
  backend reports more upstream calls in ``Usage.calls`` (it fell back to single requests), the
  extra ones are charged afterwards;
- tokens: the completion size is unknown in advance, so a call reserves an estimate first:
  ``ceil(prompt characters / 4) + n * max_tokens`` (``DEFAULT_COMPLETION_TOKENS`` per choice when
  ``Params.max_tokens`` is unset). When the call ends the bucket is settled with the real usage: the
  unused part is refunded, an excess is charged. A backend that reports no tokens (``total_tokens ==
  0``) is settled with ``characters / 4`` of prompt and answer text instead; a failed call keeps its
  prompt estimate and refunds the completion part (a stream closed early also keeps the text it
  streamed). ``Usage.calls == 0`` counts as one request, never as a refund.

Waiting is FIFO: calls take their budget in arrival order, so a large request is never starved by
a stream of small ones behind it. Only the wait for budget is serialized; the calls themselves run
concurrently, up to the wrapped backend's own concurrency limit.

A call larger than a whole minute's budget (a huge prompt under a small ``--tpm``, or ``--rpm``
below 1) would never fit; it goes through alone once its bucket is full and leaves the bucket in
debt, so the calls after it wait until the budget has paid it off. A bucket never sinks below minus
one minute's budget (whether from such a call or from an excess charge), so one misreported usage
delays the next call by at most two minutes. Accounting in debt, rather than stopping at zero, is
what keeps the real rate under the limit when chars/4 underestimates (CJK text) or ``--rpm`` < 1.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..types import Delta, Generation, Request, Usage, message_text
from .base import Backend, StreamingBackend

log = logging.getLogger(__name__)

DEFAULT_COMPLETION_TOKENS = 1024
"""Tokens reserved per choice when a request sets no ``max_tokens``."""

CHARS_PER_TOKEN = 4
_EPSILON = 1e-9

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]


def _check_rate(flag: str, rate: float | None) -> float | None:
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        raise ConfigError(f"{flag} must be a number > 0, got {rate!r}; leave {flag} out for no limit")
    return float(rate)


def _text_tokens(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


def prompt_estimate(request: Request) -> int:
    """The prompt's size in tokens as the limiter estimates it: characters / 4, rounded up."""
    return _text_tokens(sum(len(message_text(m)) for m in request.messages))


class _Bucket:
    """A token bucket of ``capacity`` per minute; ``level`` may go down to ``-capacity`` (debt)."""

    def __init__(self, flag: str, per_minute: float, now: float) -> None:
        self.flag = flag
        self.capacity = per_minute
        self.level = per_minute
        self.updated = now

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.level = min(self.capacity, self.level + elapsed * self.capacity / 60.0)
        self.updated = now

    def wait(self, cost: float) -> float:
        """Seconds until ``cost`` may be taken (an oversized cost waits for a full bucket)."""
        needed = min(cost, self.capacity)
        missing = needed - self.level
        return 0.0 if missing <= _EPSILON * max(1.0, needed) else missing * 60.0 / self.capacity

    def add(self, amount: float) -> None:
        """Give back (``amount > 0``) or charge (``amount < 0``), kept within [-capacity, capacity]."""
        self.level = max(-self.capacity, min(self.capacity, self.level + amount))


@dataclass(frozen=True)
class _Cost:
    requests: int
    tokens: int
    prompt_tokens: int


class RateLimited:
    """``inner`` kept under ``rpm`` requests and ``tpm`` tokens per minute (either may be None).

    ``clock`` and ``sleep`` are injectable so tests run on a fake clock. Closing this closes ``inner``.
    """

    def __new__(cls, inner: Backend, **_: Any) -> RateLimited:
        if cls is RateLimited and isinstance(inner, StreamingBackend):
            cls = StreamingRateLimited
        return super().__new__(cls)

    def __init__(
        self,
        inner: Backend,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        completion_tokens: int = DEFAULT_COMPLETION_TOKENS,
    ) -> None:
        rpm, tpm = _check_rate("--rpm", rpm), _check_rate("--tpm", tpm)
        if completion_tokens < 1:
            raise ConfigError(f"completion_tokens must be at least 1, got {completion_tokens}")
        self.inner = inner
        self.name = inner.name
        self.rpm, self.tpm = rpm, tpm
        self.completion_tokens = completion_tokens
        self._clock, self._sleep = clock, sleep
        now = clock()
        self._requests = _Bucket("--rpm", rpm, now) if rpm is not None else None
        self._tokens = _Bucket("--tpm", tpm, now) if tpm is not None else None
        self._turn = asyncio.Lock()  # FIFO: asyncio.Lock wakes its waiters in arrival order
        self._refunded = asyncio.Event()
        self._warned_throttle = False
        self._warned_oversize: set[str] = set()

    def __repr__(self) -> str:
        return f"RateLimited({self.inner!r}, rpm={self.rpm}, tpm={self.tpm})"

    @property
    def requests_available(self) -> float | None:
        """Requests that could start now (None without ``rpm``; negative while in debt)."""
        return self._level(self._requests)

    @property
    def tokens_available(self) -> float | None:
        """Tokens that could be reserved now (None without ``tpm``; negative while in debt)."""
        return self._level(self._tokens)

    def _level(self, bucket: _Bucket | None) -> float | None:
        if bucket is None:
            return None
        bucket.refill(self._clock())
        return bucket.level

    def estimate(self, request: Request, n: int = 1) -> int:
        """Tokens reserved for a call: the prompt estimate plus ``n`` times the completion limit."""
        per_choice = request.params.max_tokens or self.completion_tokens
        return prompt_estimate(request) + max(1, n) * per_choice

    async def generate(self, request: Request, *, n: int = 1) -> Generation:
        cost = await self._acquire(request, n)
        generation: Generation | None = None
        try:
            generation = await self.inner.generate(request, n=n)
            return generation
        finally:
            if generation is None:
                self._settle(cost, None, 0)
            else:
                self._settle(cost, generation.usage, sum(len(c.text) for c in generation.candidates))

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def _acquire(self, request: Request, n: int) -> _Cost:
        tokens = self.estimate(request, n) if self._tokens is not None else 0
        cost = _Cost(1, tokens, prompt_estimate(request) if self._tokens is not None else 0)
        charges = [(b, c) for b, c in ((self._requests, cost.requests), (self._tokens, cost.tokens)) if b is not None]
        if not charges:
            return cost
        for bucket, amount in charges:
            if amount > bucket.capacity and bucket.flag not in self._warned_oversize:
                self._warned_oversize.add(bucket.flag)
                log.warning(
                    "%s: a request needs ~%d, more than %s %g allows in a minute; sending it alone when the "
                    "budget is full (raise %s to avoid the wait)",
                    self.name,
                    amount,
                    bucket.flag,
                    bucket.capacity,
                    bucket.flag,
                )
        async with self._turn:
            while True:
                now = self._clock()
                for bucket, _ in charges:
                    bucket.refill(now)
                wait = max(bucket.wait(amount) for bucket, amount in charges)
                if wait <= 0:
                    for bucket, amount in charges:
                        bucket.add(-amount)
                    return cost
                self._note_throttle(wait)
                await self._nap(wait)

    def _note_throttle(self, wait: float) -> None:
        if not self._warned_throttle:
            self._warned_throttle = True
            log.info(
                "%s: rate limit reached (rpm=%s, tpm=%s); requests now wait their turn", self.name, self.rpm, self.tpm
            )
        log.debug("%s: waiting %.3f s for rate-limit budget", self.name, wait)

    async def _nap(self, seconds: float) -> None:
        """Sleep ``seconds`` or until a finished call refunds budget, whichever comes first."""
        self._refunded.clear()
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        waker = asyncio.ensure_future(self._refunded.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    def _settle(self, cost: _Cost, usage: Usage | None, completion_chars: int) -> None:
        """Replace the reservation by what the call really used (refund or charge the difference).

        ``usage`` is None when the call failed or was cancelled; ``completion_chars`` is the length of
        the text it returned (the estimate when no token counts are reported).
        """
        now = self._clock()
        refunded = False
        if self._requests is not None and usage is not None and usage.calls > cost.requests:
            self._requests.refill(now)  # calls == 0 means "not counted", never "no request was made"
            self._requests.add(cost.requests - usage.calls)
        if self._tokens is not None:
            if usage is not None and usage.total_tokens > 0:
                used = usage.total_tokens
            else:  # failed, cancelled, or no token counts reported: estimate from the text
                used = cost.prompt_tokens + _text_tokens(completion_chars)
            self._tokens.refill(now)
            self._tokens.add(cost.tokens - max(0, used))
            refunded = refunded or used < cost.tokens
        if refunded:
            self._refunded.set()


class StreamingRateLimited(RateLimited):
    """The :class:`RateLimited` of a streaming backend: ``stream`` calls take budget too.

    ``RateLimited(inner)`` returns one of these when ``inner`` is a StreamingBackend.
    """

    inner: StreamingBackend

    async def stream(self, request: Request) -> AsyncIterator[Delta]:
        cost = await self._acquire(request, 1)
        usage: Usage | None = None
        chars = 0
        deltas = self.inner.stream(request)
        try:
            async for delta in deltas:
                chars += len(delta.text)
                if delta.usage is not None:
                    usage = delta.usage
                yield delta
        finally:
            try:
                close = getattr(deltas, "aclose", None)
                if close is not None:
                    await close()
            finally:
                self._settle(cost, usage, chars)


def wrap(backend: Backend, rpm: float | None, tpm: float | None) -> Backend:
    """``backend`` under ``--rpm`` / ``--tpm`` limits, or ``backend`` itself when both are None."""
    if rpm is None and tpm is None:
        return backend
    return RateLimited(backend, rpm=rpm, tpm=tpm)


__all__ = ["DEFAULT_COMPLETION_TOKENS", "RateLimited", "StreamingRateLimited", "prompt_estimate", "wrap"]
