"""What the local backend hands to llama.cpp, and the small records it keeps while a model runs.

* :func:`text_messages`, :func:`sampling_kwargs` and :func:`sample_seeds` turn a :class:`~fusion_of_n.types.Request`
  into ``create_chat_completion`` arguments (a GBNF grammar is the one thing built by llama_cpp itself).
* :class:`TopLogprobs` and :class:`StepCounter` are llama-cpp-python logits processors: called once per
  sampling step with the raw logits, they record something and return the logits unchanged.
* :class:`StopStrings` applies ``Params.stop`` to streamed text itself, so the stream knows when a stop
  string (rather than the end-of-generation token) ended the answer.
* :class:`StreamEnd` is how a streamed completion ended: its finish reason and token counts.

``llama`` is a ``llama_cpp.Llama``; nothing here imports llama_cpp but :func:`sampling_kwargs`, for a grammar.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import ConfigError
from ...types import Message, Params, TokenAlternatives, message_text

SEED_RANGE = 0xFFFFFFFF  # llama.cpp treats 0xFFFFFFFF as "pick a random seed"


class TopLogprobs:
    """A llama-cpp logits processor that records the top-k log-probabilities of every step.

    It runs first in the sampler chain, so it sees the raw logits of the whole vocabulary in token-id
    order, before penalties, top-k/top-p and temperature, and returns them unchanged.
    """

    def __init__(self, llama: Any, k: int) -> None:
        self.llama = llama
        self.k = max(1, k)
        self.rows: list[TokenAlternatives] = []

    def __call__(self, input_ids: Any, logits: Any) -> Any:
        values = np.asarray(logits, dtype=np.float64)
        k = min(self.k, values.size)
        top = np.argpartition(-values, k - 1)[:k]
        top = top[np.argsort(-values[top])]
        peak = values.max()
        log_total = peak + np.log(np.exp(values - peak).sum())
        self.rows.append(tuple((self._text(int(t)), float(values[t] - log_total)) for t in top))
        return logits

    def _text(self, token: int) -> str:
        return bytes(self.llama.detokenize([token])).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class StreamEnd:
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class StepCounter:
    """A logits processor that changes nothing and counts: the prompt llama.cpp evaluated, the sampling steps."""

    def __init__(self, llama: Any) -> None:
        self.llama = llama
        self.prompt_tokens = 0
        self.steps = 0

    def __call__(self, input_ids: Any, logits: Any) -> Any:
        if self.steps == 0:
            self.prompt_tokens = int(self.llama.n_tokens)  # the prompt is evaluated before the first sample
        self.steps += 1
        return logits

    def completion_tokens(self, text: str, finish_reason: str) -> int:
        """llama.cpp's count: every sampled token but an end-of-generation token that ended the answer.

        The last sampled token is never evaluated, so the model holds the first ``steps - 1``; when they
        spell the whole streamed text and the finish is "stop", the last one was end-of-generation.
        """
        if finish_reason != "stop" or self.steps == 0:
            return self.steps
        kept = [int(t) for t in self.llama.input_ids[self.prompt_tokens : self.llama.n_tokens]]
        spelled = bytes(self.llama.detokenize(kept)).decode("utf-8", errors="ignore")
        return self.steps - 1 if len(kept) == self.steps - 1 and spelled == text else self.steps


class StopStrings:
    """Cuts streamed text at the first stop string present (in the order given, as llama.cpp does),
    holding back a tail that may be the start of one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.text = ""
        self.shown = 0
        self.hit = False

    def feed(self, piece: str) -> str:
        """Add ``piece``; return the text that can be shown now."""
        self.text += piece
        found = [s for s in self.stops if s in self.text]
        if found:
            self.hit = True
            end = self.text.index(found[0])
        else:
            end = len(self.text) - max((self._overlap(s) for s in self.stops), default=0)
        shown, self.shown = self.text[self.shown : end], max(self.shown, end)
        return shown

    def rest(self) -> str:
        """The held-back tail, once the answer ended without a stop string."""
        rest, self.shown = self.text[self.shown :], len(self.text)
        return rest

    def _overlap(self, stop: str) -> int:
        return next((i for i in range(min(len(stop), len(self.text)), 0, -1) if self.text.endswith(stop[:i])), 0)


def sampling_kwargs(params: Params, seed: int) -> dict[str, Any]:
    """``create_chat_completion`` arguments for ``params``; None keeps llama-cpp-python's default."""
    kwargs: dict[str, Any] = {"seed": seed}
    for key in ("temperature", "top_p", "max_tokens"):
        if (value := getattr(params, key)) is not None:
            kwargs[key] = value
    if params.stop:
        kwargs["stop"] = list(params.stop)
    if params.output_format is not None:
        from llama_cpp import LlamaGrammar  # type: ignore[attr-defined]

        kwargs["grammar"] = LlamaGrammar.from_string(params.output_format.grammar, verbose=False)
    return kwargs


def sample_seeds(seed: int | None, n: int) -> list[int]:
    """One seed per sample: ``seed + i`` (wrapping before llama.cpp's "random" value), else fresh random ones."""
    if seed is None:
        return [secrets.randbelow(SEED_RANGE) for _ in range(n)]
    return [(seed + i) % SEED_RANGE for i in range(n)]


def text_messages(messages: Sequence[Message], backend: str) -> list[dict[str, Any]]:
    """The chat as plain dicts; text content parts are joined because chat templates expect strings."""
    result = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            kinds = {part.get("type") for part in content if isinstance(part, Mapping)}
            if kinds - {"text"}:
                raise ConfigError(
                    f"backend {backend!r} takes text only, but a {message.get('role')} message has content "
                    f"parts of type {', '.join(sorted(str(k) for k in kinds - {'text'}))}"
                )
            content = message_text(message)
        result.append({**message, "content": content})
    return result
