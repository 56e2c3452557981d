"""The embedded backend: a GGUF model run in-process by llama.cpp (spec ``local:MODEL[#OPTIONS]``).

``MODEL`` is a catalogue name (see :mod:`.catalogue`, default ``qwen2.5-coder-0.5b``) or a path
to a ``.gguf`` file. Options:

``n_ctx``         context length of one request (default 8192, capped at the model's training context;
                  0 = training context)
``n_threads``     CPU threads (default ``os.cpu_count()``)
``n_batch``       prompt-processing batch size (default 512)
``n_gpu_layers``  layers offloaded to a GPU build of llama.cpp (default 0)
``chat_format``   a llama-cpp-python chat format name, for GGUFs without a chat template
``parallel``      sequences the model's decode loop holds at once (default 16, at most 16; 1 = every
                  sample is its own ``create_chat_completion``, one after another). Backends whose
                  options differ only here load the model separately (the weights are mapped once).
``structured``    ``grammar`` (default): enforce a request's ``output_format`` with its GBNF grammar;
                  ``none``: ignore it (free-form replies, parsed by the caller's fallback rules)

Requests go to the model's decode loop (:mod:`.engine`, continuous batching): every concurrent request to
the model (the N samples of a row, the rows of ``generate --concurrency K``, proxy requests, fusor and judge
calls) is a sequence of one llama.cpp batch; a sequence that ends frees its slot for the next one at the
next step, and a prompt, or a prefix another running request already read, is evaluated once. The usage
counts a request's prompt once. A sequence reserves cache cells for its whole ``max_tokens`` (without one,
for the rest of ``n_ctx``), so a ``max_tokens`` lets more run at once. Sample ``i`` of a request uses
``seed + i`` (or a fresh random seed when the request has none), with llama-cpp-python's sampler chain and defaults
(temperature 0.2, top_p 0.95, top_k 40, min_p 0.05); a request alone in the loop reproduces from its seeds,
and a single sample equals ``create_chat_completion``'s (see :mod:`.engine` on overlapping requests).

Everything else runs one by one through ``create_chat_completion`` with the model's own chat template:
``top_logprobs``, a ``chat_format`` option, or ``parallel=1`` (and a prompt longer than ``n_ctx``, to
fail as llama-cpp-python fails it). llama.cpp then reuses the KV cache of the
common prompt prefix, so samples 2..n skip prompt processing. The decode loop lets its running
sequences finish and hands the thread to such work, so neither starves the other.

``stream(request)`` streams one completion: from the decode loop (its text as the loop decides it,
stop strings held back) or, on the one-by-one path, from ``create_chat_completion(stream=True)`` on the
model's worker thread, bridged to the event loop through a queue. Closing the stream ends its sequence
at the next step (one by one: the worker checks a flag at every chunk, so the model is free again after
about one more token; a stream still queued behind another request never starts). On the one-by-one
path llama.cpp's stream chunks carry no usage, so a counting logits processor (it returns the logits
unchanged) reads it off the model: ``prompt_tokens`` is what llama.cpp evaluated as the prompt (its chat
template applied), ``completion_tokens`` the sampling steps minus the end-of-generation token when the
answer ended on one. To tell those endings apart, the stream applies ``Params.stop`` itself (cutting the
text exactly where llama.cpp does); the counts then equal the non-streaming ones.

``Params.output_format`` is enforced with its GBNF grammar (llama.cpp masks every token the grammar does
not allow, so the reply always has the format unless ``max_tokens`` cuts it), in the decode loop too.

``Params.top_logprobs`` is served without ``logits_all=True`` (which would allocate n_ctx x vocab
floats, ~5 GB for Qwen at 8192): a logits processor sees the raw logits of each step, before any
sampling, and records the top-k log-softmax alternatives.

Process state: loaded models live in :mod:`.loader` (one per file and load settings per
process; :func:`clear_model_cache` frees them). Calls into a loaded model run on that model's own
single worker thread, which keeps the event loop free and, unlike a lock taken inside
``asyncio.to_thread``, never parks the default executor's threads behind a busy model; a cancelled
request leaves the decode loop at its next step, and its samples that have not started never start.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import BackendError, ConfigError, FusionOfNError
from ...types import Candidate, Delta, Generation, Params, Request, Usage
from ..base import ModelSpec
from . import engine
from .catalogue import check_model, resolve_model
from .gguf import gguf_context_length
from .hooks import StepCounter, StopStrings, StreamEnd, TopLogprobs, sample_seeds, sampling_kwargs, text_messages
from .loader import LoadedModel, LoadSettings, load, loaded_model, require_llama_cpp

__all__ = ["DEFAULT_N_CTX", "LocalBackend"]

log = logging.getLogger(__name__)

DEFAULT_N_CTX = 8192
_OPTIONS = {"n_ctx", "n_threads", "n_batch", "n_gpu_layers", "chat_format", "parallel", "structured"}
DEFAULT_PARALLEL = 16
MAX_PARALLEL = 16  # sequences one decode loop can hold; the ``parallel`` option picks up to this many


class LocalBackend:
    """Samples from an embedded GGUF model. Construction is cheap; the model loads on first use."""

    def __init__(
        self,
        model: str,
        *,
        cache_dir: Path,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        n_batch: int = 512,
        n_gpu_layers: int = 0,
        chat_format: str | None = None,
        parallel: int = DEFAULT_PARALLEL,
        structured: str = "grammar",
        name: str | None = None,
    ) -> None:
        require_llama_cpp()
        check_model(model, cache_dir)
        self.name = name or f"local:{model}"
        self.model = model
        self.cache_dir = cache_dir
        self._n_ctx = n_ctx
        self._n_threads = n_threads or os.cpu_count() or 1
        self._n_batch = n_batch
        self._n_gpu_layers = n_gpu_layers
        self._chat_format = chat_format
        if not 1 <= parallel <= MAX_PARALLEL:
            raise ConfigError(f"parallel={parallel} is out of range; choose 1 (one by one) to {MAX_PARALLEL}")
        self._parallel = parallel
        if structured not in ("grammar", "none"):
            raise ConfigError(f"structured={structured!r} is not one of grammar, none")
        self._structured = structured
        self._settings: LoadSettings | None = None
        self._closed = False

    @classmethod
    def from_spec(cls, spec: ModelSpec, env: Mapping[str, str]) -> LocalBackend:
        """Build from ``local:MODEL#OPTIONS``; the cache folder is ``FUSION_OF_N_CACHE`` or ~/.cache/fusion-of-n."""
        spec.check_options(_OPTIONS)
        if spec.base_url:
            raise ConfigError(
                f"model spec {spec} has a URL, but local: runs in-process; for a server write "
                f"openai:{spec.model}@{spec.base_url}"
            )
        cache = env.get("FUSION_OF_N_CACHE")
        cache_dir = Path(cache).expanduser() if cache else Path.home() / ".cache" / "fusion-of-n"
        return cls(
            spec.model,
            cache_dir=cache_dir,
            name=f"local:{spec.model}",
            n_ctx=spec.int_option("n_ctx", DEFAULT_N_CTX, minimum=0),
            n_threads=spec.int_option("n_threads", os.cpu_count() or 1, minimum=1),
            n_batch=spec.int_option("n_batch", 512, minimum=1),
            n_gpu_layers=spec.int_option("n_gpu_layers", 0, minimum=-1),
            chat_format=spec.option("chat_format"),
            parallel=spec.int_option("parallel", DEFAULT_PARALLEL, minimum=1),
            structured=spec.option("structured") or "grammar",
        )

    async def load(self) -> LoadSettings:
        """Resolve (assembling once) and load the model now instead of on the first request."""
        return (await self._model()).settings

    async def _model(self) -> LoadedModel:
        if self._settings is None:
            self._settings = await asyncio.to_thread(self._resolve_settings)
        loaded = loaded_model(self._settings)  # never waits: the event loop stays free while another thread loads
        return loaded if loaded is not None else await asyncio.to_thread(load, self._settings)

    def _resolve_settings(self) -> LoadSettings:
        path = resolve_model(self.model, self.cache_dir)
        trained = gguf_context_length(path)
        n_ctx = self._n_ctx or trained or DEFAULT_N_CTX
        if trained and n_ctx > trained:
            log.info("n_ctx %d exceeds %s's training context; using %d", n_ctx, self.model, trained)
            n_ctx = trained
        return LoadSettings(
            path, n_ctx, self._n_threads, self._n_batch, self._n_gpu_layers, self._chat_format, self._parallel
        )

    async def generate(self, request: Request, *, n: int = 1) -> Generation:
        if n < 1:
            raise ConfigError(f"n must be at least 1, got {n}")
        if self._closed:
            raise BackendError(f"backend {self.name!r} is closed", backend=self.name)
        started = time.perf_counter()
        loaded = await self._model()
        messages = text_messages(request.messages, self.name)
        seeds = sample_seeds(request.params.seed, n)
        params = self._params(request.params)
        sampled = None
        if self._batches(loaded, params):
            sampled = await self._sample_in_engine(loaded, messages, params, seeds)
        if sampled is None:  # the engine does not take it: one by one
            sampled = await self._sample_one_by_one(loaded, messages, params, seeds)
        candidates, prompt_tokens, completion_tokens = sampled
        usage = Usage(n, prompt_tokens, completion_tokens, time.perf_counter() - started)
        return Generation(tuple(c.replace(index=i) for i, c in enumerate(candidates)), usage)

    def _params(self, params: Params) -> Params:
        return params.replace(output_format=None) if self._structured == "none" else params

    def _batches(self, loaded: LoadedModel, params: Params) -> bool:
        """Whether this request goes to the model's decode loop (continuous batching)."""
        if loaded.settings.parallel == 1 or not engine.usable(loaded.llama, params):
            return False
        if loaded.engine is None:
            loaded.engine = engine.Engine(
                loaded.llama,
                slots=loaded.settings.parallel,
                executor=loaded.worker,
                others_waiting=loaded.others_waiting,
            )
        return loaded.engine.available is not False

    async def _sample_one_by_one(
        self, loaded: LoadedModel, messages: list[dict[str, Any]], params: Params, seeds: Sequence[int]
    ) -> tuple[list[Candidate], int, int]:
        candidates: list[Candidate] = []
        prompt_tokens = completion_tokens = 0
        for seed in seeds:
            call = functools.partial(self._complete, loaded, messages, params, seed)
            candidate, prompt, completion = await asyncio.wrap_future(loaded.alone(call))
            candidates.append(candidate)
            prompt_tokens += prompt
            completion_tokens += completion
        return candidates, prompt_tokens, completion_tokens

    async def _sample_in_engine(
        self, loaded: LoadedModel, messages: list[dict[str, Any]], params: Params, seeds: Sequence[int]
    ) -> tuple[list[Candidate], int, int] | None:
        """The samples from the model's decode loop; None when the engine does not take this request."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[engine.Outcome | BaseException | None] = loop.create_future()
        on_done = functools.partial(_post, loop, functools.partial(_resolve, done))
        job = engine.Job(messages, params, seeds, on_done=on_done)
        loaded.engine.submit(job)
        try:
            outcome = await done
        except asyncio.CancelledError:
            job.cancel()  # its sequences end at the next step
            raise
        if outcome is None:
            return None
        if isinstance(outcome, BaseException):
            raise self._failure(loaded, outcome) from outcome
        candidates = [
            Candidate(s.text, self.name, s.finish_reason, completion_tokens=s.completion_tokens)
            for s in outcome.samples
        ]
        return candidates, outcome.prompt_tokens, sum(s.completion_tokens for s in outcome.samples)

    def _complete(
        self, loaded: LoadedModel, messages: list[dict[str, Any]], params: Params, seed: int
    ) -> tuple[Candidate, int, int]:
        """One completion, on the model's worker thread."""
        kwargs = sampling_kwargs(params, seed)
        recorder = TopLogprobs(loaded.llama, params.top_logprobs) if params.top_logprobs else None
        if recorder is not None:
            kwargs["logits_processor"] = [recorder]
        try:
            response = loaded.llama.create_chat_completion(messages=messages, **kwargs)
        except FusionOfNError:
            raise
        except Exception as exc:  # foreign-library boundary: never let llama.cpp's failure pass as an answer
            raise self._failure(loaded, exc) from exc
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        completion = int(usage.get("completion_tokens", 0))
        logprobs = tuple(recorder.rows[:completion]) if recorder is not None else None
        candidate = Candidate(
            choice["message"].get("content") or "",
            self.name,
            choice.get("finish_reason"),
            completion_tokens=completion,
            logprobs=logprobs,
        )
        return candidate, int(usage.get("prompt_tokens", 0)), completion

    async def stream(self, request: Request) -> AsyncIterator[Delta]:
        """Stream one completion (same params and seed as ``generate``); closing it stops the model."""
        if self._closed:
            raise BackendError(f"backend {self.name!r} is closed", backend=self.name)
        started = time.perf_counter()
        loaded = await self._model()
        messages = text_messages(request.messages, self.name)
        (seed,) = sample_seeds(request.params.seed, 1)
        params = self._params(request.params)
        if self._batches(loaded, params):
            taken = False
            async for delta in self._stream_in_engine(loaded, messages, params, seed, started):
                taken = True
                yield delta
            if taken:
                return
        async for delta in self._stream_alone(loaded, messages, params, seed, started):
            yield delta

    async def _stream_in_engine(
        self, loaded: LoadedModel, messages: list[dict[str, Any]], params: Params, seed: int, started: float
    ) -> AsyncIterator[Delta]:
        """The completion streamed from the decode loop; nothing when the engine does not take it."""
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[str | _Ended] = asyncio.Queue()
        job = engine.Job(
            messages,
            params,
            [seed],
            on_done=lambda outcome: _post(loop, items.put_nowait, _Ended(outcome)),
            on_piece=functools.partial(_post, loop, items.put_nowait),
        )
        loaded.engine.submit(job)
        try:
            while isinstance(item := await items.get(), str):
                yield Delta(item)
        finally:
            job.cancel()  # a closed stream ends its sequence at the next step
        outcome = item.outcome
        if outcome is None:
            return
        if isinstance(outcome, BaseException):
            raise self._failure(loaded, outcome) from outcome
        (sample,) = outcome.samples
        usage = Usage(1, outcome.prompt_tokens, sample.completion_tokens, time.perf_counter() - started)
        yield Delta(finish_reason=sample.finish_reason, usage=usage)

    async def _stream_alone(
        self, loaded: LoadedModel, messages: list[dict[str, Any]], params: Params, seed: int, started: float
    ) -> AsyncIterator[Delta]:
        """The completion streamed by ``create_chat_completion(stream=True)`` on the worker thread."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | asyncio.Future[StreamEnd | None]] = asyncio.Queue()
        stop = threading.Event()

        def emit(piece: str) -> None:  # on the worker thread
            try:
                loop.call_soon_threadsafe(pieces.put_nowait, piece)
            except RuntimeError:  # the event loop is closed: nobody is listening any more
                stop.set()

        call = functools.partial(self._stream_worker, loaded, messages, params, seed, emit, stop)
        work = asyncio.wrap_future(loaded.alone(call))
        work.add_done_callback(pieces.put_nowait)  # queued after every piece the worker emitted
        try:
            while isinstance(item := await pieces.get(), str):
                yield Delta(item)
            end = item.result()
        finally:
            stop.set()  # the worker stops at its next chunk
            work.cancel()  # or never starts, when it is still queued behind another request
        assert end is not None  # the worker returns None only after stop was set
        usage = Usage(1, end.prompt_tokens, end.completion_tokens, time.perf_counter() - started)
        yield Delta(finish_reason=end.finish_reason, usage=usage)

    def _stream_worker(
        self,
        loaded: LoadedModel,
        messages: list[dict[str, Any]],
        params: Params,
        seed: int,
        emit: Callable[[str], None],
        stop: threading.Event,
    ) -> StreamEnd | None:
        """Run one streamed completion on the model's worker thread; returns None when told to stop."""
        if stop.is_set():
            return None
        counter = StepCounter(loaded.llama)
        cutter = StopStrings(params.stop or ())  # ours, so that we know when a stop string ended the answer
        kwargs = {**sampling_kwargs(params.replace(stop=None), seed), "logits_processor": [counter]}
        text: list[str] = []
        finish_reason = "stop"
        try:
            chunks = loaded.llama.create_chat_completion(messages=messages, stream=True, **kwargs)
            try:
                for chunk in chunks:
                    if stop.is_set():
                        return None
                    choice = chunk["choices"][0]
                    if piece := choice["delta"].get("content"):
                        text.append(piece)
                        if shown := cutter.feed(piece):
                            emit(shown)
                        if cutter.hit:  # the token that completed the stop string was the last one sampled
                            return StreamEnd("stop", counter.prompt_tokens, counter.steps)
                    finish_reason = choice.get("finish_reason") or finish_reason
            finally:
                chunks.close()  # stops llama.cpp's generator (and its sampling) when we leave early
        except Exception as exc:  # foreign-library boundary: never let llama.cpp's failure pass as an answer
            raise self._failure(loaded, exc) from exc
        if held := cutter.rest():
            emit(held)
        completion = counter.completion_tokens("".join(text), finish_reason)
        return StreamEnd(finish_reason, counter.prompt_tokens, completion)

    def _failure(self, loaded: LoadedModel, exc: BaseException) -> BackendError:
        return BackendError(
            f"local model {self.name!r} ({loaded.settings.path.name}, n_ctx={loaded.settings.n_ctx}) failed: "
            f"{type(exc).__name__}: {exc}; if the chat is longer than n_ctx, raise it (#n_ctx=...) "
            "or shorten the chat",
            backend=self.name,
        )

    async def aclose(self) -> None:
        """Stop using the model; it stays loaded for other backends until :func:`.loader.clear_model_cache`."""
        self._closed = True


@dataclass(frozen=True)
class _Ended:
    outcome: engine.Outcome | BaseException | None


def _post(loop: asyncio.AbstractEventLoop, deliver: Callable[[Any], None], value: Any) -> None:
    """Hand ``value`` from the worker thread to ``deliver`` on the event loop."""
    try:
        loop.call_soon_threadsafe(deliver, value)
    except RuntimeError:  # the event loop is closed: nobody is listening any more
        pass


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():  # not when the request was cancelled meanwhile
        future.set_result(value)
