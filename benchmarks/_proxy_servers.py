"""Start the two proxies for ``benchmarks/proxy.py``: ``fusion-of-n serve`` and OptiLLM.

OptiLLM goes into its own virtualenv under the cache folder, with ``--no-deps`` and only what its
proxy server and its ``moa`` / ``bon`` code paths import (found by importing ``optillm`` until it
stopped failing; no torch, transformers, spacy or gradio). The venv is reused when its marker file
lists the same packages.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

OPTILLM = "optillm==0.4.0"
OPTILLM_RUNTIME = (  # installed with their own dependencies
    "flask==3.1.3",
    "openai==3.57.0",
    "cerebras_cloud_sdk==1.91.0",  # imported unconditionally by optillm.server
    "numpy==2.4.6",
    "networkx==3.6.1",
    "z3-solver==4.15.4.0",  # optillm.z3_solver, imported by optillm.server
    "sympy==1.14.0",
    "aiohttp==3.14.5",
    "PyYAML==6.0.4",
    "math-verify==0.9.0",
)
FUSION_OF_N = Path(sys.executable).with_name("fusion-of-n")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Unavailable(Exception):
    """A proxy could not be installed or started; the message says why (printed in its table rows)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, from /proc (10 ms resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def serve_missing() -> str | None:
    """None when ``fusion-of-n serve`` exists, else why not."""
    if not FUSION_OF_N.exists():
        return f"{FUSION_OF_N} does not exist"
    done = subprocess.run([str(FUSION_OF_N), "serve", "--help"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return "the `fusion-of-n serve` command does not exist yet"
    return None


def install_optillm(cache: Path) -> Path:
    """The python of a venv holding OptiLLM (created on first use); raises Unavailable on failure."""
    venv = cache / "optillm-venv"
    python = venv / "bin" / "python"
    marker = venv / ".fusion-of-n-bench"
    wanted = "\n".join((OPTILLM, *OPTILLM_RUNTIME))
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"installing OptiLLM into {venv} (once; about a minute) ...", file=sys.stderr, flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for command in (
        [sys.executable, "-m", "venv", str(venv)],
        [*pip, "--no-deps", OPTILLM],
        [*pip, *OPTILLM_RUNTIME],
    ):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise Unavailable(f"OptiLLM install failed at `{' '.join(command[-2:])}`: {tail[0]}")
    marker.write_text(wanted)
    return python


class ProxyProcess:
    """A proxy subprocess on 127.0.0.1: started, polled on /health, stopped (by its own pid)."""

    def __init__(self, name: str, command: list[str], port: int, log: Path, env: dict[str, str], cwd: Path) -> None:
        self.name, self.command, self.port, self.log_path, self.env, self.cwd = name, command, port, log, env, cwd
        self.url = f"http://127.0.0.1:{port}/v1"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def __enter__(self) -> ProxyProcess:
        with self.log_path.open("wb") as log:
            try:
                self._process = subprocess.Popen(
                    self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd
                )
            except OSError as exc:
                raise Unavailable(f"{self.name} could not start: {exc}") from exc
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        code = self._process.poll()
        self.__exit__(None, None, None)
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        how = "was not healthy after 60 s" if code is None else f"exited with code {code}"
        last = lines[-1][:120] if lines else "(empty)"
        raise Unavailable(f"{self.name} {how}; last line of {self.log_path}: {last}")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def ours(serve: list[str], upstream_url: str, cache: Path) -> ProxyProcess:
    """``serve`` is the command before the flags, normally ``[.../fusion-of-n, "serve"]``."""
    port = free_port()
    command = [*serve, "--model", f"openai:fake@{upstream_url}", "-n", "3", "--method", "fusion"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if k not in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}}
    return ProxyProcess("fusion-of-n serve", command, port, cache / "fusion-of-n-serve.log", env, cache)


def optillm(python: Path, upstream_url: str, cache: Path, best_of_n: int) -> ProxyProcess:
    """OptiLLM on the fake upstream; N for ``bon`` is a server flag, ``moa`` always samples 3."""
    port = free_port()
    command = [str(python.with_name("optillm")), "--base-url", upstream_url, "--port", str(port)]
    command += ["--host", "127.0.0.1", "--best-of-n", str(best_of_n), "--log", "warning"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPTILLM_", "CEREBRAS_", "AZURE_", "OPENAI_"))}
    env["OPENAI_API_KEY"] = "unused-by-the-fake-upstream"  # selects its OpenAI client, which honours --base-url
    return ProxyProcess("OptiLLM", command, port, cache / "optillm.log", env, cache)


def bare(upstream_url: str, cache: Path) -> ProxyProcess:
    """The aiohttp-only forwarder of ``_bare_forwarder.py``: the floor a Python proxy reaches here."""
    port = free_port()
    command = [sys.executable, str(Path(__file__).with_name("_bare_forwarder.py")), upstream_url, str(port)]
    return ProxyProcess("bare aiohttp forwarder", command, port, cache / "bare-forwarder.log", dict(os.environ), cache)
