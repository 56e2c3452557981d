"""Running an aiohttp app: in the foreground (``fusion-of-n serve``) or on a background thread (tests,
notebooks). Handlers are cancelled when their client disconnects, which cancels the upstream work."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
from collections.abc import Callable

from aiohttp import web


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving ``app``; returns the runner and the bound port (``port=0`` picks a free one)."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=2.0)
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
    """Serve an app built by ``factory`` on 127.0.0.1 from a thread: ``with BackgroundServer(f) as s: s.url``."""

    def __init__(self, factory: Callable[[], web.Application], host: str = "127.0.0.1", port: int = 0) -> None:
        self.factory, self.host, self.port = factory, host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL for an OpenAI client: ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> BackgroundServer:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                self._runner, self.port = loop.run_until_complete(start_site(self.factory(), self.host, self.port))
            except BaseException as exc:  # handed to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="fusion-of-n-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
