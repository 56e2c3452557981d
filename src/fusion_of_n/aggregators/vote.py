"""Majority vote (self-consistency, Wang et al. 2022) over the candidates' final answers.

Each candidate votes for the answer :func:`fusion_of_n.answers.extract_answer` finds in it;
candidates without an extractable answer do not vote. The winning answer is the most frequent one;
a tie goes to the answer whose first occurrence has the lowest pool index
(:func:`fusion_of_n.answers.majority_answer`, the rule accuracy's ``maj@k`` uses too). The returned text is the
full text of the lowest-index candidate carrying the winning answer. No LLM calls.

Scores: per candidate, the share of the votes cast that its answer received (None if it had no
answer). Flags: ``no_extractable_answer`` (no candidate states an answer: the first candidate is
returned), ``vote_tie`` (the winner shared the top count with another answer).

Extraction is CPU work (linear in a candidate's length, bounded by
:data:`fusion_of_n.answers.MAX_EXAMINED_CHARS`), so it runs in a worker thread: a pool of long
candidates never stalls the event loop, e.g. the proxy's other requests and ``/health``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..answers import extract_answer, majority_answer
from ..types import Aggregation, Candidate, Request
from .base import AggregatorOptions, register

logger = logging.getLogger(__name__)

_GIL_SLICE_SECONDS = 0.001


@register("vote")
@dataclass(frozen=True)
class MajorityVote:
    """Pick the most frequent final answer. ``extract`` maps a text to its answer (None = no vote);
    it runs in a worker thread, so it must not need the event loop."""

    extract: Callable[[str], str | None] = extract_answer
    name: str = "vote"

    @classmethod
    def build(cls, options: AggregatorOptions) -> MajorityVote:
        return cls()

    async def aggregate(self, request: Request, candidates: Sequence[Candidate]) -> Aggregation:
        pool = sorted(candidates, key=lambda c: c.index)
        found = await asyncio.to_thread(_extract_all, self.extract, [c.text for c in pool])
        answers = {c.index: answer for c, answer in zip(pool, found, strict=True)}
        winner = majority_answer(found)  # found is in pool order: a tie goes to the lowest index
        if winner is None:
            logger.debug("vote: none of %d candidates states an extractable answer", len(pool))
            return Aggregation(
                text=pool[0].text,
                method=self.name,
                chosen=pool[0].index,
                scores=dict.fromkeys(answers),
                flags=("no_extractable_answer",),
            )
        counts = Counter(answer for answer in found if answer is not None)
        winning = pool[found.index(winner)]
        votes = counts.total()
        top = counts[winner]
        flags = ("vote_tie",) if sum(1 for count in counts.values() if count == top) > 1 else ()
        tally = ", ".join(f"{answer!r}: {count}" for answer, count in counts.most_common())
        return Aggregation(
            text=winning.text,
            method=self.name,
            chosen=winning.index,
            scores={index: None if answer is None else counts[answer] / votes for index, answer in answers.items()},
            analysis=f"answer {winner!r} won {top} of {votes} vote(s) ({tally})",
            flags=flags,
        )


def _extract_all(extract: Callable[[str], str | None], texts: Sequence[str]) -> list[str | None]:
    """``extract`` over ``texts``, in a worker thread that releases the GIL about every millisecond:
    the event loop's thread then waits that long for it, not a forced switch's 5 ms at each of its
    system calls (``/health`` answers in a few ms instead of a few tens during a large vote)."""
    answers = []
    slice_start = time.perf_counter()
    for text in texts:
        answers.append(extract(text))
        if time.perf_counter() - slice_start >= _GIL_SLICE_SECONDS:
            time.sleep(0)  # releases the GIL; a waiting thread takes it at once
            slice_start = time.perf_counter()
    return answers
