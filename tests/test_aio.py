"""gather_or_cancel: results in order, or the first failure after the others are cancelled."""

from __future__ import annotations

import asyncio

import pytest

from fusion_of_n.aio import cancel_and_wait, gather_or_cancel


async def test_results_come_back_in_the_order_given() -> None:
    async def value(x: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return x

    assert await gather_or_cancel([value(1, 0.02), value(2, 0.0), value(3, 0.01)]) == [1, 2, 3]


async def test_the_first_failure_cancels_the_others_before_it_propagates() -> None:
    started, cancelled = asyncio.Event(), []

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def failing() -> None:
        await started.wait()
        raise ValueError("upstream down")

    with pytest.raises(ValueError, match="upstream down"):
        await gather_or_cancel([slow(), failing()])
    assert cancelled == [True]  # already cancelled and awaited when the error reached us


async def test_cancel_and_wait_leaves_no_task_running_and_keeps_finished_results() -> None:
    done = asyncio.ensure_future(asyncio.sleep(0, result="kept"))
    await done
    running = {asyncio.ensure_future(asyncio.sleep(60)), asyncio.ensure_future(asyncio.sleep(60))}
    await cancel_and_wait([done, *running])
    assert done.result() == "kept"
    assert all(task.cancelled() for task in running)
