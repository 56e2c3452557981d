"""A FakeOpenAIServer in a spawned child process, so that the CPU a benchmark measures is the client's alone.

    with ServerProcess(make_upstream, latency=0.05) as up:   # make_upstream(latency=0.05) runs in the child
        up.url, up.reset(), up.stats()

``make`` must be a module-level function (it is pickled by name). It returns an :class:`Upstream`: the
server, the benchmark's own counters for ``stats()`` (the child adds ``max_in_flight`` and its own
``cpu`` time), and what ``reset()`` clears beyond the server's request log and ``max_in_flight``.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any, Self

from fusion_of_n.testing import FakeOpenAIServer


def _nothing() -> None:
    return None


@dataclass
class Upstream:
    """Built in the child by ``make``: the server to run and the benchmark's hooks into what it counts."""

    server: FakeOpenAIServer
    stats: Callable[[], dict[str, Any]]
    reset: Callable[[], None] = _nothing


def _serve(conn: Connection, make: Callable[..., Upstream], options: Mapping[str, Any]) -> None:
    """Child process: serve, answer "stats" / "reset" until "stop"."""
    upstream = make(**options)
    with upstream.server as srv:
        conn.send(srv.url)
        while (command := conn.recv()) != "stop":
            if command == "stats":
                conn.send({**upstream.stats(), "max_in_flight": srv.max_in_flight, "cpu": time.process_time()})
            elif command == "reset":
                srv.requests.clear()
                srv.max_in_flight = 0
                upstream.reset()
                conn.send("ok")


class ServerProcess:
    """Runs ``make(**options)``'s server in a child process while the ``with`` block lasts."""

    def __init__(self, make: Callable[..., Upstream], **options: Any) -> None:
        context = mp.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, make, options), daemon=True)
        self.url = ""

    def __enter__(self) -> Self:
        self._process.start()
        self.url = self._conn.recv()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._conn.send("stop")
        self._process.join(timeout=10)

    def stats(self) -> dict[str, Any]:
        """The upstream's counters since the last reset, plus ``max_in_flight`` and the child's ``cpu`` seconds."""
        self._conn.send("stats")
        result: dict[str, Any] = self._conn.recv()
        return result

    def reset(self) -> None:
        self._conn.send("reset")
        self._conn.recv()
