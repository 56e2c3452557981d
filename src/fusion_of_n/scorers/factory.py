"""Build the Best-of-N scorer from a judge spec (or Backend) or a reward spec.

Reward specs::

    hf:/path/to/model                           a local Hugging Face reward model (see LocalRewardModel)
    hf:/path/to/model#batch_size=4,max_length=2048,device=cpu
    vllm:MODEL@http://host:port                 a vLLM server's /pooling endpoint (see RemoteRewardModel)
    vllm:MODEL@http://host:port#key_env=MY_KEY,max_concurrency=16

A ``vllm:`` spec reads its API key from the variable named by ``key_env`` (default: VLLM_API_KEY, if
set). Reward providers are registered with :func:`fusion_of_n.scorers.base.register_reward`. ``env``
is passed in by config; this module never reads os.environ.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..backends.base import Backend, ModelSpec, resolve_backend
from ..errors import ConfigError
from . import reward as _reward  # noqa: F401  (registers the built-in reward providers)
from .base import Scorer, reward_forms, reward_provider
from .judge import LLMJudge


def create_scorer(
    judge: str | Backend | None = None, reward: str | None = None, env: Mapping[str, str] | None = None
) -> Scorer | None:
    """The scorer for ``--judge SPEC`` or ``--reward SPEC`` (None when neither is given)."""
    env = env or {}
    if judge is not None and reward is not None:
        raise ConfigError("give either a judge or a reward model to score candidates, not both")
    if judge is not None:
        held = resolve_backend(judge, env)
        return LLMJudge(held.backend, close_backend=held.owned)
    if reward is not None:
        return create_reward_model(reward, env)
    return None


def create_reward_model(text: str, env: Mapping[str, str]) -> Scorer:
    """The reward-model scorer of a reward spec, built by its registered provider."""
    try:
        spec = ModelSpec.parse(text)
    except ConfigError:
        raise ConfigError(f"reward spec {text!r} is not understood; use {reward_forms()}") from None
    provider = reward_provider(spec.provider)
    if provider is None:
        raise ConfigError(f"unknown reward provider {spec.provider!r} in {text!r}; use {reward_forms()}")
    return provider.build(spec, env)
