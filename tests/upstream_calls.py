"""Fake-upstream script steps for the proxy tests: tell the fusor's call from a sampling call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fusion_of_n.testing import Reply


def is_fusor(body: Any) -> bool:
    """Whether a chat-completions body is the fusor's call: its last message lists the candidate responses."""
    return "candidate responses" in str(body["messages"][-1]["content"])


def fusing_step(candidate: str, fusion: str, *, delay: float = 0.0) -> Callable[[Any], Reply]:
    """A script step: every sampling call gets ``candidate``; the fusor's call gets ``fusion`` after ``delay`` s."""

    def step(body: Any) -> Reply:
        return Reply(fusion, delay=delay) if is_fusor(body) else Reply(candidate)

    return step
