"""The resumable batch runner: one candidate pool per row, aggregated by every method, one record per row.

Durability (a run may be SIGKILLed at any moment):

- records (their format: :mod:`fusion_of_n.records`) are appended whole (one ``write`` per line) and
  flushed + fsync'd in batches;
- on start, a torn last line left by a killed run is cut off, so appending never glues onto it;
- completed ids are read back from the output and skipped; a row is written only once it is complete,
  so no completed row is lost or written twice;
- rows that fail go to ``OUTPUT.errors.jsonl`` (rewritten each run) and are retried by the next run.
  Bad input rows are reported as read. Any exception raised for one row (an upstream failure, or a bug
  such as a ``KeyError`` in a backend or an aggregator) becomes that row's error record
  ``{"stage", "type", "message"}`` (keys redacted) and the run goes on; an exception that is not the
  library's own is also logged with its traceback, once per row. This row boundary is, with the CLI
  and the server, one of the places that catch ``Exception``. Only a failure of the runner itself
  stops the run: the output cannot be written, Ctrl-C or cancellation, or a config error before the
  first row. Either way every input row ends up exactly once in ``OUTPUT`` or in the errors file (rows
  in flight when a run stops are redone by the next run);
- ``OUTPUT.run.json`` records the pool and methods; a run with different ones is refused unless
  ``force`` (then the old output is kept as ``OUTPUT.bak``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..aio import cancel_and_wait
from ..api import Pipeline
from ..backends.base import ModelSpec
from ..backends.openai import DEFAULT_KEY_ENV as OPENAI_KEY_ENV
from ..config import PipelineSettings
from ..errors import ConfigError, FusionOfNError, redact
from ..records import (
    RecordWriter,
    build_record,
    completed_ids,
    error_record,
    errors_file,
    record_line,
    record_tokens,
    repair_tail,
    run_file,
)
from ..sampling import Pool
from ..scorers.reward import DEFAULT_KEY_ENV as REWARD_KEY_ENV
from ..types import Request, Result
from .rows import InputRow, RowError

log = logging.getLogger(__name__)


@dataclass
class Summary:
    read: int = 0
    skipped: int = 0  # completed by an earlier run
    done: int = 0
    input_errors: int = 0
    failed: int = 0
    tokens: int = 0
    seconds: float = 0.0
    errors_file: str = ""

    @property
    def attempted(self) -> int:
        return self.read - self.skipped

    @property
    def error_fraction(self) -> float:
        """Bad and failed rows over all rows read (rows done by earlier runs count as good)."""
        return (self.input_errors + self.failed) / self.read if self.read else 0.0

    def line(self) -> str:
        rate = self.done / self.seconds if self.seconds else 0.0
        text = (
            f"{self.done} rows written, {self.skipped} already done, {self.input_errors} bad input rows, "
            f"{self.failed} failed rows, {self.tokens} tokens, {self.seconds:.1f}s ({rate:.2f} rows/s)"
        )
        if self.input_errors or self.failed:
            text += f"; errors in {self.errors_file}"
        return text


def manifest(pipeline: Pipeline, methods: Sequence[str]) -> dict[str, Any]:
    """What makes two runs' pools and results comparable."""
    s = pipeline.settings
    described = {
        "models": [b.name for b in pipeline.backends],
        "n": s.n,
        "methods": list(methods),
        "fusor": pipeline.fusor.name if {"fusion", "usc", "auto"} & set(methods) else None,
        "scorer": pipeline.scorer().name if "bon" in methods else None,
        "params": {
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            "seed": s.seed,
            "stop": list(s.stop) if s.stop else None,
        },
    }
    if s.adaptive:  # only when on, so the run files of earlier runs still match
        described["adaptive"] = True
    return described


def check_manifest(output: str, current: dict[str, Any], force: bool) -> None:
    path = run_file(output)
    if os.path.exists(path) and os.path.exists(output):
        with open(path, encoding="utf-8") as handle:
            previous = json.load(handle)
        if previous != current:
            if not force:
                differ = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
                raise ConfigError(
                    f"{output} was written with different {', '.join(differ)} "
                    f"(was {', '.join(f'{k}={previous.get(k)!r}' for k in differ)}); "
                    "use a new -o OUTPUT, or --force to start over (the old file is kept as .bak)"
                )
            os.replace(output, output + ".bak")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(current, handle, indent=1)
    os.replace(tmp, path)


MODEL_KEYS = {"openai": OPENAI_KEY_ENV}
"""provider -> the key variable a model spec without ``key_env`` reads."""
REWARD_KEYS = {"vllm": REWARD_KEY_ENV}
"""provider -> the key variable a reward spec without ``key_env`` reads."""


def model_specs(settings: PipelineSettings) -> Iterator[tuple[ModelSpec, str | None]]:
    """Each model, fusor, judge and reward spec string of ``settings`` with the variable its key is read
    from (None: it takes no key). Backend objects and unparsable specs (not used, or the run would have
    failed already) are left out."""
    models = [(value, MODEL_KEYS) for value in (*settings.models, settings.fusor, settings.judge)]
    for value, default_keys in [*models, (settings.reward, REWARD_KEYS)]:
        if not isinstance(value, str):
            continue
        try:
            spec = ModelSpec.parse(value)
        except ConfigError:
            continue
        yield spec, spec.option("key_env") or default_keys.get(spec.provider)


def secrets_of(settings: PipelineSettings, env: Mapping[str, str]) -> tuple[str, ...]:
    """The API keys ``settings`` reads from ``env``: redacted from every error record and log line."""
    return tuple(sorted({env[name] for _, name in model_specs(settings) if name and env.get(name)}))


def _failed(row: InputRow, stage: str, exc: Exception, secrets: Sequence[str]) -> dict[str, Any]:
    """The row's error record; an exception that is not the library's own is logged (error level) with
    its traceback, keys redacted."""
    if not isinstance(exc, FusionOfNError):
        log.error(
            "row %r (line %d): unexpected %s in %s; the row goes to the errors file and the run goes on\n%s",
            row.id,
            row.line,
            type(exc).__name__,
            stage,
            redact("".join(traceback.format_exception(exc)).rstrip(), secrets),
        )
    return error_record(row, stage, exc, secrets)


async def process_row(
    pipeline: Pipeline, row: InputRow, methods: Sequence[str], secrets: Sequence[str] = ()
) -> dict[str, Any]:
    """One row through the data path: one pool, every method on it. Any exception raised for the row
    (upstream failures and bugs alike) becomes an error record naming the stage, with ``secrets`` and
    key shapes redacted from its message; errors are never written as answers. Only cancellation and
    other ``BaseException`` (Ctrl-C) propagate. The record returned is always JSON-serialisable (else it
    is the row's error record, stage ``record``)."""
    record, _line = await processed_row(pipeline, row, methods, secrets)
    return record


async def processed_row(
    pipeline: Pipeline, row: InputRow, methods: Sequence[str], secrets: Sequence[str] = ()
) -> tuple[dict[str, Any], bytes | None]:
    """:func:`process_row`'s record with its output line (:func:`~fusion_of_n.records.record_line`) when
    it is a finished record: encoding it is the check that it is JSON-serialisable, so it is done once.
    An error record comes with None (the errors file encodes it)."""
    started = time.perf_counter()
    try:
        request = pipeline.request(row.chat, language=row.language)
        pool = await pipeline.sample(request)
    except Exception as exc:  # the row boundary: one row's failure is that row's error record
        return _failed(row, "sampling", exc, secrets), None
    outcomes = await _aggregate_all(pipeline, request, pool, methods)
    results: dict[str, Result] = {}
    for method, outcome in zip(methods, outcomes, strict=True):
        if isinstance(outcome, Exception):
            return _failed(row, method, outcome, secrets), None
        if isinstance(outcome, BaseException):
            raise outcome
        results[method] = outcome
    try:
        record = build_record(row, pool, results, time.perf_counter() - started, pipeline.settings.system)
        return record, record_line(record)  # a value JSON cannot hold fails this row, not the writer
    except Exception as exc:
        return _failed(row, "record", exc, secrets), None


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """While a run lasts, the objects that exist before it (modules, settings, the pipeline) are left out
    of the garbage collector's passes (:func:`gc.freeze`), so a full pass scans the run's own objects
    rather than the whole heap: at 256 rows in flight a full pass over the heap took ~18 ms, a stall of
    every row in flight. Unfrozen when the run ends; a heap someone else froze is left as it is."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def _aggregate_all(
    pipeline: Pipeline, request: Request, pool: Pool, methods: Sequence[str]
) -> list[Result | BaseException]:
    """Every method's result on ``pool`` or its exception, concurrently. One method is awaited in this task
    (no task to schedule per row: ~20 µs of the runner's CPU per row); its cancellation or other
    ``BaseException`` propagates, as :func:`process_row` re-raises them from gather anyway."""
    if len(methods) != 1:
        return await asyncio.gather(*(pipeline.aggregate(request, pool, m) for m in methods), return_exceptions=True)
    try:
        return [await pipeline.aggregate(request, pool, methods[0])]
    except Exception as exc:  # the row boundary: process_row turns it into the row's error record
        return [exc]


@dataclass
class BatchRunner:
    """Runs rows through ``pipeline`` with ``concurrency`` rows in flight; see the module docstring."""

    pipeline: Pipeline
    methods: tuple[str, ...]
    output: str
    concurrency: int = 64
    force: bool = False
    on_row: Callable[[int, bool], None] | None = None  # (tokens, failed) after each attempted row
    summary: Summary = field(default_factory=Summary)
    secrets: tuple[str, ...] = ()  # API keys to redact from error records and logs (see secrets_of)

    async def run(self, rows: Iterable[InputRow | RowError], total: int | None = None) -> Summary:
        with frozen_heap():
            return await self._run(rows)

    async def _run(self, rows: Iterable[InputRow | RowError]) -> Summary:
        if self.concurrency < 1:
            raise ConfigError("--concurrency must be at least 1")
        for method in self.methods:
            self.pipeline.aggregator(method)  # bad methods fail before any work
        check_manifest(self.output, manifest(self.pipeline, self.methods), self.force)
        repair_tail(self.output)
        done = completed_ids(self.output)
        self.summary.errors_file = errors_file(self.output)
        started = time.perf_counter()
        writer = RecordWriter(self.output)
        errors = RecordWriter(self.summary.errors_file, batch=1, mode="w")
        slots = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        stopped: list[BaseException] = []  # a failure of the runner itself (writing, on_row, cancellation)

        async def one(row: InputRow) -> None:
            try:
                record, line = await processed_row(self.pipeline, row, self.methods, self.secrets)
            finally:
                slots.release()
            failed = line is None
            if line is None:
                errors.write(record)
            else:
                writer.write_line(line)
            tokens = record_tokens(record)
            self.summary.failed += failed
            self.summary.done += not failed
            self.summary.tokens += tokens
            if self.on_row:
                self.on_row(tokens, failed)

        def finished(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            if task.cancelled():
                stopped.append(asyncio.CancelledError("a row was cancelled"))
            elif (failure := task.exception()) is not None:
                stopped.append(failure)

        try:
            for row in rows:
                if stopped:
                    break
                self.summary.read += 1
                if isinstance(row, RowError):
                    self.summary.input_errors += 1
                    errors.write(row.to_record())
                    if self.on_row:
                        self.on_row(0, True)
                    continue
                if row.id in done:
                    self.summary.skipped += 1
                    continue
                done.add(row.id)
                await slots.acquire()
                if stopped:
                    slots.release()
                    break
                task = asyncio.create_task(one(row))
                tasks.add(task)
                task.add_done_callback(finished)
            while tasks and not stopped:
                await asyncio.wait(set(tasks), return_when=asyncio.FIRST_COMPLETED)
            if stopped:
                raise stopped[0]
        finally:
            await cancel_and_wait(tasks)
            writer.close()
            errors.close()
            self.summary.seconds = time.perf_counter() - started
        return self.summary
