from __future__ import annotations

import pytest

from fusion_of_n.errors import NotEnoughCandidates
from fusion_of_n.sampling import sample
from fusion_of_n.testing import FakeBackend, HTTPFault, Reply
from fusion_of_n.types import Request

REQUEST = Request.from_prompt("Name a colour.")


async def test_pool_indexes_candidates_across_models_and_keeps_provenance() -> None:
    a = FakeBackend(["red", "blue"], name="a")
    b = FakeBackend(["green", "pink"], name="b")
    pool = await sample([a, b], REQUEST, 2)
    assert [(c.index, c.model, c.text) for c in pool.candidates] == [
        (0, "a", "red"),
        (1, "a", "blue"),
        (2, "b", "green"),
        (3, "b", "pink"),
    ]
    assert [call.n for call in a.calls + b.calls] == [2, 2]  # one request per model, n at once
    assert pool.usage.calls == 2 and pool.usage.completion_tokens == 4


async def test_empty_and_truncated_candidates_are_flagged_and_excluded_not_replaced() -> None:
    backend = FakeBackend(["ok", "  ", Reply("cut mid", finish_reason="length")])
    pool = await sample([backend], REQUEST, 3)
    assert len(pool.candidates) == 3  # never padded or re-sampled
    assert [c.flags for c in pool.candidates] == [(), ("empty",), ("truncated",)]
    assert [c.index for c in pool.usable] == [0]
    assert len(backend.calls) == 1


async def test_failed_backend_is_recorded_when_enough_candidates_remain() -> None:
    good = FakeBackend(["x"], name="good")
    bad = FakeBackend([HTTPFault(500, "boom")], name="bad")
    pool = await sample([good, bad], REQUEST, 2, min_candidates=1)
    assert [c.model for c in pool.candidates] == ["good", "good"]
    assert len(pool.failures) == 1 and pool.failures[0].model == "bad" and "500" in pool.failures[0].error


async def test_below_min_candidates_raises_listing_every_upstream_failure() -> None:
    one = FakeBackend([HTTPFault(500, "first is down")], name="one")
    two = FakeBackend([HTTPFault(429, "second is busy")], name="two")
    with pytest.raises(NotEnoughCandidates) as info:
        await sample([one, two], REQUEST, 2)
    message = str(info.value)
    assert "first is down" in message and "second is busy" in message
    assert "min_candidates" in message


async def test_non_upstream_exceptions_are_not_swallowed() -> None:
    with pytest.raises(ZeroDivisionError):
        await sample([FakeBackend([ZeroDivisionError("bug")])], REQUEST, 1)


async def test_n_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await sample([FakeBackend()], REQUEST, 0)
