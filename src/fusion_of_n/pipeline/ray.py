"""``fusion-of-n generate --engine ray``: the batch runner's stages on Ray Data actors.

The same rows, stages and records as the local engine (:mod:`.runner`): each row goes through
:func:`~.runner.process_row` (one pool, every method on it) and becomes one record, appended to
``OUTPUT`` by :class:`~fusion_of_n.records.RecordWriter`; failed rows go to ``OUTPUT.errors.jsonl``.
What differs is where the rows are processed:

- the driver (this process) reads the input, writes bad input rows straight to the errors file, skips
  the ids already completed in ``OUTPUT`` (after the same manifest check and torn-tail repair as the
  local engine) and hands the rest to Ray Data in windows of ``window`` rows (so the driver never holds
  the whole input; each window runs on a fresh actor pool, which starts in seconds);
- ``map_batches`` runs :class:`RowWorker` actors (a fixed pool, one CPU each; default one per CPU of
  the cluster). Each actor builds one :class:`~fusion_of_n.api.Pipeline` from the (picklable)
  :class:`~fusion_of_n.config.PipelineSettings` on its own event loop, which lives as long as the
  actor, so HTTP sessions and loaded models are reused across batches. An actor runs at most
  ``ceil(concurrency / actors)`` rows at once; two batches may overlap, so a slow row does not idle
  the actor;
- records travel back as JSON strings (nested, heterogeneous dicts do not fit Arrow schemas) and the
  driver appends them as they arrive, calling ``on_row(tokens, failed)`` for each.

Ray is touched only once there is a row to do (a finished run re-runs without starting it). It is
joined if this process already called ``ray.init``; else ``address`` (or ``RAY_ADDRESS`` in ``env``)
names a cluster to connect to; else a local Ray is started on this machine's CPUs, without the
dashboard and without Ray's usage statistics (``RAY_USAGE_STATS_ENABLED=0`` unless ``env`` sets it),
and shut down at the end. On a cluster, every node needs this package (same version) installed.

What the actors receive of ``env`` (:func:`actor_env`): only the variables the pipeline reads, never the
driver's whole environment. That is the key variable of each model spec (``key_env=VAR``, else
``OPENAI_API_KEY`` for an ``openai:`` spec and ``VLLM_API_KEY`` for a ``vllm:`` reward spec),
``OPENAI_BASE_URL`` for an ``openai:`` spec without a URL, and every ``FUSION_OF_N_*`` variable (e.g.
``FUSION_OF_N_CACHE``); an unrelated secret such as ``AWS_SECRET_ACCESS_KEY`` stays on the driver. A
backend registered by a plugin gets only its ``key_env``. Their names (never their values) are logged.

A row that fails for any reason, a bug in a backend or an aggregator included, becomes that row's error
record on the actor (:func:`~.runner.process_row`); the batch and the other rows go on, and every row of
a batch comes back as a record or an error record.

Resume semantics (the driver is the only writer; a run may be killed at any moment):

- records written by the driver are durable: appends are flushed and fsync'd every 64 records and when
  the run ends (also on Ctrl-C or an error);
- if the driver is killed, the records appended since its last flush, the results not yet received and
  the rows in flight on the actors are lost: the next run redoes those rows (paying their tokens
  again). A local Ray started by the driver stops with it (its helper processes exit a minute or two
  later); on a cluster, the job's actors are reclaimed when the driver goes;
- a torn last line is cut by the next run, and completed ids read back from ``OUTPUT`` keep a re-run
  from duplicating any written row;
- an actor that dies mid-run is restarted by Ray Data and its batch retried; a batch's records reach
  the driver once, so a retry never duplicates records.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import pickle
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any, TypeVar

from ..api import Pipeline
from ..config import PipelineSettings
from ..errors import ConfigError, MissingDependency
from ..records import RecordWriter, completed_ids, errors_file, record_tokens, repair_tail
from .rows import InputRow, RowError
from .runner import Summary, check_manifest, manifest, model_specs, process_row, secrets_of

log = logging.getLogger(__name__)

ENV_PREFIX = "FUSION_OF_N_"  # every such variable goes to the actors (FUSION_OF_N_CACHE, ...)
OPENAI_BASE_URL_ENV = "OPENAI_BASE_URL"
INSTALL_HINT = "--engine ray needs Ray Data; install it with: pip install 'fusion-of-n[ray]'"
DEFAULT_WINDOW = 10_000
BATCHES_PER_ACTOR = 2  # batches running at once in one actor (they share its row limit)
RowCallback = Callable[[int, bool], None]
T = TypeVar("T")


def import_ray() -> ModuleType:
    """The ``ray`` module (with Ray Data), or a MissingDependency naming the install command."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingDependency(INSTALL_HINT) from exc
    return ray


def connect(env: Mapping[str, str], address: str | None = None) -> bool:
    """Join the running Ray session, else the cluster at ``address`` (or ``env["RAY_ADDRESS"]``), else
    start a local Ray on this machine's CPUs. True when a Ray was started here (the caller shuts it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = address or env.get("RAY_ADDRESS") or None
    if address and address != "local":
        log.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address)
        return False
    # Ray's dashboard process reports usage statistics to the internet unless this variable says no;
    # child processes inherit it from here, the only channel Ray offers.
    os.environ["RAY_USAGE_STATS_ENABLED"] = env.get("RAY_USAGE_STATS_ENABLED", "0")
    cpus = os.cpu_count() or 1
    log.info("starting a local Ray with %d CPUs", cpus)
    ray.init(address="local", num_cpus=cpus, include_dashboard=False)
    return True


def require_specs(settings: PipelineSettings) -> None:
    """Actors build their own backends, so every model must be a spec string, not a Backend object."""
    for value in (*settings.models, settings.fusor, settings.judge):
        if value is not None and not isinstance(value, str):
            raise ConfigError(
                f"--engine ray builds the backends inside its workers, so models, fusor and judge must be "
                f"spec strings such as 'openai:llama3@http://HOST:8080/v1', not objects (got {value!r})"
            )


def actor_env(settings: PipelineSettings, env: Mapping[str, str]) -> dict[str, str]:
    """The part of ``env`` the actors need to build the pipeline (see the module docstring): the key
    variables the model specs name, ``OPENAI_BASE_URL`` where an ``openai:`` spec has no URL, and the
    ``FUSION_OF_N_*`` variables. Nothing else of the driver's environment leaves this process."""
    names = {name for name in env if name.startswith(ENV_PREFIX)}
    for spec, key_env in model_specs(settings):
        if key_env:
            names.add(key_env)
        if spec.provider == "openai" and not spec.base_url:
            names.add(OPENAI_BASE_URL_ENV)
    return {name: env[name] for name in sorted(names) if name in env}


def encode_row(row: InputRow) -> bytes:
    return pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)


def decode_row(blob: bytes) -> InputRow:
    row = pickle.loads(blob)
    if not isinstance(row, InputRow):
        raise TypeError(f"expected an encoded InputRow, got {type(row).__name__}")
    return row


class RowWorker:
    """A Ray Data actor: one Pipeline on one event loop (in its own thread) for the actor's lifetime."""

    def __init__(self, settings: PipelineSettings, env: Mapping[str, str], methods: Sequence[str], concurrency: int):
        self._methods = tuple(methods)
        self._secrets = secrets_of(settings, env)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fusion-of-n-rows", daemon=True)
        self._thread.start()
        self._pipeline, self._slots = self._call(self._build(settings, env, concurrency))

    @staticmethod
    async def _build(
        settings: PipelineSettings, env: Mapping[str, str], concurrency: int
    ) -> tuple[Pipeline, asyncio.Semaphore]:
        return Pipeline(settings, env), asyncio.Semaphore(concurrency)

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[str]]:
        rows = [decode_row(blob) for blob in batch["row"]]
        records = self._call(self._process(rows))
        return {"record": [json.dumps(record, ensure_ascii=False) for record in records]}

    async def _process(self, rows: Sequence[InputRow]) -> list[dict[str, Any]]:
        async def one(row: InputRow) -> dict[str, Any]:
            async with self._slots:
                return await process_row(self._pipeline, row, self._methods, self._secrets)

        # process_row turns any exception of a row into its error record, so every row of the batch comes
        # back; only cancellation (the actor going away) ends the batch, and Ray Data then retries it.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(row)) for row in rows]
        return [task.result() for task in tasks]

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._pipeline.aclose(), self._loop).result(timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            if not self._thread.is_alive():
                self._loop.close()

    def __del__(self) -> None:  # Ray Data drops its actors at the end of a run
        if hasattr(self, "_pipeline"):
            self.close()


async def _manifest(settings: PipelineSettings, env: Mapping[str, str], methods: Sequence[str]) -> dict[str, Any]:
    async with Pipeline(settings, env) as pipeline:
        for method in methods:
            pipeline.aggregator(method)  # bad methods fail before Ray starts
        return manifest(pipeline, methods)


def _windows(
    rows: Iterable[InputRow | RowError],
    size: int,
    done: set[str],
    summary: Summary,
    errors: RecordWriter,
    on_row: RowCallback | None,
) -> Iterator[list[bytes]]:
    """The rows still to do, encoded, ``size`` at a time; bad input rows are reported on the way."""
    pending: list[bytes] = []
    for row in rows:
        summary.read += 1
        if isinstance(row, RowError):
            summary.input_errors += 1
            errors.write(row.to_record())
            if on_row:
                on_row(0, True)
            continue
        if row.id in done:
            summary.skipped += 1
            continue
        done.add(row.id)
        pending.append(encode_row(row))
        if len(pending) >= size:
            yield pending
            pending = []
    if pending:
        yield pending


def _pool_shape(
    ray: ModuleType,
    settings: PipelineSettings,
    env: Mapping[str, str],
    methods: tuple[str, ...],
    concurrency: int,
    actors: int | None,
) -> tuple[dict[str, Any], int, int]:
    """The actors' constructor arguments, the pool size and the rows in flight per actor."""
    pool = min(actors or max(1, int(ray.cluster_resources().get("CPU", 1))), concurrency)
    per_actor = math.ceil(concurrency / pool)
    log.info("Ray engine: up to %d actors, %d rows in flight each", pool, per_actor)
    if settings.rpm or settings.tpm:  # each actor limits its own calls: share the budget between them
        settings = settings.model_copy(
            update={"rpm": settings.rpm and settings.rpm / pool, "tpm": settings.tpm and settings.tpm / pool}
        )
    shipped = actor_env(settings, env)
    log.info("Ray actors receive the environment variables: %s", ", ".join(shipped) or "none")
    worker_args = {"settings": settings, "env": shipped, "methods": methods, "concurrency": per_actor}
    return worker_args, pool, per_actor


def _process_window(
    ray: ModuleType,
    pending: list[bytes],
    worker_args: dict[str, Any],
    actors: int,
    per_actor: int,
) -> Iterator[dict[str, Any]]:
    """Run one window of encoded rows through the actor pool; yield records as they are produced."""
    actors = max(1, min(actors, math.ceil(len(pending) / per_actor)))
    dataset = ray.data.from_items([{"row": blob} for blob in pending])
    dataset.context.enable_progress_bars = False  # the CLI shows its own progress through on_row
    strategy = ray.data.ActorPoolStrategy(
        size=actors, max_concurrent_calls_per_actor=BATCHES_PER_ACTOR, enable_true_multi_threading=True
    )
    results = dataset.map_batches(
        RowWorker, fn_constructor_kwargs=worker_args, batch_size=per_actor, compute=strategy, num_cpus=1
    )
    for item in results.iter_rows():
        yield json.loads(item["record"])


def run_ray(
    settings: PipelineSettings,
    env: Mapping[str, str],
    rows: Iterable[InputRow | RowError],
    output: str,
    methods: Sequence[str],
    *,
    concurrency: int = 64,
    force: bool = False,
    on_row: RowCallback | None = None,
    address: str | None = None,
    actors: int | None = None,
    window: int = DEFAULT_WINDOW,
) -> Summary:
    """Like :class:`~.runner.BatchRunner` (same skips, records and errors file), on Ray Data actors.

    ``concurrency`` is the number of rows in flight over all actors; ``actors`` defaults to the
    cluster's CPU count (at most ``concurrency``). See the module docstring for resume semantics.
    """
    ray = import_ray()
    methods = tuple(dict.fromkeys(methods))
    if concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    if window < 1 or (actors is not None and actors < 1):
        raise ConfigError("window and actors must be at least 1")
    require_specs(settings)
    check_manifest(output, asyncio.run(_manifest(settings, env, methods)), force)
    repair_tail(output)
    done = completed_ids(output)
    summary = Summary(errors_file=errors_file(output))
    started = time.perf_counter()
    owned = False  # a Ray started here is shut down at the end
    writer = RecordWriter(output)
    errors = RecordWriter(summary.errors_file, batch=1, mode="w")
    try:
        shape: tuple[dict[str, Any], int, int] | None = None
        for pending in _windows(rows, window, done, summary, errors, on_row):
            if shape is None:  # Ray starts only once there is work: a finished run re-runs in no time
                owned = connect(env, address)
                shape = _pool_shape(ray, settings, env, methods, concurrency, actors)
            for record in _process_window(ray, pending, *shape):
                failed = record.get("error") is not None
                (errors if failed else writer).write(record)
                tokens = record_tokens(record)
                summary.failed += failed
                summary.done += not failed
                summary.tokens += tokens
                if on_row:
                    on_row(tokens, failed)
    finally:
        writer.close()
        errors.close()
        summary.seconds = time.perf_counter() - started
        if owned:
            ray.shutdown()
    return summary
