"""Running an aiohttp app: in the foreground (``fusion-of-n serve``) or on a background thread (tests,
notebooks). Handlers are cancelled when their client disconnects, which cancels the upstream work.

In the foreground (:func:`serve`) the loop is uvloop's when uvloop is installed (the ``fast`` extra):
it cuts the proxy's own CPU per request by about a fifth (``benchmarks/proxy.py``).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
from collections.abc import Callable

from aiohttp import web


async def start_site(
    app: web.Application, host: str, port: int, *, shutdown_timeout: float = 2.0
) -> tuple[web.AppRunner, int]:
    """Start serving ``app``; returns the runner and the bound port (``port=0`` picks a free one).

    ``shutdown_timeout`` is how long ``runner.cleanup()`` lets running handlers finish before cancelling them.
    """
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        await runner.cleanup()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port") from None
    sock.listen(1024)
    await web.SockSite(runner, sock, backlog=1024).start()
    return runner, sock.getsockname()[1]


def serve(app: web.Application, host: str, port: int, on_ready: Callable[[int], None]) -> None:
    """:func:`serve_forever` on a new event loop: uvloop's when it is installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve_forever(app, host, port, on_ready))
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve_forever(app, host, port, on_ready))


async def serve_forever(app: web.Application, host: str, port: int, on_ready: Callable[[int], None]) -> None:
    """Serve until SIGINT/SIGTERM, then shut down cleanly (closing upstream sessions)."""
    runner, bound = await start_site(app, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    on_ready(bound)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


class BackgroundServer:
    """Serve the app ``factory`` builds from a thread with its own loop: ``with BackgroundServer(f) as s: s.url``.

    ``port=0`` picks a free port; ``port`` holds the bound one once started. ``factory`` runs on that
    loop. ``start()`` on a running server does nothing; a failure to start is raised by ``start()``.
    """

    def __init__(
        self,
        factory: Callable[[], web.Application],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        shutdown_timeout: float = 2.0,
        thread_name: str = "fusion-of-n-server",
    ) -> None:
        self.factory, self.host, self.port = factory, host, port
        self.shutdown_timeout = shutdown_timeout
        self.thread_name = thread_name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL for an OpenAI client: ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> BackgroundServer:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []
        thread = threading.Thread(target=self._serve, args=(ready, failure), name=self.thread_name, daemon=True)
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]
        self._thread = thread
        return self

    def stop(self) -> None:
        thread, loop, runner = self._thread, self._loop, self._runner
        if thread is None or loop is None or runner is None:
            return
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = self._loop = self._runner = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        """The thread: start the site, tell ``start()``, then run the loop until ``stop()``."""
        loop = asyncio.new_event_loop()
        try:
            self._runner, self.port = loop.run_until_complete(self._start_site())
            self._loop = loop
        except BaseException as exc:  # handed to the starting thread, which re-raises it
            failure.append(exc)
            loop.close()
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _start_site(self) -> tuple[web.AppRunner, int]:
        return await start_site(self.factory(), self.host, self.port, shutdown_timeout=self.shutdown_timeout)
