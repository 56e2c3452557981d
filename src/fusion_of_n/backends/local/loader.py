"""Models loaded by llama.cpp in this process: one per file and load settings, each with its own thread.

A private map from :class:`LoadSettings` to :class:`LoadedModel`, guarded by a ``threading.Lock``, makes a
model load once per process however many backends use it: :func:`load` loads (or returns) one,
:func:`loaded_model` peeks without waiting, :func:`clear_model_cache` frees them all. This is the one
deliberate piece of process-level state in the library. Calls into a loaded model are serialized on its
single worker thread (see :mod:`.backend`). Importing this module does not import llama_cpp.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ...errors import BackendError, MissingDependency

log = logging.getLogger(__name__)

LLAMA_CPP_PIN = "llama-cpp-python==0.3.36"
T = TypeVar("T")
_INSTALL_HINT = f"the local backend needs llama.cpp; install it with: pip install {LLAMA_CPP_PIN}"


@dataclass(frozen=True)
class LoadSettings:
    """Everything that decides how a model is loaded; two backends with equal settings share one model."""

    path: Path
    n_ctx: int
    n_threads: int
    n_batch: int = 512
    n_gpu_layers: int = 0
    chat_format: str | None = None
    parallel: int = 1  # sequences its decode loop holds (1: none, requests run one by one)


@dataclass
class LoadedModel:
    """A loaded model, its worker thread, and the decode loop (:class:`.engine.Engine`) that batches its
    requests. Work that needs the thread to itself (a one-by-one completion, a stream outside the engine)
    goes through :meth:`alone`, which the engine sees: it admits nothing new while such work waits."""

    llama: Any
    settings: LoadSettings
    worker: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-cpp")
    )
    engine: Any = None  # the engine.Engine, made on first use
    _waiting: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def alone(self, call: Callable[[], T]) -> Future[T]:
        """Run ``call`` on the worker thread, after the engine's running sequences finish."""
        left = threading.Event()

        def leave(*_: object) -> None:
            with self._lock:
                if not left.is_set():
                    left.set()
                    self._waiting -= 1

        def run() -> T:
            leave()
            return call()

        with self._lock:
            self._waiting += 1
        future = self.worker.submit(run)
        future.add_done_callback(leave)  # also when it is cancelled before it starts
        return future

    def others_waiting(self) -> bool:
        return self._waiting > 0

    def close(self) -> None:
        self.worker.shutdown(wait=True)
        if self.engine is not None:
            self.engine.close()  # before its model
        self.llama.close()


_LOADED: dict[LoadSettings, LoadedModel] = {}
_LOADED_LOCK = threading.Lock()


def require_llama_cpp() -> None:
    """Fail fast, without importing llama_cpp (a heavy import), when it is not installed."""
    try:
        found = importlib.util.find_spec("llama_cpp") is not None
    except ValueError:  # sys.modules["llama_cpp"] is None or has no spec
        found = False
    if not found:
        raise MissingDependency(_INSTALL_HINT)


def import_llama_cpp() -> Any:
    try:
        return importlib.import_module("llama_cpp")
    except ImportError as exc:
        raise MissingDependency(_INSTALL_HINT) from exc


def loaded_model(settings: LoadSettings) -> LoadedModel | None:
    """The model already loaded with ``settings``, or None; never waits for a load in progress.

    A plain dict read is atomic, so not taking the lock keeps the caller (the event loop) free while
    another thread loads.
    """
    return _LOADED.get(settings)


def loaded_models() -> list[LoadedModel]:
    """Every model loaded now (e.g. to read their engines' counters)."""
    return list(_LOADED.values())


def load(settings: LoadSettings) -> LoadedModel:
    """The model loaded with ``settings``, loading it now (once per process) if needed."""
    with _LOADED_LOCK:
        loaded = _LOADED.get(settings)
        if loaded is not None:
            return loaded
        llama_cpp = import_llama_cpp()
        started = time.perf_counter()
        try:
            llama = llama_cpp.Llama(
                model_path=str(settings.path),
                n_ctx=settings.n_ctx,
                n_threads=settings.n_threads,
                n_batch=settings.n_batch,
                n_gpu_layers=settings.n_gpu_layers,
                chat_format=settings.chat_format,
                # flash attention skips masked KV cells: in the decode loop's pooled cache a token then
                # attends over its own sequence's cells only (benchmarks/decode_step.py, against its
                # --no-flash: 16 sequences ~2.8x one instead of ~1.8x); the one-by-one path uses it too,
                # so both agree
                flash_attn=True,
                verbose=False,
            )
        except Exception as exc:  # foreign-library boundary: llama.cpp raises ValueError/RuntimeError/OSError
            raise BackendError(
                f"llama.cpp could not load {settings.path}: {exc}; check that the file is a complete GGUF "
                f"that {LLAMA_CPP_PIN} supports"
            ) from exc
        log.info("loaded %s (n_ctx=%d) in %.2f s", settings.path, settings.n_ctx, time.perf_counter() - started)
        if not _LOADED:
            # free models before interpreter teardown; llama.cpp's own finalizers fail noisily then
            atexit.register(clear_model_cache)
        loaded = _LOADED[settings] = LoadedModel(llama, settings)
        return loaded


def clear_model_cache() -> None:
    """Free every model loaded by this process; call it when no request is running (it waits for them).

    Backends built before stay usable: their next request loads the model again.
    """
    with _LOADED_LOCK:
        for loaded in _LOADED.values():
            loaded.close()
        _LOADED.clear()
