"""Shared fixtures. Nothing here reaches beyond 127.0.0.1, and the guards below make sure no test does.

- **Network guard** (every test, and collection): a socket connection (``socket.socket.connect``,
  ``connect_ex``, ``sendto``; asyncio and aiohttp connect through these) to an address beyond loopback
  (127.0.0.0/8, ::1, and 0.0.0.0/:: which reach this machine) and a name lookup of anything but
  ``localhost`` or an IP literal raise :class:`NetworkBlocked` *before* the system call, so no packet and
  no DNS query leaves. The refusal is also recorded and fails the test even when the error was caught on
  the way up (the server and the CLI catch ``Exception`` at their boundary). Unix sockets are allowed.
  Subprocesses a test starts are not guarded; they inherit the scrubbed environment.
- **Remote requests** (``fusion_of_n.http.ALLOW_REMOTE_REQUESTS``) are off: a backend pointed at a URL
  beyond loopback fails when it would send, with an error naming the flag (building it is fine).
- ``@pytest.mark.network`` lifts both for one test, which is how a test says it means to go out.
- **Offline Hugging Face**: ``HF_HUB_OFFLINE=1`` and ``HF_HUB_DISABLE_TELEMETRY=1`` for the session.
- **Environment scrub**: API keys, tokens, ``OPENAI_*`` and ``FUSION_OF_N_*`` variables (but
  ``FUSION_OF_N_CACHE``, where assembled models live) are removed for every test; a test that needs one
  sets it with ``monkeypatch.setenv`` (or passes an ``env`` mapping, as most do).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fusion_of_n import http

GOLDEN = Path(__file__).parent / "golden"

KEPT_VARIABLES = frozenset({"FUSION_OF_N_CACHE"})
"""Variables the scrub keeps although they match: where the suite finds its assembled models."""


def scrubbed(name: str) -> bool:
    """Whether the environment scrub removes the variable ``name`` for the length of a test."""
    upper = name.upper()
    if upper in KEPT_VARIABLES:
        return False
    return (
        upper.endswith(("_API_KEY", "_TOKEN", "_SECRET_ACCESS_KEY"))
        or upper.startswith(("OPENAI_", "ANTHROPIC_", "FUSION_OF_N_"))
        or upper in {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "VLLM_API_KEY"}
    )


class NetworkBlocked(Exception):
    """A test tried to reach beyond loopback. Not an OSError (nor a RuntimeError): the library and
    aiohttp would take those for an unreachable server and retry; this must surface as a bug."""


class NetworkGuard:
    """Refuses connections and name lookups beyond loopback while ``allowed`` is False, and keeps a
    list of what it refused so the test fails even if the exception was caught on the way up."""

    error = NetworkBlocked

    def __init__(self) -> None:
        self.allowed = False
        self.refused: list[str] = []
        self._lock = threading.Lock()
        self._originals: dict[tuple[object, str], Any] = {}

    def install(self) -> None:
        self._patch(socket.socket, "connect", self._guarded_connect)
        self._patch(socket.socket, "connect_ex", self._guarded_connect)
        self._patch(socket.socket, "sendto", self._guarded_sendto)
        self._patch(socket, "create_connection", self._guarded_create_connection)
        for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
            self._patch(socket, name, self._guarded_lookup(name))

    def uninstall(self) -> None:
        for (owner, name), original in self._originals.items():
            setattr(owner, name, original)
        self._originals.clear()

    def take(self) -> list[str]:
        """The refusals so far, forgotten by the guard (a test of the guard itself expects some)."""
        with self._lock:
            refused, self.refused = self.refused, []
        return refused

    def _patch(self, owner: object, name: str, make: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)
        self._originals[(owner, name)] = original
        setattr(owner, name, make(original))

    def _refuse(self, what: str) -> NetworkBlocked:
        message = (
            f"network guard: this test tried to {what}; tests may only reach 127.0.0.1, ::1 "
            "and localhost (use the fake server of fusion_of_n.testing), or mark the test "
            "@pytest.mark.network to reach out on purpose"
        )
        with self._lock:
            self.refused.append(message)
        return NetworkBlocked(message)

    def _check_address(self, family: int, address: object, what: str) -> None:
        if self.allowed or family not in (socket.AF_INET, socket.AF_INET6):
            return  # Unix, netlink, ... sockets stay on this machine
        host = address[0] if isinstance(address, tuple) and address else address
        if not _is_local(host, literal_only=False):
            raise self._refuse(f"{what} {address!r}")

    def _guarded_connect(self, original: Callable[..., Any]) -> Callable[..., Any]:
        guard = self

        def connect(sock: socket.socket, address: object) -> Any:
            guard._check_address(sock.family, address, "connect to")
            return original(sock, address)

        return connect

    def _guarded_sendto(self, original: Callable[..., Any]) -> Callable[..., Any]:
        guard = self

        def sendto(sock: socket.socket, data: Any, *rest: Any) -> Any:
            guard._check_address(sock.family, rest[-1] if rest else None, "send a datagram to")
            return original(sock, data, *rest)

        return sendto

    def _guarded_create_connection(self, original: Callable[..., Any]) -> Callable[..., Any]:
        guard = self

        def create_connection(address: tuple[Any, ...], *args: Any, **kwargs: Any) -> Any:
            if not guard.allowed and not _is_local(address[0], literal_only=False):
                raise guard._refuse(f"open a connection to {address!r}")
            return original(address, *args, **kwargs)

        return create_connection

    def _guarded_lookup(self, name: str) -> Callable[[Any], Any]:
        def make(original: Callable[..., Any]) -> Callable[..., Any]:
            guard = self

            def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
                if not guard.allowed and not _is_local(host, literal_only=True):
                    raise guard._refuse(f"look up the name {host!r} ({name}, a DNS query)")
                return original(host, *args, **kwargs)

            return lookup

        return make


def _is_local(host: object, *, literal_only: bool) -> bool:
    """Whether ``host`` stays on this machine: loopback, unspecified (0.0.0.0, ::), ``localhost`` or
    ``*.localhost``, no host at all (a bind). With ``literal_only`` any IP literal passes: looking one
    up asks no DNS server, and the connection that may follow is checked on its own."""
    if host is None or host == "" or host == b"":
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])  # fe80::1%eth0
    except ValueError:
        return False
    if literal_only:
        return True
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


GUARD = NetworkGuard()


OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
"""Set for the whole session, before any test imports huggingface_hub (it reads them once, at import):
its telemetry and agent-registry lookups go to huggingface.co from background threads (the train tests
tripped the guard with them), and subprocesses started by tests inherit the setting."""


def pytest_configure(config: pytest.Config) -> None:
    os.environ.update(OFFLINE)
    GUARD.install()
    http.ALLOW_REMOTE_REQUESTS = False


def pytest_unconfigure(config: pytest.Config) -> None:
    GUARD.uninstall()
    http.ALLOW_REMOTE_REQUESTS = True


def _refused_message(refused: list[str]) -> str:
    more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
    return f"{refused[0]}{more}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test that passed although the guard refused something (the error was caught on the way up)
    fails; one that failed carries the refusal as a note, as it is likely the cause."""
    try:
        result = yield
    except BaseException as exc:
        refused = GUARD.take()
        if refused:
            exc.add_note(_refused_message(refused))
        raise
    refused = GUARD.take()
    if refused:
        pytest.fail(_refused_message(refused), pytrace=False)
    return result


@pytest.fixture(autouse=True)
def _no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Refuse what leaves loopback for this test, unless it is marked ``@pytest.mark.network``."""
    allowed = request.node.get_closest_marker("network") is not None
    GUARD.take()  # refusals from earlier (e.g. a background thread that outlived its test) were raised there
    monkeypatch.setattr(GUARD, "allowed", allowed)
    monkeypatch.setattr(http, "ALLOW_REMOTE_REQUESTS", allowed)
    yield
    refused = GUARD.take()  # during the fixtures' teardown
    if refused:
        pytest.fail(_refused_message(refused), pytrace=False)


@pytest.fixture(autouse=True)
def _scrub_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the API keys, tokens or fusion-of-n settings of whoever runs the suite."""
    for name in [name for name in os.environ if scrubbed(name)]:
        monkeypatch.delenv(name)


@pytest.fixture
def network_guard() -> NetworkGuard:
    """The guard itself, for the tests of the guard (``take()`` the refusals a test expects)."""
    return GUARD


@pytest.fixture
def golden():
    """Compare text with tests/golden/NAME; UPDATE_GOLDEN=1 rewrites the file instead."""

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if os.environ.get("UPDATE_GOLDEN"):
            path.write_text(text, encoding="utf-8")
        assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1 to create it"
        assert text == path.read_text(encoding="utf-8")

    return check
