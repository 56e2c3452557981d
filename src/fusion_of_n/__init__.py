"""fusion-of-n: make, don't take, the best of N LLM samples.

>>> import fusion_of_n
>>> result = fusion_of_n.run("Translate into German: The weather is nice today.", n=3)  # doctest: +SKIP
>>> result.text  # doctest: +SKIP
"""

from .api import Pipeline, arun, run
from .config import DEFAULT_MODEL, PipelineSettings
from .errors import (
    BackendError,
    ConfigError,
    FusionOfNError,
    MissingDependency,
    NotEnoughCandidates,
    UpstreamHTTPError,
    UpstreamUnreachable,
)
from .sampling import Pool
from .types import Aggregation, Candidate, Failure, Generation, Params, Request, Result, Usage

__version__ = "0.1.0"

__all__ = [
    "Aggregation",
    "BackendError",
    "Candidate",
    "ConfigError",
    "DEFAULT_MODEL",
    "Failure",
    "FusionOfNError",
    "Generation",
    "MissingDependency",
    "NotEnoughCandidates",
    "Params",
    "Pipeline",
    "PipelineSettings",
    "Pool",
    "Request",
    "Result",
    "UpstreamHTTPError",
    "UpstreamUnreachable",
    "Usage",
    "arun",
    "run",
]
