"""``auto``: per prompt, fuse or select, decided from the pool (the paper: BoN wins on closed-ended math,
fusion on open-ended tasks).

The rule (:func:`decide`), on the usable candidates:

- **closed-ended**: at least half of the candidates (and at least two, unless the pool has one)
  *commit* to a short final answer: a number or a multiple-choice letter marked as final
  (:func:`fusion_of_n.answers.explicit_answer`: ``\\boxed{}``, ``#### N``, "the answer is ..." in
  12 languages, "the correct option is C") or, failing a marker, a number in the candidate's last
  sentence (short answers such as "17 + 25 = 42." commit; an essay whose last sentence has no
  number does not). Then ``vote`` decides; when the vote ties and a scorer is configured
  (``--judge``/``--reward`` given explicitly), BoN breaks the tie among the candidates that carry a
  tied answer (``vote+bon``).
- **open-ended**: everything else goes to ``fusion``.

The Aggregation keeps the deciding method's text, choice, scores, flags and usage; ``method`` is
``auto`` and ``extra`` adds ``strategy`` ("vote", "vote+bon" or "fusion") and ``evidence``, a sentence
such as "4 of 5 candidates gave a numeric final answer", which records, the CLI's ``--json`` and the
proxy's ``fusion_of_n`` extension carry. The rule reads each candidate's end
(:func:`fusion_of_n.answers.examined_tail`) in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace

from ..answers import examined_tail, explicit_answer, extract_answer
from ..errors import ConfigError
from ..types import Aggregation, Candidate, Request
from .base import AggregatorOptions, register
from .bon import BestOfN
from .fusion import Fusion
from .vote import MajorityVote

__all__ = ["Auto", "committed_answer", "decide"]

_LETTER = re.compile(r"^[A-J]$")
_NUMERIC = re.compile(r"^-?\d+(?:\.\d+)?(?:/\d+)?$")
_SENTENCES = re.compile(r"(?<=[.!?。！？])\s+|\n+")


def committed_answer(text: str) -> tuple[str, str] | None:
    """(answer, kind) when ``text`` commits to a short final answer: kind "numeric" or "choice"."""
    answer = explicit_answer(text)
    if answer is None:
        sentences = [s for s in _SENTENCES.split(examined_tail(text).strip()) if s.strip()]
        answer = extract_answer(sentences[-1]) if sentences else None
    if answer is None:
        return None
    kind = "choice" if _LETTER.match(answer) else "numeric" if _NUMERIC.match(answer) else None
    return (answer, kind) if kind else None


def decide(candidates: Sequence[Candidate]) -> tuple[str, str]:
    """("select" | "fuse", the evidence sentence) for a pool (module docstring)."""
    found = [committed_answer(c.text) for c in candidates]
    kinds = Counter(kind for item in found if item for kind in [item[1]])
    committed = sum(kinds.values())
    total = len(candidates)
    kind = "numeric" if kinds["numeric"] >= kinds["choice"] else "multiple-choice"
    enough = committed * 2 >= total and (committed >= 2 or total == 1)
    evidence = f"{committed} of {total} candidates gave a {kind} final answer"
    return ("select", evidence) if enough and committed else ("fuse", evidence)


@register("auto", uses=["fusor"])  # its BoN tie-break is optional
@dataclass(frozen=True)
class Auto:
    """Select by vote (BoN breaks ties when ``tie_break`` is set) on closed-ended pools, else fuse."""

    fusion: Fusion
    vote: MajorityVote = field(default_factory=MajorityVote)
    tie_break: BestOfN | None = None
    name: str = "auto"

    @classmethod
    def build(cls, options: AggregatorOptions) -> Auto:
        if options.fusor is None:
            raise ConfigError("auto fuses open-ended prompts: pass --fusor SPEC (default: the first --model)")
        tie_break = BestOfN(options.scorer) if options.scorer is not None else None
        return cls(Fusion.build(options), tie_break=tie_break)

    async def aggregate(self, request: Request, candidates: Sequence[Candidate]) -> Aggregation:
        choice, evidence = await asyncio.to_thread(decide, candidates)
        if choice == "fuse":
            return _labelled(await self.fusion.aggregate(request, candidates), "fusion", evidence)
        return await self._select(request, candidates, evidence)

    async def astream(self, request: Request, candidates: Sequence[Candidate]) -> AsyncIterator[str | Aggregation]:
        choice, evidence = await asyncio.to_thread(decide, candidates)
        if choice == "fuse":
            async for event in self.fusion.astream(request, candidates):
                yield _labelled(event, "fusion", evidence) if isinstance(event, Aggregation) else event
            return
        decision = await self._select(request, candidates, evidence)
        yield decision.text
        yield decision

    async def _select(self, request: Request, candidates: Sequence[Candidate], evidence: str) -> Aggregation:
        voted = await self.vote.aggregate(request, candidates)
        if "vote_tie" not in voted.flags or self.tie_break is None:
            return _labelled(voted, "vote", evidence)
        scores = voted.scores or {}
        top = max((s for s in scores.values() if s is not None), default=None)
        tied = [c for c in candidates if top is not None and scores.get(c.index) == top]
        judged = await self.tie_break.aggregate(request, tied)
        merged = replace(judged, flags=(*voted.flags, *judged.flags))
        return _labelled(merged, "vote+bon", f"{evidence}; the vote tied, BoN chose among {len(tied)}")


def _labelled(decision: Aggregation, strategy: str, evidence: str) -> Aggregation:
    return replace(decision, method="auto", extra={**decision.extra, "strategy": strategy, "evidence": evidence})
