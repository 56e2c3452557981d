"""The CLI end to end: a real subprocess against the fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

import pytest
from upstream_calls import is_fusor

from fusion_of_n.testing import FakeOpenAIServer, HTTPFault, Reply

QUESTION = "Translate into German: The weather is nice today."
SECRET = "sk-test-SECRET-4711"


def cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "fusion_of_n", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=stdin,
        timeout=120,
    )


def candidate_or_fusion(fused: Reply, candidates: list[str]):
    """A script step: the fusor prompt gets ``fused``; other requests get the candidates in turn."""
    counter = iter(range(10_000))

    def step(body: Any) -> Reply:
        if is_fusor(body):
            return fused
        return Reply(candidates[next(counter) % len(candidates)], prompt_tokens=11, completion_tokens=7)

    return step


CANDIDATES = [
    "Das Wetter ist heute schön.",
    "Heute ist das Wetter schön.",
    "Das Wetter ist gut heute.",
    "Es ist heute schönes Wetter.",
    "Das Wetter ist heute sehr schön.",
]
FUSED = Reply(
    "Comparison: 3 is less natural.\nAnswer: [[Das Wetter ist heute schön.]]", prompt_tokens=100, completion_tokens=20
)


def test_run_json_sends_one_n5_request_and_one_fusor_request_with_all_candidates() -> None:
    with FakeOpenAIServer({"m1": candidate_or_fusion(FUSED, CANDIDATES)}) as server:
        proc = cli("run", QUESTION, "--model", f"openai:m1@{server.url}", "-n", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["text"] == "Das Wetter ist heute schön."
    assert result["method"] == "fusion"
    generation = [r.body for r in server.requests if not is_fusor(r.body)]
    fusion = [r.body for r in server.requests if is_fusor(r.body)]
    assert len(generation) == 1 and generation[0]["n"] == 5
    assert len(fusion) == 1
    fusor_prompt = fusion[0]["messages"][-1]["content"]
    assert QUESTION in fusor_prompt
    assert all(text in fusor_prompt for text in CANDIDATES)
    assert len(result["candidates"]) == 5
    assert result["usage"]["total"]["prompt_tokens"] == 11 + 100  # what the server reported
    assert result["usage"]["total"]["completion_tokens"] == 5 * 7 + 20
    assert result["analysis"] == "3 is less natural."


def test_server_that_ignores_n_still_yields_five_candidates_concurrently() -> None:
    with FakeOpenAIServer({"m1": candidate_or_fusion(FUSED, CANDIDATES)}, honour_n=False, latency=0.3) as server:
        proc = cli("run", QUESTION, "--model", f"openai:m1@{server.url}", "-n", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert len(result["candidates"]) == 5
    assert sorted(c["text"] for c in result["candidates"]) == sorted(CANDIDATES)
    generation = [r for r in server.requests if not is_fusor(r.body)]
    assert len(generation) == 5
    assert server.max_in_flight >= 4  # the four missing samples were requested together


@pytest.mark.parametrize("fault", [HTTPFault(500, "warming up"), HTTPFault(429, "slow down", retry_after=0.2)])
def test_transient_upstream_failures_are_retried(fault: HTTPFault) -> None:
    steps = [fault, candidate_or_fusion(FUSED, CANDIDATES)]
    with FakeOpenAIServer({"m1": steps}) as server:
        proc = cli("run", QUESTION, "--model", f"openai:m1@{server.url}", "-n", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["text"] == "Das Wetter ist heute schön."
    assert len(server.requests) == 3  # failed try, retried generation, fusion


def test_fusor_reply_without_brackets_still_answers_flagged() -> None:
    unbracketed = Reply("Comparison: all fine.\n\nFinal answer: Das Wetter ist heute schön.")
    with FakeOpenAIServer({"m1": candidate_or_fusion(unbracketed, CANDIDATES)}) as server:
        proc = cli("run", QUESTION, "--model", f"openai:m1@{server.url}", "-n", "2", "--json")
    result = json.loads(proc.stdout)
    assert result["text"] == "Das Wetter ist heute schön."
    assert "missing_brackets" in result["flags"]


def test_three_models_get_one_request_each_and_candidates_name_them() -> None:
    scripts = {name: candidate_or_fusion(FUSED, CANDIDATES) for name in ("a", "b", "c")}
    with FakeOpenAIServer(scripts) as server:
        specs = [arg for name in "abc" for arg in ("--model", f"openai:{name}@{server.url}")]
        proc = cli("run", QUESTION, *specs, "-n", "2", "--method", "first", "--json")
    assert proc.returncode == 0, proc.stderr
    assert sorted(r.body["model"] for r in server.requests) == ["a", "b", "c"]
    assert [c["model"].split("@")[0] for c in json.loads(proc.stdout)["candidates"]] == [
        "openai:a",
        "openai:a",
        "openai:b",
        "openai:b",
        "openai:c",
        "openai:c",
    ]


def test_upstream_error_never_becomes_the_answer_and_the_key_never_shows() -> None:
    with FakeOpenAIServer({"m1": ["x"]}, api_key="the-right-key") as server:
        proc = cli(
            "run", QUESTION, "--model", f"openai:m1@{server.url}", "-n", "2", "-vv", env={"OPENAI_API_KEY": SECRET}
        )
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "401" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert server.requests[0].headers["Authorization"] == f"Bearer {SECRET}"


def test_unreachable_server_is_one_line_naming_the_url_without_traceback() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens there
    url = f"http://127.0.0.1:{port}/v1"
    proc = cli("run", "hi", "--model", f"openai:m1@{url}#retries=0", "-n", "1", env={"OPENAI_API_KEY": SECRET})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert f"127.0.0.1:{port}" in lines[0]
    assert "Traceback" not in proc.stderr and SECRET not in proc.stderr


def test_prompt_from_stdin_and_plain_output() -> None:
    with FakeOpenAIServer({"m1": ["same", "same", "other"]}) as server:
        proc = cli("run", "-", "--model", f"openai:m1@{server.url}", "-n", "3", "--method", "vote", stdin="Pick one")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "same"
    assert "[vote] 3/3 candidates" in proc.stderr
    assert server.requests[0].body["messages"] == [{"role": "user", "content": "Pick one"}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "hi", "--model", "nonsense"], "PROVIDER:MODEL"),
        (["run", "hi", "--model", "ftp:x"], "unknown provider 'ftp'"),
        (["run", "hi", "--model", "fake:echo", "-n", "0"], "n:"),
        (["run", "", "--model", "fake:echo"], "prompt is empty"),
        (["run", "hi", "--model", "local:/nowhere/model.gguf"], "/nowhere/model.gguf"),
    ],
)
def test_bad_input_gets_one_clear_line(args: list[str], message: str) -> None:
    proc = cli(*args)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_options_reach_the_server() -> None:
    with FakeOpenAIServer({"m1": ["a"]}) as server:
        proc = cli(
            "run",
            "hi",
            "--model",
            f"openai:m1@{server.url}",
            "-n",
            "2",
            "--method",
            "first",
            "--temperature",
            "0.3",
            "--top-p",
            "0.9",
            "--max-tokens",
            "33",
            "--seed",
            "5",
            "--system",
            "Be brief.",
        )
    assert proc.returncode == 0, proc.stderr
    body = server.requests[0].body
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"], body["n"]) == (0.3, 0.9, 33, 5, 2)
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
