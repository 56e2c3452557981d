"""`fusion-of-n serve` as a real process: presets from TOML and flags, key handling, clean shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from upstream_calls import fusing_step

from fusion_of_n.config import load_presets
from fusion_of_n.errors import ConfigError
from fusion_of_n.testing import FakeOpenAIServer

UPSTREAM_KEY = "sk-upstream-CLI-777"
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello"},
    {"role": "user", "content": "Capital of Italy?"},
]


step = fusing_step("Rome.", "Comparison: all agree.\n[[Rome is the capital of Italy.]]")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(*args: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fusion_of_n", "serve", "--port", str(port), *args],
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "serving" in line, line + (proc.stderr.read() if proc.poll() is not None else "")
    return proc, f"http://127.0.0.1:{port}/v1"


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


def test_serve_flags_preset_with_api_key_answers_the_official_client() -> None:
    with FakeOpenAIServer({"m1": step}) as upstream:
        proc, url = start(
            "--model",
            f"openai:m1@{upstream.url}",
            "-n",
            "4",
            "--method",
            "fusion",
            "--api-key-env",
            "PROXY_KEY",
            env={"PROXY_KEY": "let-me-in", "OPENAI_API_KEY": UPSTREAM_KEY},
        )
        try:
            client = openai.OpenAI(base_url=url, api_key="let-me-in", max_retries=0)
            reply = client.chat.completions.create(model="fusion-of-n", messages=CHAT)
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=url, api_key="nope", max_retries=0).chat.completions.create(
                    model="fusion-of-n", messages=CHAT
                )
        finally:
            log = stop(proc)
    assert reply.choices[0].message.content == "Rome is the capital of Italy."
    assert upstream.requests[0].body["messages"] == CHAT and upstream.requests[0].body["n"] == 4
    assert upstream.requests[0].headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert UPSTREAM_KEY not in log and "let-me-in" not in log


def test_serve_presets_from_toml(tmp_path: Path) -> None:
    with FakeOpenAIServer({"m1": step}) as upstream:
        config = tmp_path / "presets.toml"
        config.write_text(
            f'[presets.fused]\nmodels = ["openai:m1@{upstream.url}"]\nn = 3\nmethod = "fusion"\n\n'
            f'[presets.voted]\nmodels = ["openai:m1@{upstream.url}"]\nn = 3\nmethod = "vote"\ntemperature = 0.3\n'
        )
        proc, url = start("--config", str(config), env={})
        try:
            client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
            assert sorted(m.id for m in client.models.list()) == ["fused", "voted"]
            voted = client.chat.completions.create(model="voted", messages=CHAT)
            fused = client.chat.completions.create(model="fused", messages=CHAT)
        finally:
            stop(proc)
    assert voted.choices[0].message.content == "Rome."
    assert fused.choices[0].message.content == "Rome is the capital of Italy."
    assert upstream.requests[0].body["temperature"] == 0.3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[presets.a]\nmodels = ["fake:echo"]\nsamples = 3\n', "unknown setting 'samples'"),
        ('[server]\nport = 1\n[presets.a]\nmodels = ["fake:echo"]\n', "unknown key 'server'"),
        ("[presets.a\n", "not valid TOML"),
        ('[presets.a]\nn = "five"\n', "n:"),
        ("title = 'x'\n", "unknown key 'title'"),
    ],
)
def test_bad_config_errors_name_the_key_and_the_file(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_presets(config)
    assert message in str(info.value) and str(config) in str(info.value)


def test_serve_with_a_bad_config_exits_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[presets.a]\nmodels = ["fake:echo"]\nsamples = 3\n')
    proc = subprocess.run(
        [sys.executable, "-m", "fusion_of_n", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "samples" in proc.stderr and str(config) in proc.stderr


def test_serve_refuses_an_unset_api_key_variable() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fusion_of_n", "serve", "--model", "fake:echo", "--api-key-env", "SURELY_UNSET_VAR_42"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "SURELY_UNSET_VAR_42"},
    )
    assert proc.returncode != 0 and "SURELY_UNSET_VAR_42" in proc.stderr
