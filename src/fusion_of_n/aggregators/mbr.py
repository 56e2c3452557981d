"""Minimum-Bayes-risk selection: the candidate that agrees most with the rest of the pool.

Every other candidate serves as a pseudo-reference. A candidate's expected utility is the mean of
chrF(candidate as hypothesis, other as reference) over the other candidates (sacrebleu's sentence
chrF; ``word_order=2`` gives chrF++). chrF is not symmetric, so all N*(N-1) ordered pairs are scored,
off the event loop. The highest mean wins; ties go to the lowest pool index. Scores are those means
(0-100). A single candidate is returned directly, unscored. No LLM calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from ..types import Aggregation, Candidate, Request
from .base import AggregatorOptions, register


def mbr_utilities(texts: Sequence[str], *, word_order: int = 0) -> list[float]:
    """Mean chrF of each text (as hypothesis) against every other text (as reference); needs 2+ texts."""
    from sacrebleu.metrics.chrf import CHRF

    if len(texts) < 2:
        raise ValueError("MBR needs at least two texts to compare")
    chrf = CHRF(word_order=word_order)
    means = []
    for i, hypothesis in enumerate(texts):
        total = sum(chrf.sentence_score(hypothesis, [ref]).score for j, ref in enumerate(texts) if j != i)
        means.append(total / (len(texts) - 1))
    return means


@register("mbr")
@dataclass(frozen=True)
class MBR:
    """Pick the candidate with the highest mean chrF against the others (``word_order=2``: chrF++)."""

    word_order: int = 0
    name: str = "mbr"

    @classmethod
    def build(cls, options: AggregatorOptions) -> MBR:
        return cls()

    async def aggregate(self, request: Request, candidates: Sequence[Candidate]) -> Aggregation:
        pool = sorted(candidates, key=lambda c: c.index)
        if len(pool) == 1:
            return Aggregation(text=pool[0].text, method=self.name, chosen=pool[0].index, scores={pool[0].index: None})
        utilities = await asyncio.to_thread(mbr_utilities, [c.text for c in pool], word_order=self.word_order)
        best = max(range(len(pool)), key=lambda i: (utilities[i], -pool[i].index))
        return Aggregation(
            text=pool[best].text,
            method=self.name,
            chosen=pool[best].index,
            scores={c.index: utility for c, utility in zip(pool, utilities, strict=True)},
        )
