"""Best-of-N: score every candidate and return the best one unchanged (``bon``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError, FusionOfNError
from ..scorers.base import Scorer
from ..types import Aggregation, Candidate, Request
from .base import AggregatorOptions, register

logger = logging.getLogger(__name__)


@register("bon", uses=["scorer"])
@dataclass(frozen=True)
class BestOfN:
    """Pick the highest-scored candidate; ties go to the lowest pool index.

    Unscored candidates (score ``None``, or NaN) never win. If none could be scored, the first
    candidate is returned with the flag ``all_unscored``, and the scorer's flags say why.
    """

    scorer: Scorer
    name: str = field(default="bon", init=False)

    @classmethod
    def build(cls, options: AggregatorOptions) -> BestOfN:
        if options.scorer is None:
            raise ConfigError("bon needs a scorer: pass --judge SPEC or --reward SPEC")
        return cls(options.scorer)

    async def aggregate(self, request: Request, candidates: Sequence[Candidate]) -> Aggregation:
        if not candidates:
            raise ValueError("bon needs at least one candidate")
        scoring = await self.scorer.score(request, candidates)
        if len(scoring.scores) != len(candidates):
            raise FusionOfNError(
                f"scorer {self.scorer.name!r} returned {len(scoring.scores)} score(s) for "
                f"{len(candidates)} candidate(s); a Scorer must return one score per candidate, in order"
            )
        scores = {c.index: s for c, s in zip(candidates, scoring.scores, strict=True)}
        scored = [
            (s, c) for c, s in zip(candidates, scoring.scores, strict=True) if s is not None and not math.isnan(s)
        ]
        flags = list(scoring.flags)
        if scored:
            best_score = max(s for s, _ in scored)
            chosen = min((c for s, c in scored if s == best_score), key=lambda c: c.index)
        else:
            chosen = min(candidates, key=lambda c: c.index)
            flags.append("all_unscored")
            logger.warning("bon: scorer %s could not score any of %d candidates", self.scorer.name, len(candidates))
        return Aggregation(
            text=chosen.text,
            method=self.name,
            chosen=chosen.index,
            scores=scores,
            flags=tuple(flags),
            usage={"scoring": scoring.usage},
            extra={"scorer": self.scorer.name},
        )
