"""Scorers rate candidates for Best-of-N: an LLM judge or a reward model."""

from .base import Scorer, Scoring

__all__ = ["Scorer", "Scoring"]
