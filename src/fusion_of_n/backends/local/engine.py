"""Continuous batching: one decode loop per loaded model serves every concurrent request to it.

llama-cpp-python's ``Llama`` holds one sequence, so ``create_chat_completion`` serves requests one after
another, and every token of every request is a full pass over the weights. An :class:`Engine` keeps a
second context on the same weights with up to ``slots`` sequences in one unified KV cache, and one loop on
the model's worker thread that advances all of them together: each ``llama_decode`` carries the next token
of every decoding sequence plus a chunk of any prompt still being read, so the weights are read once per
step for all of them. Requests join and leave between steps: a sequence that ends frees its slot for the
next waiting one at once (nobody waits for the slowest of a group), and the N samples of a request, several
rows of ``generate --concurrency K``, proxy requests and fusor or judge calls of the same model all share
the loop. Measured on 2 cores (``benchmarks/local_sampling.py``): see the README's "Measured here".

Prompts are read once. A new sequence starts from the longest prefix of its prompt already in the cache,
in a running sequence or in the prompt a finished one left behind (kept while others run, until its slot
or its cells are needed), and evaluates only the rest: the N samples of a request read their prompt once,
and concurrent rows that share a system prompt or a fusion instruction skip it.

What matches ``create_chat_completion``: the prompt is the GGUF's own chat template rendered by
llama-cpp-python's ``Jinja2ChatFormatter`` with the arguments ``Llama`` gives it, tokenized the same way;
the sampler chain is llama-cpp-python's (a GBNF grammar first when ``Params.output_format`` sets one, then
top_k 40, typical 1.0, top_p 0.95, min_p 0.05, temperature 0.2 unless ``Params`` set them; temperature 0
is greedy), seeded per sample; a sample ends on an end-of-generation token (not counted), on a stop string
(``Params.stop`` or the template's; the text is cut before it and the token that completed it is counted)
or after ``max_tokens`` tokens (``finish_reason`` ``"length"``).

Reproducibility: a request that arrives when the loop is idle starts from an empty cache, so a request
run alone reproduces from its seeds, and one sample alone equals ``create_chat_completion``'s. Requests
that overlap share steps and cache cells, and where their cells lie changes how llama.cpp's sums round:
as in every continuous-batching server, their samples follow their seeds but can part from the alone run
after some tokens. ``#parallel=1`` samples one by one, bit-reproducibly, at the old speed.

Resources: the engine's cache has ``cells`` KV cells (:func:`cells_for`); a sequence is admitted when its
prompt and its whole ``max_tokens`` fit beside what the running ones may still need (counted without
sharing, so the cache never overflows mid-answer), oldest request first. A request without ``max_tokens``
may fill the model's ``n_ctx`` (as with ``create_chat_completion``) and reserves that much, so set
``max_tokens`` to let many run at once; a ``max_tokens`` beyond the context is cut to what it leaves, as
llama-cpp-python does. A request whose prompt alone fills ``n_ctx`` gets ``None``: the backend then runs it
one by one, where llama-cpp-python reports the error. While the backend waits to run something else on the
model's thread (a one-by-one request, a ``top_logprobs`` request), the engine admits nothing new, lets the
running sequences finish and hands the thread over; it resumes behind that work.

Everything here runs on the model's worker thread except :meth:`Engine.submit` and :meth:`Job.cancel`,
which the event loop calls. Results go back through the job's callbacks, called on the worker thread.
"""

from __future__ import annotations

import codecs
import importlib
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from ...types import Params
from .hooks import StopStrings

log = logging.getLogger(__name__)

DEFAULT_TEMPERATURE = 0.2  # llama-cpp-python's create_chat_completion defaults
DEFAULT_TOP_P = 0.95
TOP_K = 40
MIN_P = 0.05
MIN_SHARED = 16  # a new request waits for a prompt being read when they share at least this many tokens
MAX_CELLS = 16384  # the engine's cache holds twice the model's n_ctx, up to this many cells (or n_ctx if more)


def cells_for(n_ctx: int) -> int:
    """KV cells of an engine for a model loaded with ``n_ctx``: room for several full requests at once."""
    return max(n_ctx, min(2 * n_ctx, MAX_CELLS))


def usable(llama: Any, params: Params) -> bool:
    """Whether requests with ``params`` to ``llama`` can run in the engine (else they run one by one)."""
    return (
        not params.top_logprobs  # recorded by a logits processor on the one-by-one path
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
class Outcome:
    """A finished job: its samples in seed order, and its prompt's length (read once for all of them)."""

    samples: list[Sample]
    prompt_tokens: int


@dataclass
class Stats:
    """What the loop has done since it was made (read them from anywhere; they only grow)."""

    steps: int = 0  # llama_decode calls
    generated: int = 0  # tokens fed back as the next token of a decoding sequence
    prompt_read: int = 0  # prompt tokens evaluated
    prompt_shared: int = 0  # prompt tokens a sequence took from cells already in the cache


Done = Callable[["Outcome | BaseException | None"], None]


class Job:
    """One request: ``len(seeds)`` samples of one chat.

    ``on_done`` is called once, on the worker thread, with the :class:`Outcome`, with None when the job
    cannot run in the engine (the caller samples it one by one), or with the exception that failed it; it
    is not called after :meth:`cancel`. ``on_piece`` (one sample only) receives the answer's text as it is
    decided, stop strings held back and cut.
    """

    def __init__(
        self,
        messages: list[dict[str, Any]],
        params: Params,
        seeds: Sequence[int],
        on_done: Done,
        on_piece: Callable[[str], None] | None = None,
    ) -> None:
        assert seeds
        assert on_piece is None or len(seeds) == 1, "streaming is one sample"
        self.messages = messages
        self.params = params
        self.budget = params.max_tokens or 0  # tokens per sample; none set: what the context leaves (see _prepare)
        self.seeds = list(seeds)
        self.on_done = on_done
        self.on_piece = on_piece
        self.cancelled = False  # set by the event loop; read by the engine between steps
        self.prompt: list[int] = []
        self.stops: list[str] = []
        self.samples: list[Sample | None] = [None] * len(self.seeds)
        self.waiting: deque[int] = deque(range(len(self.seeds)))  # samples not admitted yet
        self.running = 0
        self.first_step: int | None = None  # the engine's step counter when its first sample started
        self.last_step: int | None = None  # ... and when its last one ended

    def cancel(self) -> None:
        """Stop it: its sequences end at the next step, its waiting samples never start."""
        self.cancelled = True


class _Sequence:
    """One sample being decoded in a slot (a llama.cpp sequence id)."""

    def __init__(self, job: Job, index: int, slot: int, sampler: Any, start: int) -> None:
        self.job = job
        self.index = index
        self.slot = slot
        self.sampler = sampler
        self.todo = job.prompt[start:]  # prompt tokens still to evaluate (at least the last one)
        self.pos = start  # position of the next token fed
        self.last: int | None = None  # sampled, not yet in the cache
        self.row: int | None = None  # its logits row in the batch just decoded
        self.generated = 0
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        self.cutter = StopStrings(job.stops)
        self.shown: list[str] = []


class Engine:
    """The decode loop of one loaded model. Build it anywhere; its context is built on the worker thread."""

    def __init__(
        self,
        llama: Any,
        *,
        slots: int,
        executor: Executor,
        others_waiting: Callable[[], bool],
    ) -> None:
        self.llama = llama
        self.slots = slots
        self.cells = 0  # set with the context: cells_for(the model's n_ctx)
        self._executor = executor
        self._others_waiting = others_waiting
        self._lock = threading.Lock()
        self._inbox: list[Job] = []
        self._running = False  # a _run is scheduled or running on the executor
        self.available: bool | None = None  # None until the context is built; False if it cannot be
        # state below: the worker thread's only
        self._jobs: deque[Job] = deque()  # submitted, not finished, oldest first
        self._sequences: list[_Sequence] = []
        self._kv: list[list[int]] = [[] for _ in range(slots)]  # tokens whose cells each slot holds
        self._owner: list[_Sequence | None] = [None] * slots
        self._kept: OrderedDict[int, None] = OrderedDict()  # slots keeping a finished prompt, oldest first
        self._ctx: Any = None
        self._batch: Any = None
        self.stats = Stats()

    # ---- event loop side -------------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue ``job``; the loop picks it up at its next step (starting the loop when it is idle)."""
        with self._lock:
            self._inbox.append(job)
            if self._running:
                return
            self._running = True
        self._executor.submit(self._run)

    # ---- worker thread ---------------------------------------------------------------------------------

    def close(self) -> None:
        if self._batch is not None:
            self._batch.close()
            self._ctx.close()
            self._batch = self._ctx = None

    def _run(self) -> None:
        try:
            if self._build():
                while self._cycle():
                    pass
                return
            self._finish_all(None)  # no context: every job runs one by one
        except BaseException as exc:  # a bug or llama.cpp failing: fail every job, never hang one
            log.exception("the decode loop of %s failed", self.llama.model_path)
            self._finish_all(exc)
        with self._lock:
            self._running = False
            if self._inbox:  # arrived while failing: start over
                self._running = True
                self._executor.submit(self._run)

    def _build(self) -> bool:
        if self.available is None:
            try:
                self._open()
                self.available = True
            except Exception as exc:  # foreign-library boundary: fall back to sampling one by one
                log.warning(
                    "continuous batching is unavailable for %s (%s); sampling one by one", self.llama.model_path, exc
                )
                self.available = False
        return self.available

    def _open(self) -> None:
        internals: Any = importlib.import_module("llama_cpp._internals")
        chat_format: Any = importlib.import_module("llama_cpp.llama_chat_format")
        self._llama_cpp: Any = importlib.import_module("llama_cpp")
        self._internals = internals
        source = self.llama.context_params
        self.n_ctx = int(source.n_ctx)  # what one sequence may span: Llama's own limit (llama.cpp pads its context)
        trained = int(self.llama._model.n_ctx_train()) or self.n_ctx
        self.cells = min(cells_for(self.n_ctx), max(trained, self.n_ctx))  # llama.cpp warns beyond training
        params = type(source).from_buffer_copy(source)  # Llama's own settings (threads, attention, rope)
        params.n_ctx = self.cells
        params.n_seq_max = self.slots
        params.kv_unified = True  # one pool of cells: a shared prompt prefix is stored once
        params.no_perf = True
        self.n_batch = max(int(source.n_batch), self.slots)  # a step carries every sequence's token
        params.n_batch = params.n_ubatch = self.n_batch
        self._ctx = internals.LlamaContext(model=self.llama._model, params=params, verbose=False)
        self._batch = internals.LlamaBatch(n_tokens=max(self.n_batch, self.slots), embd=0, n_seq_max=1, verbose=False)
        model = self.llama._model
        eos, bos = self.llama.token_eos(), self.llama.token_bos()
        self._formatter: Any = chat_format.Jinja2ChatFormatter(  # as Llama.__init__ builds it
            template=self.llama.metadata["tokenizer.chat_template"],
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )

    def _cycle(self) -> bool:
        """One step of the loop; False when the loop leaves the thread (idle, or others are waiting)."""
        with self._lock:
            self._jobs.extend(self._inbox)
            self._inbox.clear()
            self._drop_cancelled()
            if not self._sequences and (not self._jobs or self._others_waiting()):
                if self._jobs:  # resume behind the work that is waiting for the thread
                    self._executor.submit(self._run)
                else:
                    self._running = False
                return False
        if not self._others_waiting():
            self._admit()
        if self._sequences:
            self._step()
        return True

    def _drop_cancelled(self) -> None:
        for sequence in [s for s in self._sequences if s.job.cancelled]:
            self._release(sequence, keep_prompt=False)
        self._jobs = deque(job for job in self._jobs if not job.cancelled)

    # ---- admission -------------------------------------------------------------------------------------

    def _admit(self) -> None:
        """Start waiting samples, oldest job first, while slots and cells allow."""
        for job in list(self._jobs):
            if all(owner is not None for owner in self._owner):
                return  # every slot is decoding
            if not job.prompt and not self._prepare(job):
                continue
            if self._reading_its_prefix(job):
                continue  # a prompt being read shares its start: this job starts from it afterwards
            while job.waiting:
                if any(s.job is job and s.todo for s in self._sequences):
                    break  # its prompt is being read: its other samples start from it afterwards
                if not self._start(job, job.waiting[0]):
                    return  # no room: later jobs wait too (oldest first)
                job.waiting.popleft()

    def _reading_its_prefix(self, job: Job) -> bool:
        """Whether a prompt still being read (by another job) shares a longer start with ``job``'s
        than anything in the cache (at least ``MIN_SHARED`` tokens)."""
        if job.running:
            return False
        cached = self._best_prefix(job.prompt)[1]
        limit = len(job.prompt) - 1
        return any(
            s.todo
            and s.job is not job
            and _common_prefix(s.job.prompt, job.prompt, limit) >= max(cached + 1, MIN_SHARED)
            for s in self._sequences
        )

    def _prepare(self, job: Job) -> bool:
        """Tokenize the job's chat; False (and the job is done) when it cannot run here."""
        try:
            formatted = self._formatter(messages=job.messages)
            job.prompt = list(
                self.llama.tokenize(formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True)
            )
        except Exception as exc:  # a template or tokenizer error belongs to this request only
            self._settle(job, exc)
            return False
        stops = formatted.stop if isinstance(formatted.stop, list) else [formatted.stop] if formatted.stop else []
        job.stops = [*(job.params.stop or ()), *(s for s in stops if s)]
        room = self.n_ctx - len(job.prompt)
        if job.params.max_tokens is None or job.budget >= room:  # as create_chat_completion: up to the context
            job.budget = room
        if not job.prompt or room < 1 or len(job.prompt) + job.budget > self.cells:  # one by one raises the error
            self._settle(job, None)  # one by one, where llama-cpp-python handles it
            return False
        return True

    def _reserved(self) -> int:
        """Cells the running sequences may still fill and the kept prompts hold, counted without sharing."""
        running = sum(len(s.job.prompt) + s.job.budget for s in self._sequences)
        return running + sum(len(self._kv[slot]) for slot in self._kept)

    def _start(self, job: Job, index: int) -> bool:
        if not self._sequences and self._kept:  # idle: start clean, so that a request alone reproduces
            for slot in list(self._kept):
                self._forget(slot)
        need = len(job.prompt) + job.budget
        while self._reserved() + need > self.cells and self._kept:
            self._forget(next(iter(self._kept)))
        if self._reserved() + need > self.cells:
            if not self._sequences:  # alone it cannot fit either
                self._settle(job, None)
            return False
        source, shared = self._best_prefix(job.prompt)
        free = self._free_slot(prefer=source)
        if free is None:
            return False
        slot = free
        if source is not None and source != slot and shared:
            self._ctx.kv_cache_seq_cp(source, slot, 0, shared)
        elif source != slot:
            shared = 0
        self._kv[slot] = job.prompt[:shared]
        self._ctx.kv_cache_seq_rm(slot, shared, -1)
        sequence = _Sequence(job, index, slot, self._sampler(job.params, job.seeds[index]), shared)
        self._owner[slot] = sequence
        self._sequences.append(sequence)
        job.running += 1
        self.stats.prompt_shared += shared
        if job.first_step is None:
            job.first_step = self.stats.steps
        return True

    def _best_prefix(self, prompt: list[int]) -> tuple[int | None, int]:
        """The slot holding the longest prefix of ``prompt`` and its length (at most all but the last
        token: the last one is evaluated again for the logits of the first sample)."""
        best, length = None, 0
        for slot, tokens in enumerate(self._kv):
            shared = _common_prefix(tokens, prompt, len(prompt) - 1)
            if shared > length:
                best, length = slot, shared
        return best, length

    def _free_slot(self, prefer: int | None) -> int | None:
        """A slot for a new sequence: ``prefer`` if it only keeps a prompt, else an empty one, else the
        oldest kept prompt's."""
        if prefer is not None and prefer in self._kept:
            del self._kept[prefer]
            return prefer
        for slot in range(self.slots):
            if self._owner[slot] is None and slot not in self._kept and not self._kv[slot]:
                return slot
        if self._kept:
            slot = next(iter(self._kept))
            self._forget(slot)
            return slot
        return None

    def _forget(self, slot: int) -> None:
        self._kept.pop(slot, None)
        self._ctx.kv_cache_seq_rm(slot, -1, -1)
        self._kv[slot] = []

    # ---- decoding --------------------------------------------------------------------------------------

    def _step(self) -> None:
        """One ``llama_decode``: every decoding sequence's next token, then prompt chunks while room lasts."""
        raw, row = self._batch.batch, 0
        fed: list[tuple[_Sequence, list[int]]] = []
        for sequence in self._sequences:
            sequence.row = None
            if sequence.last is not None:
                _put(raw, row, sequence.last, sequence.pos, sequence.slot, logits=True)
                sequence.row = row
                fed.append((sequence, [sequence.last]))
                row += 1
        for sequence in self._sequences:
            room = self.n_batch - row
            if not sequence.todo or room <= 0:
                continue
            chunk, sequence.todo = sequence.todo[:room], sequence.todo[room:]
            for offset, token in enumerate(chunk):
                last = not sequence.todo and offset == len(chunk) - 1
                _put(raw, row, token, sequence.pos + offset, sequence.slot, logits=last)
                if last:
                    sequence.row = row
                row += 1
            fed.append((sequence, chunk))
        raw.n_tokens = row
        try:
            self._ctx.decode(self._batch)
        except Exception as exc:  # llama.cpp refused the batch: these sequences' cells are undefined now
            self._fail_running(exc)
            return
        self.stats.steps += 1
        for sequence, tokens in fed:
            if sequence.last is not None:
                self.stats.generated += 1
            else:
                self.stats.prompt_read += len(tokens)
            self._kv[sequence.slot].extend(tokens)
            sequence.pos += len(tokens)
            sequence.last = None
        for sequence in [s for s in self._sequences if s.row is not None]:
            self._sample(sequence)

    def _sample(self, sequence: _Sequence) -> None:
        token = sequence.sampler.sample(self._ctx, sequence.row)  # llama_sampler_sample also accepts it
        if self._llama_cpp.llama_vocab_is_eog(self.llama._model.vocab, token):
            self._end(sequence, "stop")
            return
        sequence.generated += 1
        text = sequence.utf8.decode(bytes(self.llama._model.detokenize([token])))
        shown = sequence.cutter.feed(text) if text else ""
        if shown:
            sequence.shown.append(shown)
            if sequence.job.on_piece is not None:
                sequence.job.on_piece(shown)
        if sequence.cutter.hit:
            self._end(sequence, "stop")
        elif sequence.generated >= sequence.job.budget:
            self._end(sequence, "length")
        else:
            sequence.last = token

    def _end(self, sequence: _Sequence, reason: str) -> None:
        if not sequence.cutter.hit and (rest := sequence.cutter.rest()):
            sequence.shown.append(rest)
            if sequence.job.on_piece is not None:
                sequence.job.on_piece(rest)
        job = sequence.job
        job.samples[sequence.index] = Sample("".join(sequence.shown), reason, sequence.generated)
        self._release(sequence, keep_prompt=True)
        if not job.waiting and job.running == 0:
            job.last_step = self.stats.steps
            self._jobs.remove(job)
            self._settle(job, Outcome([s for s in job.samples if s is not None], len(job.prompt)))

    def _release(self, sequence: _Sequence, *, keep_prompt: bool) -> None:
        """Free the sequence's slot; its prompt's cells stay as a prefix for later requests when asked."""
        sequence.sampler.close()
        self._sequences.remove(sequence)
        sequence.job.running -= 1
        slot = sequence.slot
        self._owner[slot] = None
        prompt = len(sequence.job.prompt)
        if keep_prompt and self._kv[slot][:prompt] == sequence.job.prompt:
            self._ctx.kv_cache_seq_rm(slot, prompt, -1)
            self._kv[slot] = self._kv[slot][:prompt]
            self._kept[slot] = None
        else:
            self._forget(slot)

    # ---- endings ---------------------------------------------------------------------------------------

    def _settle(self, job: Job, outcome: Outcome | BaseException | None) -> None:
        if job in self._jobs:
            self._jobs.remove(job)
        if not job.cancelled:
            job.cancelled = True  # settled once
            try:
                job.on_done(outcome)
            except Exception:  # the receiver is gone (its event loop closed): nothing to tell
                log.debug("a finished job's receiver failed", exc_info=True)

    def _fail_running(self, exc: BaseException) -> None:
        """A decode failed: every job with a running sequence fails; the cache starts empty."""
        failed = {id(s.job): s.job for s in self._sequences}
        self._empty()
        for job in failed.values():
            job.running = 0
            self._settle(job, exc)

    def _finish_all(self, outcome: BaseException | None) -> None:
        with self._lock:
            self._jobs.extend(self._inbox)
            self._inbox.clear()
        if self._ctx is not None:
            self._empty()
        for job in list(self._jobs):
            self._settle(job, outcome)
        self._jobs.clear()

    def _empty(self) -> None:
        """Drop every sequence and every cached cell."""
        for sequence in self._sequences:
            sequence.sampler.close()
        self._sequences.clear()
        self._ctx.kv_cache_clear()
        self._kv = [[] for _ in range(self.slots)]
        self._owner = [None] * self.slots
        self._kept.clear()

    def _sampler(self, params: Params, seed: int) -> Any:
        """llama-cpp-python's chain (``Llama._init_sampler``) for ``params``, seeded."""
        sampler = self._internals.LlamaSampler()
        if params.output_format is not None:
            grammar = self._llama_cpp.LlamaGrammar.from_string(params.output_format.grammar, verbose=False)
            sampler.add_grammar(self.llama._model, grammar)
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


def _put(raw: Any, row: int, token: int, pos: int, slot: int, *, logits: bool) -> None:
    raw.token[row] = token
    raw.pos[row] = pos
    raw.n_seq_id[row] = 1
    raw.seq_id[row][0] = slot
    raw.logits[row] = logits


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    """How many leading tokens ``a`` and ``b`` share, at most ``limit`` (a binary search over slice
    comparisons, which run in C: prompts are thousands of tokens and this runs for every slot)."""
    low, high = 0, max(0, min(len(a), len(b), limit))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low
