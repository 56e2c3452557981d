"""Reward-model scorers: a local Hugging Face model, or a vLLM server's pooling endpoint.

Both score the chat *with the candidate as the assistant's reply* and return the model's raw reward
(a logit: higher is better, unbounded, only comparable within one model).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..aio import gather_or_cancel
from ..backends.base import ModelSpec
from ..errors import BackendError, ConfigError, MissingDependency
from ..http import HTTPClient
from ..types import Candidate, Message, Request, Usage, message_text
from .base import Scoring, register_reward, reward_forms

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'fusion-of-n[reward]'"
DEFAULT_KEY_ENV = "VLLM_API_KEY"
"""The variable a ``vllm:`` reward spec without ``key_env`` reads its API key from (if set)."""


def chat_with_reply(request: Request, reply: str) -> list[dict[str, str]]:
    """The request's chat (content parts flattened to text) followed by ``reply`` as the assistant."""
    messages = [{"role": str(m.get("role", "user")), "content": message_text(m)} for m in request.messages]
    messages.append({"role": "assistant", "content": reply})
    return messages


def prompt_text(messages: Sequence[Message]) -> str:
    """The plain prompt used without a chat template: the message texts joined by blank lines."""
    return "\n\n".join(message_text(m) for m in messages)


@register_reward("hf", "'hf:/path/to/model' (a local Hugging Face model)")
class LocalRewardModel:
    """A sequence-classification reward model from a local folder (``save_pretrained`` layout).

    Input: with a chat template, the chat plus the candidate as the assistant turn, rendered by the
    template (truncated from the left, so the end of the reply, where the model pools, is kept).
    Without one, the tokenizer's text pair ``(prompt, response)``, where prompt is the message texts
    joined by blank lines (what cross-encoder reward models such as the OpenAssistant DeBERTa ones
    were trained on). Longer inputs are cut to the model's maximum length.

    Score: the single logit when ``num_labels == 1``; with several labels, the last label's logit
    (binary preference classifiers put "good" last).

    The model loads on the first call, in a worker thread; inference runs there too, one batch of
    ``batch_size`` at a time under a lock, with ``torch.inference_mode``. The hub is never contacted.
    """

    def __init__(
        self, path: str | Path, *, batch_size: int = 8, max_length: int | None = None, device: str = "cpu"
    ) -> None:
        missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
        if missing:
            raise MissingDependency(f"a local reward model needs {' and '.join(missing)}; install with: {INSTALL_HINT}")
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise ConfigError(
                f"reward model folder {str(self.path)!r} does not exist; hf: takes a local folder "
                "written by save_pretrained (config.json, weights, tokenizer files)"
            )
        if batch_size < 1:
            raise ConfigError("batch_size of a reward model must be at least 1")
        self.name = f"hf:{self.path}"
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None

    @classmethod
    def from_spec(cls, spec: ModelSpec, env: Mapping[str, str]) -> LocalRewardModel:
        """Build from ``hf:/path/to/model[#batch_size=8,max_length=2048,device=cpu]``."""
        if spec.base_url:
            raise ConfigError(f"reward spec {str(spec)!r}: hf: takes a local folder, not a URL; use {reward_forms()}")
        spec.check_options({"batch_size", "max_length", "device"})
        max_length = spec.option("max_length")
        return cls(
            spec.model,
            batch_size=spec.int_option("batch_size", 8, minimum=1),
            max_length=spec.int_option("max_length", 0, minimum=1) if max_length else None,
            device=spec.option("device", "cpu") or "cpu",
        )

    async def score(self, request: Request, candidates: Sequence[Candidate]) -> Scoring:
        started = time.perf_counter()
        chats = [chat_with_reply(request, c.text) for c in candidates]
        scores, batches, tokens = await asyncio.to_thread(self._score_sync, chats)
        usage = Usage(batches, tokens, 0, time.perf_counter() - started)
        return Scoring(tuple(scores), usage)

    def _score_sync(self, chats: list[list[dict[str, str]]]) -> tuple[list[float], int, int]:
        import torch

        with self._lock:
            self._load()
            scores: list[float] = []
            batches = tokens = 0
            for first in range(0, len(chats), self.batch_size):
                encoded = self._encode(chats[first : first + self.batch_size])
                with torch.inference_mode():
                    logits = self._model(**encoded).logits
                scores.extend(float(row[-1]) for row in logits.float().cpu())
                batches += 1
                tokens += int(encoded["attention_mask"].sum())
            return scores, batches, tokens

    def _encode(self, chats: list[list[dict[str, str]]]) -> Any:
        tokenizer = self._tokenizer
        options: dict[str, Any] = {"return_tensors": "pt", "padding": True, "truncation": True}
        if self.max_length is not None:
            options["max_length"] = self.max_length
        if tokenizer.chat_template:
            texts = [tokenizer.apply_chat_template(chat, tokenize=False) for chat in chats]
            encoded = tokenizer(texts, add_special_tokens=False, **options)
        else:
            prompts = [prompt_text(chat[:-1]) for chat in chats]
            replies = [chat[-1]["content"] for chat in chats]
            encoded = tokenizer(prompts, replies, **options)
        return encoded.to(self.device)

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        started = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(str(self.path), local_files_only=True)
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                self.batch_size = 1  # nothing to pad with: one input per forward pass
            else:
                tokenizer.pad_token = tokenizer.eos_token
        if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
            model.config.pad_token_id = tokenizer.pad_token_id  # decoder models find the last token with it
        if tokenizer.chat_template:
            tokenizer.truncation_side = "left"
        limits = [getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length]
        sane = [int(limit) for limit in limits if isinstance(limit, int) and 0 < limit < 1_000_000]
        if self.max_length is None and sane:
            self.max_length = min(sane)
        self._tokenizer = tokenizer
        self._model = model.to(self.device).eval()
        logger.info(
            "loaded reward model %s (%d label(s)) in %.1fs",
            self.path,
            model.config.num_labels,
            time.perf_counter() - started,
        )

    async def aclose(self) -> None:
        with self._lock:
            self._model = None
            self._tokenizer = None


def _reward_value(data: Any) -> float | None:
    """The reward in one pooling output: a number, the last label of ``[labels]``, or the last
    token's last label of ``[[labels] per token]`` (token-level reward models)."""
    while isinstance(data, list) and data:
        data = data[-1]
    if isinstance(data, (int, float)) and not isinstance(data, bool) and math.isfinite(data):
        return float(data)
    return None


@register_reward("vllm", "'vllm:MODEL@http://host:port' (a vLLM server)")
class RemoteRewardModel:
    """A reward model served by vLLM (``vllm serve MODEL --runner pooling``), via ``POST /pooling``.

    Each candidate is one request in the chat form ``{"model", "messages", "use_activation": false}``,
    so the server applies the model's own chat template (the completion form takes only plain
    strings); the requests run concurrently. The score is read like :class:`LocalRewardModel`'s:
    ``data[0].data`` is ``[logit]`` for a sequence-classification reward model (the last label with
    several) or one row per token for a token-level reward model (the last token's row counts).
    ``use_activation: false`` asks for raw logits, which the ranking does not depend on anyway.

    vLLM serves ``/pooling`` at the server root; a base URL ending in ``/v1`` is trimmed to it.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        max_concurrency: int = 32,
        client: HTTPClient | None = None,
    ) -> None:
        root = base_url.rstrip("/")
        if root.endswith("/v1"):
            root = root[: -len("/v1")]
        self.model = model
        self.name = f"vllm:{model}@{root}"
        self.client = client or HTTPClient(root, name=self.name, api_key=api_key, max_concurrency=max_concurrency)

    @classmethod
    def from_spec(cls, spec: ModelSpec, env: Mapping[str, str]) -> RemoteRewardModel:
        """Build from ``vllm:MODEL@http://host:port[#key_env=MY_KEY,max_concurrency=32]``; the API key is
        read from ``key_env``'s variable, else from :data:`DEFAULT_KEY_ENV` (if set)."""
        if not spec.base_url:
            raise ConfigError(f"reward spec {str(spec)!r} needs the server's URL: 'vllm:{spec.model}@http://host:port'")
        spec.check_options({"key_env", "max_concurrency"})
        key_env = spec.option("key_env")
        if key_env and env.get(key_env) is None:
            raise ConfigError(
                f"reward spec {spec} reads its API key from {key_env}, but {key_env} is not set; "
                f"export {key_env}=... (an empty {key_env}= sends no key, for a keyless server) or remove key_env"
            )
        return cls(
            spec.base_url,
            spec.model,
            api_key=env.get(key_env or DEFAULT_KEY_ENV) or None,
            max_concurrency=spec.int_option("max_concurrency", 32, minimum=1),
        )

    async def score(self, request: Request, candidates: Sequence[Candidate]) -> Scoring:
        started = time.perf_counter()
        results = await gather_or_cancel(self._score_one(request, c) for c in candidates)
        tokens = sum(t for _, t in results)
        usage = Usage(len(results), tokens, 0, time.perf_counter() - started)
        return Scoring(tuple(score for score, _ in results), usage)

    async def _score_one(self, request: Request, candidate: Candidate) -> tuple[float, int]:
        body = {"model": self.model, "messages": chat_with_reply(request, candidate.text), "use_activation": False}
        response = await self.client.post_json("/pooling", body)
        items = response.get("data")
        first = items[0] if isinstance(items, list) and items else None
        value = _reward_value(first.get("data")) if isinstance(first, dict) else None
        if value is None:
            raise BackendError(
                f"reward server {self.client.url('/pooling')} answered without a reward in data[0].data "
                f"(got {self.client.redact(str(response), limit=200)}); is {self.model!r} a reward or "
                "classification model served with --runner pooling?",
                backend=self.name,
                url=self.client.url("/pooling"),
            )
        usage = response.get("usage")
        tokens = usage.get("prompt_tokens", 0) if isinstance(usage, dict) else 0
        return value, int(tokens) if isinstance(tokens, int) else 0

    async def aclose(self) -> None:
        await self.client.aclose()
