"""Scorers rate candidates for Best-of-N: an LLM judge or a reward model (local or remote)."""

from .base import Scorer, Scoring
from .factory import create_scorer
from .judge import LLMJudge
from .reward import LocalRewardModel, RemoteRewardModel

__all__ = ["LLMJudge", "LocalRewardModel", "RemoteRewardModel", "Scorer", "Scoring", "create_scorer"]
