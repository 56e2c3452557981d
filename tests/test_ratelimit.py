"""RateLimited: --rpm / --tpm token buckets on a fake clock (nothing here really waits)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import pytest

from fusion_of_n.backends.base import Backend, StreamingBackend
from fusion_of_n.backends.ratelimit import DEFAULT_COMPLETION_TOKENS, RateLimited, prompt_estimate, wrap
from fusion_of_n.errors import ConfigError, UpstreamHTTPError
from fusion_of_n.testing import FakeBackend, HTTPFault, Reply
from fusion_of_n.types import Candidate, Generation, Params, Request, Usage


class FakeTime:
    """A clock that only moves when the limiter sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        assert self.now < 86_400, "the limiter kept sleeping for a fake day: it deadlocked"
        await asyncio.sleep(0)


UsageFor = Callable[[Request, int], Usage]


def exact_usage(request: Request, n: int) -> Usage:
    """Usage equal to what the limiter reserves, so settling changes nothing."""
    return Usage(1, prompt_estimate(request), n * (request.params.max_tokens or DEFAULT_COMPLETION_TOKENS))


class Inner:
    """A non-streaming backend that records when (fake time) each call started and how many overlap."""

    def __init__(self, time: FakeTime, usage: UsageFor = exact_usage, gate: asyncio.Event | None = None) -> None:
        self.name = "inner:model"
        self.time = time
        self.usage = usage
        self.gate = gate
        self.started: list[tuple[str, float]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.closed = False

    async def generate(self, request: Request, *, n: int = 1) -> Generation:
        self.started.append((request.last_user_text, self.time.now))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            candidates = tuple(Candidate("answer", self.name, "stop", index=i) for i in range(n))
            return Generation(candidates, self.usage(request, n))
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        self.closed = True


def ask(text: str, max_tokens: int = 100) -> Request:
    return Request.from_prompt(text, params=Params(max_tokens=max_tokens))


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


async def test_120_calls_at_60_rpm_burst_one_minute_then_one_per_second(time: FakeTime) -> None:
    inner = Inner(time)
    limited = RateLimited(inner, rpm=60, clock=time.clock, sleep=time.sleep)
    await asyncio.gather(*(limited.generate(ask(f"q{i}")) for i in range(120)))
    starts = [at for _, at in inner.started]
    assert starts[:60] == [0.0] * 60
    assert starts[60:] == pytest.approx([float(k) for k in range(1, 61)])
    assert time.now == pytest.approx(60.0)


async def test_calls_start_in_arrival_order_when_throttled(time: FakeTime) -> None:
    inner = Inner(time)
    limited = RateLimited(inner, rpm=2, clock=time.clock, sleep=time.sleep)
    await asyncio.gather(*(limited.generate(ask(f"q{i}")) for i in range(6)))
    assert [label for label, _ in inner.started] == [f"q{i}" for i in range(6)]
    assert [at for _, at in inner.started] == pytest.approx([0, 0, 30, 60, 90, 120])


async def test_a_call_with_n_samples_counts_as_one_request(time: FakeTime) -> None:
    inner = Inner(time)
    limited = RateLimited(inner, rpm=2, clock=time.clock, sleep=time.sleep)
    for i in range(3):
        generation = await limited.generate(ask(f"q{i}"), n=5)
        assert len(generation.candidates) == 5
    assert [at for _, at in inner.started] == pytest.approx([0, 0, 30])


async def test_extra_upstream_calls_reported_in_usage_are_charged(time: FakeTime) -> None:
    inner = Inner(time, usage=lambda request, n: Usage(n, 1, 1))  # the backend fell back to n single requests
    limited = RateLimited(inner, rpm=10, clock=time.clock, sleep=time.sleep)
    await limited.generate(ask("q"), n=4)
    assert limited.requests_available == pytest.approx(6)


async def test_usage_without_a_call_count_still_counts_one_request(time: FakeTime) -> None:
    limited = RateLimited(Inner(time, usage=lambda request, n: Usage()), rpm=10, clock=time.clock, sleep=time.sleep)
    await limited.generate(ask("q"))
    assert limited.requests_available == 9


async def test_a_cancelled_waiting_call_takes_no_budget_and_lets_the_next_one_through(time: FakeTime) -> None:
    async def endless_sleep(seconds: float) -> None:
        await asyncio.Event().wait()

    inner = Inner(time)
    limited = RateLimited(inner, tpm=1000, clock=time.clock, sleep=endless_sleep)
    await limited.generate(ask("first", max_tokens=898))  # 2 + 898: leaves 100
    waiting = asyncio.create_task(limited.generate(ask("big", max_tokens=499)))  # needs 500
    await asyncio.sleep(0)
    small = asyncio.create_task(limited.generate(ask("s", max_tokens=49)))  # 50 fits, but queues behind "big"
    await asyncio.sleep(0)
    assert not small.done()
    waiting.cancel()
    await asyncio.wait_for(small, timeout=5)
    assert [label for label, _ in inner.started] == ["first", "s"]
    assert limited.tokens_available == 50


async def test_below_one_rpm_spaces_requests_by_sixty_over_rpm(time: FakeTime) -> None:
    inner = Inner(time)
    limited = RateLimited(inner, rpm=0.5, clock=time.clock, sleep=time.sleep)
    await asyncio.gather(*(limited.generate(ask(f"q{i}")) for i in range(3)))
    assert [at for _, at in inner.started] == pytest.approx([0, 120, 240])


async def test_tpm_reserves_prompt_over_four_plus_max_tokens_per_choice(time: FakeTime) -> None:
    gate = asyncio.Event()
    limited = RateLimited(Inner(time, gate=gate), tpm=10_000, clock=time.clock, sleep=time.sleep)
    request = ask("x" * 41, max_tokens=500)  # 41 characters -> 11 tokens
    call = asyncio.create_task(limited.generate(request, n=3))
    await asyncio.sleep(0)
    assert limited.tokens_available == 10_000 - (11 + 3 * 500)
    gate.set()
    await call


async def test_tpm_refunds_the_unused_reservation_after_the_call(time: FakeTime) -> None:
    inner = Inner(time, usage=lambda request, n: Usage(1, 12, 30))
    limited = RateLimited(inner, tpm=10_000, clock=time.clock, sleep=time.sleep)
    await limited.generate(ask("x" * 40, max_tokens=500))
    assert limited.tokens_available == 10_000 - 42


async def test_tpm_charges_usage_beyond_the_reservation(time: FakeTime) -> None:
    inner = Inner(time, usage=lambda request, n: Usage(1, 900, 1100))  # e.g. CJK: far more tokens than chars/4
    limited = RateLimited(inner, tpm=10_000, clock=time.clock, sleep=time.sleep)
    await limited.generate(ask("x" * 40, max_tokens=500))
    assert limited.tokens_available == 10_000 - 2000


async def test_tpm_debt_is_capped_at_one_minute_of_budget(time: FakeTime) -> None:
    inner = Inner(time, usage=lambda request, n: Usage(1, 0, 10**9))
    limited = RateLimited(inner, tpm=1000, clock=time.clock, sleep=time.sleep)
    await limited.generate(ask("q", max_tokens=10))
    assert limited.tokens_available == -1000
    await limited.generate(ask("again", max_tokens=10))  # 2 + 10 tokens: waits for 1012 tokens of refill
    assert time.now == pytest.approx(1012 * 60 / 1000)


async def test_usage_without_token_counts_is_settled_from_the_text(time: FakeTime) -> None:
    inner = Inner(time, usage=lambda request, n: Usage(1, 0, 0))  # a server that reports no usage
    limited = RateLimited(inner, tpm=10_000, clock=time.clock, sleep=time.sleep)
    await limited.generate(ask("x" * 40, max_tokens=500), n=2)  # answers "answer" twice: 12 chars -> 3 tokens
    assert limited.tokens_available == 10_000 - (10 + 3)


async def test_a_failed_call_keeps_its_request_and_prompt_estimate_only(time: FakeTime) -> None:
    backend = FakeBackend([HTTPFault(500)])
    limited = RateLimited(backend, rpm=10, tpm=10_000, clock=time.clock, sleep=time.sleep)
    with pytest.raises(UpstreamHTTPError):
        await limited.generate(ask("x" * 40, max_tokens=500))
    assert limited.requests_available == 9
    assert limited.tokens_available == 10_000 - 10


async def test_refill_is_continuous(time: FakeTime) -> None:
    limited = RateLimited(Inner(time), tpm=600, clock=time.clock, sleep=time.sleep)
    await limited.generate(ask("x" * 40, max_tokens=290))  # 300 tokens
    time.now += 10.0  # 600 per minute = 10 per second
    assert limited.tokens_available == pytest.approx(400)
    time.now += 3600.0
    assert limited.tokens_available == pytest.approx(600)  # never above one minute's budget


async def test_a_large_request_is_not_starved_by_small_ones_behind_it(time: FakeTime) -> None:
    inner = Inner(time)
    limited = RateLimited(inner, tpm=1000, clock=time.clock, sleep=time.sleep)
    await limited.generate(ask("first", max_tokens=598))  # 2 + 598: leaves 400
    big = asyncio.create_task(limited.generate(ask("big", max_tokens=899)))  # 1 + 899 = 900
    await asyncio.sleep(0)
    smalls = [asyncio.create_task(limited.generate(ask(f"s{i}", max_tokens=49))) for i in range(5)]  # 50 each
    await asyncio.gather(big, *smalls)
    assert [label for label, _ in inner.started] == ["first", "big", "s0", "s1", "s2", "s3", "s4"]
    big_at = dict(inner.started)["big"]
    assert big_at == pytest.approx(500 * 60 / 1000)  # it waited for its 900, the smalls waited behind it


async def test_a_request_larger_than_the_budget_goes_alone_when_the_bucket_is_full(time: FakeTime) -> None:
    inner = Inner(time)
    limited = RateLimited(inner, tpm=100, clock=time.clock, sleep=time.sleep)
    await limited.generate(ask("small", max_tokens=48))  # 2 + 48 = 50: leaves 50
    await limited.generate(ask("huge", max_tokens=499))  # 500 > 100: waits for a full bucket, no deadlock
    await limited.generate(ask("next", max_tokens=9))  # 1 + 9 = 10, behind a debt of 100
    started = dict(inner.started)
    assert started["huge"] == pytest.approx(30.0)  # 50 missing at 100/min
    assert started["next"] == pytest.approx(30.0 + 110 * 60 / 100)


async def test_an_oversized_request_is_logged_once_with_the_flag_to_raise(
    time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    limited = RateLimited(Inner(time), tpm=100, clock=time.clock, sleep=time.sleep)
    with caplog.at_level("WARNING", logger="fusion_of_n.backends.ratelimit"):
        for i in range(3):
            await limited.generate(ask(f"q{i}", max_tokens=500))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "--tpm" in warnings[0] and "inner:model" in warnings[0]


async def test_a_refund_wakes_a_waiting_call_before_its_sleep_ends(time: FakeTime) -> None:
    async def endless_sleep(seconds: float) -> None:
        time.sleeps.append(seconds)
        await asyncio.Event().wait()

    gate = asyncio.Event()
    inner = Inner(time, usage=lambda request, n: Usage(1, 10, 90), gate=gate)
    limited = RateLimited(inner, tpm=1000, clock=time.clock, sleep=endless_sleep)
    first = asyncio.create_task(limited.generate(ask("first", max_tokens=898)))  # reserves 900, uses 100
    await asyncio.sleep(0)
    second = asyncio.create_task(limited.generate(ask("second", max_tokens=498)))  # needs 500, 100 left
    for _ in range(5):
        await asyncio.sleep(0)
    assert time.sleeps and [label for label, _ in inner.started] == ["first"]
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, second), timeout=5)
    assert [label for label, _ in inner.started] == ["first", "second"]
    assert time.now == 0.0


async def test_calls_within_budget_run_concurrently_without_waiting(time: FakeTime) -> None:
    gate = asyncio.Event()
    inner = Inner(time, gate=gate)
    limited = RateLimited(inner, rpm=100, tpm=100_000, clock=time.clock, sleep=time.sleep)
    calls = [asyncio.create_task(limited.generate(ask(f"q{i}"))) for i in range(10)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert inner.in_flight == 10
    gate.set()
    await asyncio.gather(*calls)
    assert inner.most_in_flight == 10
    assert time.sleeps == []


async def test_streams_take_budget_and_settle_with_the_final_usage(time: FakeTime) -> None:
    backend = FakeBackend([Reply("one two three", completion_tokens=3)])
    limited = RateLimited(backend, rpm=1, tpm=10_000, clock=time.clock, sleep=time.sleep)
    assert isinstance(limited, StreamingBackend)
    request = ask("a b", max_tokens=500)
    first = "".join([d.text async for d in limited.stream(request)])
    assert limited.tokens_available == 10_000 - (2 + 3)  # FakeBackend reports 2 prompt words, 3 completion
    second = "".join([d.text async for d in limited.stream(request)])
    assert first == second == "one two three"
    assert time.sleeps and time.now == pytest.approx(60.0)  # the second stream waited for the one-per-minute budget


async def test_closing_a_stream_early_closes_the_inner_stream_and_settles(time: FakeTime) -> None:
    backend = FakeBackend(["alpha beta gamma delta"])
    limited = RateLimited(backend, tpm=10_000, clock=time.clock, sleep=time.sleep)
    assert isinstance(limited, StreamingBackend)
    stream = limited.stream(ask("x" * 40, max_tokens=500))
    first = await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert first.text == "alpha"
    assert backend.cancelled == 1
    assert limited.tokens_available == 10_000 - (10 + math.ceil(len("alpha") / 4))


async def test_a_backend_without_stream_stays_non_streaming(time: FakeTime) -> None:
    limited = RateLimited(Inner(time), rpm=10)
    assert isinstance(limited, Backend)
    assert not isinstance(limited, StreamingBackend)


async def test_name_is_the_inner_name_and_aclose_closes_the_inner_backend(time: FakeTime) -> None:
    inner = Inner(time)
    limited = RateLimited(inner, tpm=100)
    assert limited.name == "inner:model"
    await limited.aclose()
    assert inner.closed


@pytest.mark.parametrize(
    ("rpm", "tpm", "flag"), [(0, None, "--rpm"), (-1, None, "--rpm"), (None, 0.0, "--tpm"), (None, math.nan, "--tpm")]
)
def test_rates_at_or_below_zero_are_config_errors_naming_the_flag(rpm: float, tpm: float, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        RateLimited(FakeBackend(), rpm=rpm, tpm=tpm)
    with pytest.raises(ConfigError, match=flag):
        wrap(FakeBackend(), rpm, tpm)


def test_wrap_returns_the_backend_itself_without_limits() -> None:
    backend = FakeBackend()
    assert wrap(backend, None, None) is backend
    limited = wrap(backend, 60, None)
    assert isinstance(limited, RateLimited) and limited.inner is backend and limited.rpm == 60
