"""Small asyncio helpers shared across the package (no imports from it: any module may use them)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

__all__ = ["cancel_and_wait", "gather_or_cancel"]

T = TypeVar("T")


async def gather_or_cancel(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Like ``asyncio.gather``, but the first failure (or a cancellation of the caller) cancels the others
    and waits for them before it propagates: no call is left running behind the caller's back."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        await cancel_and_wait(tasks)
        raise


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` (those already done are left as they are) and wait until every one has finished;
    their results and exceptions are dropped. For a ``finally`` that must leave no task running."""
    pending = list(tasks)  # a copy: done callbacks may remove tasks from the caller's collection
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
