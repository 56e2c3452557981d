"""fusion-of-n: make, don't take, the best of N LLM samples."""

from .types import Aggregation, Candidate, Failure, Generation, Params, Request, Result, Usage

__all__ = sorted(["Aggregation", "Candidate", "Failure", "Generation", "Params", "Request", "Result", "Usage"])
