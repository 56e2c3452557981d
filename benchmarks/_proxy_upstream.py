"""The fake upstream for ``benchmarks/proxy.py``: a FakeOpenAIServer in its own process.

It answers the prompts both proxies send well enough for them to finish: a rating prompt (ours or
OptiLLM's) gets a digit, our fusion prompt gets ``Comparison: ... [[answer]]``, OptiLLM's mixture-of-
agents critique and final prompts get short texts, anything else gets one of three candidate answers
in turn. It counts what it serves (requests, the ``n`` of each, prompt and completion tokens computed
exactly as the fake server computes ``usage``: whitespace words), so token totals are measured at the
upstream rather than trusted from what a proxy reports.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from _server_process import ServerProcess, Upstream

from fusion_of_n.testing import FakeOpenAIServer, count_tokens
from fusion_of_n.types import message_text

ANSWERS = (
    "The sky looks blue because air molecules scatter short blue wavelengths of sunlight far more than red ones.",
    "Rayleigh scattering: the molecules in the air scatter blue light about five times more strongly than red light.",
    "Sunlight is scattered by the atmosphere, and blue is scattered most, so blue reaches us from every direction.",
)
RATINGS = ("7", "9", "6")  # the rating each answer above gets, by index (all answers have 18 words)
FUSED = (
    "Comparison: Candidate 1 is correct and clear; candidate 2 names the effect; candidate 3 is vague about why. "
    "[[The sky looks blue because air molecules scatter short blue wavelengths of sunlight far more than red "
    "ones (Rayleigh scattering), so blue light reaches our eyes from every direction.]]"
)
CRITIQUE = "Candidate 1 is clear, candidate 2 names the effect but is terse, candidate 3 is vague."
OPTILLM_RATE_TURN = "Rate the above response:"


def _rating_for(text: str) -> str:
    """The digit for the answer quoted in ``text`` (the first known answer it contains)."""
    for answer, rating in zip(ANSWERS, RATINGS, strict=True):
        if answer in text:
            return rating
    return "5"


@dataclass
class Answerer:
    """The script step (a callable, called once per choice on the server's thread) and its counters."""

    _turn: itertools.count[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    choices: int = 0
    completion_tokens: int = 0

    def __call__(self, body: Mapping[str, Any]) -> str:
        reply = self.reply(body)
        with self._lock:
            self.choices += 1
            self.completion_tokens += count_tokens(reply)
        return reply

    def reply(self, body: Mapping[str, Any]) -> str:
        messages = [m for m in body.get("messages", []) if isinstance(m, Mapping)]
        texts = [message_text(m) for m in messages]
        everything = "\n".join(texts)
        last = texts[-1] if texts else ""
        if last.strip() == OPTILLM_RATE_TURN:  # OptiLLM bon: the rated answer is the assistant turn before
            return _rating_for(texts[-2] if len(texts) > 1 else "")
        if "write the word Rating" in last:  # our LLM judge
            return f"Rating: {_rating_for(last)}"
        if 'start with the word "Comparison"' in everything:  # our fusion prompt
            return FUSED
        if "provide your critique for each candidate" in last:  # OptiLLM moa, step 2
            return CRITIQUE
        if "provide a final, optimized response" in last:  # OptiLLM moa, step 3
            return ANSWERS[0]
        return ANSWERS[next(self._turn) % len(ANSWERS)]

    def reset(self) -> None:
        with self._lock:
            self.choices = 0
            self.completion_tokens = 0


def _stats(srv: FakeOpenAIServer, answerer: Answerer) -> dict[str, Any]:
    chats = [r.body for r in srv.requests if r.path == "/v1/chat/completions" and isinstance(r.body, dict)]
    prompt = sum(count_tokens(message_text(m)) for body in chats for m in body["messages"] if isinstance(m, Mapping))
    return {
        "requests": len(chats),
        "n_values": Counter(int(body.get("n", 1)) for body in chats),
        "choices": answerer.choices,
        "prompt_tokens": prompt,
        "completion_tokens": answerer.completion_tokens,
    }


def _upstream(latency: float) -> Upstream:
    """In the server's process: the fake server, answered and counted by an :class:`Answerer`."""
    answerer = Answerer()
    srv = FakeOpenAIServer(answerer, latency=latency)
    return Upstream(srv, lambda: _stats(srv, answerer), answerer.reset)


class UpstreamProcess(ServerProcess):
    """``with UpstreamProcess(latency=0.05) as up: up.url, up.reset(), up.stats()``."""

    def __init__(self, *, latency: float) -> None:
        super().__init__(_upstream, latency=latency)
        self.latency = latency
