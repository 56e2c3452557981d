"""The floor for a Python proxy here: an aiohttp server that forwards POST /v1/chat/completions to the
upstream with one client session and returns its bytes, nothing else (no validation, no parsing). On
uvloop when installed, as ``fusion-of-n serve`` with the fast extra. ``benchmarks/proxy.py`` runs it as
one more overhead row, so our proxy's added latency and CPU can be read against what aiohttp alone costs.

    python benchmarks/_bare_forwarder.py UPSTREAM_URL PORT
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
from aiohttp import web


async def serve(upstream: str, port: int) -> None:
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        async with session.post(
            f"{upstream}/chat/completions", data=body, headers={"Content-Type": "application/json"}
        ) as reply:
            return web.Response(body=await reply.read(), status=reply.status, content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", forward)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def main() -> None:
    upstream, port = sys.argv[1], int(sys.argv[2])
    try:
        import uvloop

        uvloop.run(serve(upstream, port))
    except ImportError:
        asyncio.run(serve(upstream, port))


if __name__ == "__main__":
    main()
