"""Build the Best-of-N scorer from a judge spec (or Backend) or a reward spec.

Reward specs::

    hf:/path/to/model                           a local Hugging Face reward model (see LocalRewardModel)
    hf:/path/to/model#batch_size=4,max_length=2048,device=cpu
    vllm:MODEL@http://host:port                 a vLLM server's /pooling endpoint (see RemoteRewardModel)
    vllm:MODEL@http://host:port#key_env=MY_KEY,max_concurrency=16

A ``vllm:`` spec reads its API key from the variable named by ``key_env`` (default: VLLM_API_KEY, if
set). ``env`` is passed in by config; this module never reads os.environ.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..backends.base import Backend, ModelSpec, create_backend
from ..errors import ConfigError
from .base import Scorer
from .judge import LLMJudge

DEFAULT_KEY_ENV = "VLLM_API_KEY"
REWARD_FORMS = "'hf:/path/to/model' (a local Hugging Face model) or 'vllm:MODEL@http://host:port' (a vLLM server)"


def create_scorer(
    judge: str | Backend | None = None, reward: str | None = None, env: Mapping[str, str] | None = None
) -> Scorer | None:
    """The scorer for ``--judge SPEC`` or ``--reward SPEC`` (None when neither is given)."""
    env = env or {}
    if judge is not None and reward is not None:
        raise ConfigError("give either a judge or a reward model to score candidates, not both")
    if judge is not None:
        if isinstance(judge, str):
            return LLMJudge(create_backend(judge, env), close_backend=True)
        return LLMJudge(judge)
    if reward is not None:
        return create_reward_model(reward, env)
    return None


def create_reward_model(text: str, env: Mapping[str, str]) -> Scorer:
    try:
        spec = ModelSpec.parse(text)
    except ConfigError:
        raise ConfigError(f"reward spec {text!r} is not understood; use {REWARD_FORMS}") from None
    if spec.provider == "hf":
        from .reward import LocalRewardModel

        if spec.base_url:
            raise ConfigError(f"reward spec {text!r}: hf: takes a local folder, not a URL; use {REWARD_FORMS}")
        spec.check_options({"batch_size", "max_length", "device"})
        max_length = spec.option("max_length")
        return LocalRewardModel(
            spec.model,
            batch_size=spec.int_option("batch_size", 8, minimum=1),
            max_length=spec.int_option("max_length", 0, minimum=1) if max_length else None,
            device=spec.option("device", "cpu") or "cpu",
        )
    if spec.provider == "vllm":
        from .reward import RemoteRewardModel

        if not spec.base_url:
            raise ConfigError(f"reward spec {text!r} needs the server's URL: 'vllm:{spec.model}@http://host:port'")
        spec.check_options({"key_env", "max_concurrency"})
        key_env = spec.option("key_env")
        if key_env and env.get(key_env) is None:
            raise ConfigError(
                f"reward spec {spec} reads its API key from {key_env}, but {key_env} is not set; "
                f"export {key_env}=... (an empty {key_env}= sends no key, for a keyless server) or remove key_env"
            )
        api_key = env.get(key_env or DEFAULT_KEY_ENV) or None
        return RemoteRewardModel(
            spec.base_url,
            spec.model,
            api_key=api_key,
            max_concurrency=spec.int_option("max_concurrency", 32, minimum=1),
        )
    raise ConfigError(f"unknown reward provider {spec.provider!r} in {text!r}; use {REWARD_FORMS}")
