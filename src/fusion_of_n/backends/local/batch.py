"""N samples of one prompt decoded together: N parallel sequences of one llama.cpp batch.

llama-cpp-python's ``Llama`` builds its context for a single sequence, so ``create_chat_completion``
decodes N samples one after another and each pays a full pass over the weights per token. Here a
second context on the same weights holds up to ``parallel`` sequences in one unified KV cache: the
prompt is evaluated once, its cells are shared with every sequence (``seq_cp``), and each
``llama_decode`` then advances every unfinished sequence by one token, reading the weights once for
all of them. Where a step is bound by reading the weights (GPUs, many cores) several sequences cost
little more than one; on 2 CPU cores a step is mostly compute, and N=5 samples take 1.28x less wall
time than one by one (``benchmarks/local_sampling.py``).

What matches ``create_chat_completion``: the prompt is the GGUF's own chat template rendered by
llama-cpp-python's ``Jinja2ChatFormatter`` with the arguments ``Llama`` gives it, and tokenized the
same way; the sampler chain is llama-cpp-python's default (top_k 40, top_p 0.95, min_p 0.05,
temperature 0.2 unless ``Params`` set them; temperature 0 is greedy), seeded per sample; a sample ends
on an end-of-generation token (not counted), on a stop string (``Params.stop`` or the template's eos
text; the text is cut before it and the token that completed it is counted), or after ``max_tokens``
tokens (``finish_reason`` ``"length"``). Samples are not bit-identical to sequential ones (batched
matrix products round differently), but each reproduces from its seed.

:func:`BatchDecoder.sample` returns None when batching does not apply (the prompt plus every
sequence's ``max_tokens`` would not fit the context); :func:`usable` says whether a model and request
can use it at all. The caller then samples sequentially. Everything here runs on the model's worker
thread; ``stop`` (a ``threading.Event``) ends a decode at its next step.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ...types import Params

DEFAULT_TEMPERATURE = 0.2  # llama-cpp-python's create_chat_completion defaults
DEFAULT_TOP_P = 0.95
TOP_K = 40
MIN_P = 0.05


def usable(llama: Any, params: Params, n: int) -> bool:
    """Whether ``n`` samples of ``params`` from ``llama`` can be decoded as one batch."""
    return (
        n > 1
        and params.max_tokens is not None
        and not params.top_logprobs
        and params.output_format is None  # a grammar needs llama-cpp-python's own sampler
        and getattr(llama, "chat_handler", None) is None
        and getattr(llama, "chat_format", None) == "chat_template.default"
        and "tokenizer.chat_template" in (getattr(llama, "metadata", None) or {})
    )


@dataclass
class Sample:
    """One finished sequence."""

    text: str
    finish_reason: str
    completion_tokens: int


@dataclass
class _Sequence:
    budget: int
    stops: Sequence[str]
    tokens: list[int] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    text: str = ""
    finish_reason: str | None = None

    def feed(self, token: int, piece: bytes, eog: bool) -> None:
        """Take one sampled token; sets ``finish_reason`` when the sequence ends with it."""
        if eog:
            self.finish_reason = "stop"
            return
        self.tokens.append(token)
        self.data += piece
        self.text = self.data.decode("utf-8", errors="ignore")
        cuts = [at for stop in self.stops if (at := self.text.find(stop)) >= 0]
        if cuts:
            self.text = self.text[: min(cuts)]
            self.finish_reason = "stop"
        elif len(self.tokens) >= self.budget:
            self.finish_reason = "length"


class BatchDecoder:
    """A multi-sequence context on a loaded ``llama_cpp.Llama``'s weights (build it on the model's thread)."""

    def __init__(self, llama: Any, parallel: int) -> None:
        # imported untyped (Any), as in loader.py: llama_cpp's own annotations are partial
        llama_cpp: Any = importlib.import_module("llama_cpp")
        _internals: Any = importlib.import_module("llama_cpp._internals")
        llama_chat_format: Any = importlib.import_module("llama_cpp.llama_chat_format")

        self._llama_cpp = llama_cpp
        self._internals = _internals
        self._llama = llama
        self.parallel = parallel
        source = llama.context_params
        params = type(source).from_buffer_copy(source)  # Llama's own settings (threads, n_ctx, attention, rope)
        params.n_seq_max = parallel
        params.kv_unified = True  # one pool of cells: the prompt's are shared, not copied per sequence
        params.no_perf = True
        self._ctx: Any = _internals.LlamaContext(model=llama._model, params=params, verbose=False)
        self.n_ctx = self._ctx.n_ctx()
        self.n_batch = int(source.n_batch)
        self._batch: Any = _internals.LlamaBatch(
            n_tokens=max(self.n_batch, parallel), embd=0, n_seq_max=parallel, verbose=False
        )
        eos_id, bos_id = llama.token_eos(), llama.token_bos()
        model = llama._model
        self._formatter: Any = llama_chat_format.Jinja2ChatFormatter(  # as Llama.__init__ builds it
            template=llama.metadata["tokenizer.chat_template"],
            eos_token=model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=model.token_get_text(bos_id) if bos_id != -1 else "",
            stop_token_ids=[eos_id],
        )

    def close(self) -> None:
        self._batch.close()
        self._ctx.close()

    def prompt_tokens(self, messages: list[dict[str, Any]]) -> tuple[list[int], list[str]]:
        """The prompt's tokens and the template's stop strings, as ``create_chat_completion`` makes them."""
        formatted = self._formatter(messages=messages)
        tokens = self._llama.tokenize(
            formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True
        )
        stop = formatted.stop if isinstance(formatted.stop, list) else [formatted.stop] if formatted.stop else []
        return list(tokens), [s for s in stop if s]

    def sample(
        self, messages: list[dict[str, Any]], params: Params, seeds: Sequence[int], stop: threading.Event
    ) -> tuple[list[Sample], int] | None:
        """``len(seeds)`` samples (at most ``parallel``) and the prompt's token count; None when the
        prompt and every sequence's ``max_tokens`` do not fit the context together, or when ``stop``
        was set."""
        assert params.max_tokens is not None and 1 <= len(seeds) <= self.parallel
        prompt, template_stops = self.prompt_tokens(messages)
        if len(prompt) + len(seeds) * params.max_tokens > self.n_ctx:
            return None
        stops = [*(params.stop or ()), *template_stops]
        sequences = [_Sequence(params.max_tokens, stops) for _ in seeds]
        samplers = [self._sampler(params, seed) for seed in seeds]
        try:
            if not self._decode(prompt, sequences, samplers, stop):
                return None
        finally:
            for sampler in samplers:
                sampler.close()
            self._ctx.kv_cache_clear()
        samples = [Sample(s.text, s.finish_reason or "length", len(s.tokens)) for s in sequences]
        return samples, len(prompt)

    def _decode(
        self, prompt: list[int], sequences: list[_Sequence], samplers: list[Any], stop: threading.Event
    ) -> bool:
        llama_cpp, ctx, batch = self._llama_cpp, self._ctx, self._batch
        vocab, model = self._llama._model.vocab, self._llama._model
        ctx.kv_cache_clear()
        for start in range(0, len(prompt), self.n_batch):  # the prompt once, as sequence 0
            chunk = prompt[start : start + self.n_batch]
            batch.set_batch(chunk, n_past=start, logits_all=False)
            ctx.decode(batch)
        for seq in range(1, len(sequences)):
            ctx.kv_cache_seq_cp(0, seq, -1, -1)
        rows = {seq: len(chunk) - 1 for seq in range(len(sequences))}  # where each sequence's logits are
        while rows:
            if stop.is_set():
                return False
            for seq, row in rows.items():
                token = samplers[seq].sample(ctx, row)  # llama_sampler_sample also accepts the token
                eog = bool(llama_cpp.llama_vocab_is_eog(vocab, token))
                sequences[seq].feed(token, b"" if eog else model.detokenize([token]), eog)
                if sequences[seq].finish_reason is not None:
                    ctx.kv_cache_seq_rm(seq, -1, -1)  # free its cells for the others
            active = [seq for seq in rows if sequences[seq].finish_reason is None]
            if not active:
                return True
            raw = batch.batch
            for row, seq in enumerate(active):
                raw.token[row] = sequences[seq].tokens[-1]
                raw.pos[row] = len(prompt) + len(sequences[seq].tokens) - 1
                raw.n_seq_id[row] = 1
                raw.seq_id[row][0] = seq
                raw.logits[row] = True
            raw.n_tokens = len(active)
            ctx.decode(batch)
            rows = {seq: row for row, seq in enumerate(active)}
        return True

    def _sampler(self, params: Params, seed: int) -> Any:
        """llama-cpp-python's default chain (``Llama._init_sampler``) for ``params``, seeded."""
        sampler = self._internals.LlamaSampler()
        temperature = DEFAULT_TEMPERATURE if params.temperature is None else params.temperature
        if temperature == 0:
            sampler.add_greedy()
            return sampler
        sampler.add_top_k(TOP_K)
        sampler.add_typical(1.0, 1)
        sampler.add_top_p(DEFAULT_TOP_P if params.top_p is None else params.top_p, 1)
        sampler.add_min_p(MIN_P, 1)
        sampler.add_temp(temperature)
        sampler.add_dist(seed)
        return sampler
