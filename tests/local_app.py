"""A throwaway aiohttp app on 127.0.0.1 for tests that need a hand-written upstream."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve(handler: Handler, route: str = "/v1/{tail:.*}", method: str = "*") -> AsyncIterator[str]:
    """Serve ``handler`` on ``route``; yields ``http://127.0.0.1:PORT`` plus ``/v1`` when the route has it."""
    app = web.Application()
    app.router.add_route(method, route, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield base + "/v1" if route.startswith("/v1/") else base
    finally:
        await runner.cleanup()
