"""The suite's own guards (tests/conftest.py): no connection or DNS query beyond loopback, no request
from a backend to a remote URL, and no API key from the environment of whoever runs the tests."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fusion_of_n import http
from fusion_of_n.backends import create_backend
from fusion_of_n.config import environment
from fusion_of_n.types import Request

TEST_NET = "192.0.2.1"  # TEST-NET-1 (RFC 5737): documentation only, never routed
PROMPT = Request.from_prompt("two plus two")


def refused_once(guard: Any, fragment: str) -> None:
    """The guard refused exactly one thing, naming ``fragment``; forgetting it lets this test pass."""
    refused = guard.take()
    assert len(refused) == 1, refused
    assert fragment in refused[0] and "@pytest.mark.network" in refused[0]


def test_a_connection_beyond_loopback_is_refused_before_the_system_call(network_guard: Any) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)  # a real connect would return EINPROGRESS with its SYN on the wire
        with pytest.raises(network_guard.error, match="network guard: this test tried to connect to"):
            sock.connect((TEST_NET, 80))
        assert sock.getsockname() == ("0.0.0.0", 0)  # never bound: no connect() reached the kernel
        with pytest.raises(network_guard.error):
            sock.connect_ex(("10.255.255.1", 80))
    assert len(network_guard.take()) == 2


def test_create_connection_and_name_lookups_are_refused_so_no_dns_query_is_sent(network_guard: Any) -> None:
    with pytest.raises(network_guard.error, match="open a connection to"):
        socket.create_connection((TEST_NET, 80), timeout=1)
    refused_once(network_guard, TEST_NET)
    for lookup in (socket.getaddrinfo, socket.gethostbyname):
        with pytest.raises(network_guard.error, match="DNS query"):
            lookup("example.com", 443) if lookup is socket.getaddrinfo else lookup("example.com")
        refused_once(network_guard, "example.com")


async def test_asyncio_and_aiohttp_are_refused_with_the_guards_error_not_a_retryable_one(
    network_guard: Any,
) -> None:
    with pytest.raises(network_guard.error):
        await asyncio.open_connection(TEST_NET, 80)
    refused_once(network_guard, TEST_NET)
    async with aiohttp.ClientSession() as session:
        for url, named in ((f"http://{TEST_NET}:9/v1", TEST_NET), ("http://fusion-of-n.invalid/v1", "DNS query")):
            with pytest.raises(network_guard.error):  # not ClientConnectorError, which http.py retries
                await session.get(url)
            refused_once(network_guard, named)


def test_loopback_localhost_and_unix_sockets_are_allowed(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("localhost", port), timeout=5):
            pass
        with socket.socket() as sock:
            sock.connect(("127.0.0.1", port))
    if socket.has_ipv6:
        try:
            server6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
        except OSError:
            pass  # no IPv6 loopback in this container
        else:
            with server6, socket.create_connection(("::1", server6.getsockname()[1]), timeout=5):
                pass
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as client:
        listener.bind(path)
        listener.listen()
        client.connect(path)


@pytest.mark.network
def test_the_network_marker_lifts_the_guard_and_the_remote_request_flag(network_guard: Any) -> None:
    assert http.ALLOW_REMOTE_REQUESTS is True
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((TEST_NET, 9))  # UDP: sets the peer, sends nothing
        except OSError:
            pass  # no route on this machine: the kernel was asked, so the guard let it through
        else:
            assert sock.getpeername() == (TEST_NET, 9)
    assert network_guard.take() == []


async def test_a_backend_pointed_beyond_loopback_fails_naming_the_flag_before_connecting(
    network_guard: Any,
) -> None:
    backend = create_backend(f"openai:m1@http://{TEST_NET}/v1#retries=3", {})  # building it is fine
    try:
        with pytest.raises(RuntimeError, match=r"fusion_of_n\.http\.ALLOW_REMOTE_REQUESTS is False"):
            await backend.generate(PROMPT)
        with pytest.raises(RuntimeError, match="ALLOW_REMOTE_REQUESTS"):
            async for _ in backend.stream(PROMPT):  # type: ignore[attr-defined]
                pass
    finally:
        await backend.aclose()
    assert network_guard.take() == []  # refused by the library, before any socket


def test_the_library_allows_remote_requests_by_default() -> None:
    code = "import fusion_of_n.http as h; print(h.ALLOW_REMOTE_REQUESTS)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "True"


SET_BEFORE_THE_TEST = {
    "OPENAI_API_KEY": "sk-from-the-shell-0123456789",
    "OPENAI_BASE_URL": "https://api.openai.com/v1",
    "ANTHROPIC_API_KEY": "sk-ant-from-the-shell",
    "VLLM_API_KEY": "vllm-from-the-shell",
    "HF_TOKEN": "hf_fromtheshell0123",
    "SOME_VENDOR_API_KEY": "vendor-from-the-shell",
    "FUSION_OF_N_LLAMA_CPP": "/somewhere",
}
KEPT = {"FUSION_OF_N_CACHE": "/tmp/fusion-of-n-guard-cache", "GUARD_TEST_UNRELATED": "stays"}


@pytest.fixture(scope="module")
def shell_environment() -> Iterator[None]:
    """Variables set as if exported in the shell: a module-scoped fixture is set up before the
    function-scoped scrub, so the scrub meets them exactly as it meets a developer's real keys."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**SET_BEFORE_THE_TEST, **KEPT}.items():
            patch.setenv(name, value)
        yield


def test_the_scrub_removes_keys_set_before_the_test_and_keeps_the_cache(shell_environment: None) -> None:
    for env in (os.environ, environment()):
        assert not set(SET_BEFORE_THE_TEST) & set(env)
        assert {name: env.get(name) for name in KEPT} == KEPT


def test_a_test_that_needs_a_key_sets_it_itself(shell_environment: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert environment()["OPENAI_API_KEY"] == "sk-test"
