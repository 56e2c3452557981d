"""The Ray engine: same stages and records as the local engine, on a local 2-CPU Ray, against the fake
OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fusion_of_n import ConfigError, MissingDependency, Pipeline, PipelineSettings
from fusion_of_n.pipeline import ray as ray_engine
from fusion_of_n.pipeline.ray import RowWorker, actor_env, connect, encode_row, run_ray
from fusion_of_n.pipeline.rows import InputRow, RowError
from fusion_of_n.pipeline.runner import BatchRunner, Summary
from fusion_of_n.records import read_records
from fusion_of_n.testing import FakeBackend, FakeOpenAIServer, Reply

N = 3
METHODS = ("fusion", "first")


ISOLATED = os.environ.get("FUSION_OF_N_NETNS") == "1"


def test_ray_smoke_test_runs_in_a_private_network_namespace() -> None:
    """Ray binds the machine's own IP on Linux, not 127.0.0.1. So that nothing leaves loopback, the
    smoke test runs in a fresh network namespace whose only interface is lo (Ray then uses 127.0.0.1)."""
    pytest.importorskip("ray")
    if shutil.which("unshare") is None or shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root with unshare and ip (util-linux, iproute2) for a private network namespace")
    inner = f"{sys.executable} -m pytest -q -p no:cacheprovider {__file__} -k 'writes_the_local_engines_records'"
    proc = subprocess.run(
        ["unshare", "--net", "sh", "-c", f"ip link set lo up && exec {inner}"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "FUSION_OF_N_NETNS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 passed" in proc.stdout


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    if not ISOLATED:
        pytest.skip("runs inside test_ray_smoke_test_runs_in_a_private_network_namespace")
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        started = connect(env={})  # a local Ray on this machine's CPUs
    yield ray
    if started:
        ray.shutdown()


def candidate_step() -> Any:
    """Choice k of the n=N request for a question answers ``<question> -> candidate k``, whichever
    run or engine asks (a per-question counter, so concurrent rows cannot reorder the texts)."""
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def step(body: Any) -> Reply:
        question = body["messages"][-1]["content"]
        with lock:
            k = seen.get(question, 0)
            seen[question] = k + 1
        return Reply(f"{question} -> candidate {k % N}", prompt_tokens=9, completion_tokens=4)

    return step


def fusor_step(body: Any) -> Reply:
    tag = re.search(r"question (q\d+)", body["messages"][-1]["content"])
    assert tag is not None, "the fusor prompt must contain the question"
    return Reply(f"Comparison: all agree.\n[[fused answer for {tag.group(1)}]]", prompt_tokens=50, completion_tokens=8)


def inputs() -> list[InputRow | RowError]:
    rows: list[InputRow | RowError] = [
        InputRow(id=f"q{i}", line=i + 1, prompt=f"question q{i}: what is {i} + {i}?", language="en", meta={"k": i})
        for i in range(6)
    ]
    rows.insert(3, RowError(line=4, message="row has neither prompt nor messages"))
    rows.append(InputRow(id="q1", line=8, prompt="question q1 again, a repeated id", meta={}))
    return rows


def without_timing(record: dict[str, Any]) -> dict[str, Any]:
    record = dict(record)
    record.pop("seconds")
    record["usage"] = {stage: {k: v for k, v in u.items() if k != "seconds"} for stage, u in record["usage"].items()}
    return record


def by_id(path: str) -> dict[str, dict[str, Any]]:
    return {record["id"]: without_timing(record) for record in read_records(path)}


def counts(summary: Summary) -> tuple[int, ...]:
    return (summary.read, summary.skipped, summary.done, summary.input_errors, summary.failed, summary.tokens)


def refuse_ray(*args: Any, **kwargs: Any) -> bool:
    raise AssertionError("Ray was asked for although every row was done")


KEY = "sk-ray-engine-31337"
SHELL_ENV = {"OPENAI_API_KEY": KEY, "AWS_SECRET_ACCESS_KEY": "not-for-the-actors"}
"""The driver's environment in the smoke test: the server checks the key, so the actors must get it."""


def run_local(settings: PipelineSettings, output: str) -> Summary:
    async def go() -> Summary:
        async with Pipeline(settings, env=SHELL_ENV) as pipeline:
            return await BatchRunner(pipeline, METHODS, output, concurrency=4).run(inputs())

    return asyncio.run(go())


@pytest.mark.timeout(120)
def test_ray_engine_writes_the_local_engines_records_and_a_rerun_skips_everything(
    local_ray: Any, tmp_path: Path
) -> None:
    with FakeOpenAIServer({"gen": candidate_step(), "fusor": fusor_step}, api_key=KEY) as server:
        settings = PipelineSettings.of(
            models=(f"openai:gen@{server.url}",), fusor=f"openai:fusor@{server.url}", n=N, seed=7
        )
        local = run_local(settings, str(tmp_path / "local.jsonl"))
        before = len(server.requests)
        calls: list[tuple[int, bool]] = []
        output = str(tmp_path / "ray.jsonl")

        def on_row(tokens: int, failed: bool) -> None:
            calls.append((tokens, failed))

        first = run_ray(settings, SHELL_ENV, inputs(), output, METHODS, concurrency=4, window=4, on_row=on_row)
        ray_requests = len(server.requests) - before
        written = Path(output).read_bytes()
        with pytest.MonkeyPatch.context() as patch:  # nothing left to do: Ray is not even asked
            patch.setattr(ray_engine, "connect", refuse_ray)
            second = run_ray(settings, SHELL_ENV, inputs(), output, METHODS, concurrency=4, window=4)
        rerun_requests = len(server.requests) - before - ray_requests

    # the same summary and the same records, field for field (timings aside)
    assert counts(first) == counts(local) == (8, 1, 6, 1, 0, 6 * (9 + 3 * 4 + 50 + 8))
    records = by_id(output)
    assert records == by_id(str(tmp_path / "local.jsonl"))
    assert sorted(records) == [f"q{i}" for i in range(6)]
    for i in range(6):
        record = records[f"q{i}"]
        question = f"question q{i}: what is {i} + {i}?"
        assert [c["text"] for c in record["candidates"]] == [f"{question} -> candidate {k}" for k in range(N)]
        assert record["results"]["fusion"]["text"] == f"fused answer for q{i}"
        assert record["results"]["fusion"]["by"] == f"openai:fusor@{server.url}"
        assert record["results"]["first"]["chosen"] == 0
        assert record["meta"] == {"k": i} and record["error"] is None
    # one sampling request and one fusor request per row; the bad input row went to the errors file
    assert ray_requests == 6 * 2
    errors = list(read_records(first.errors_file))
    assert [(e["line"], e["error"]["stage"]) for e in errors] == [(4, "input")]
    assert list(read_records(local.errors_file)) == errors
    assert len(calls) == 7 and sum(t for t, _ in calls) == first.tokens and [f for _, f in calls].count(True) == 1

    # the re-run asks nothing upstream (nor Ray) and writes nothing
    assert rerun_requests == 0
    assert Path(output).read_bytes() == written
    assert (second.read, second.skipped, second.done, second.failed, second.tokens) == (8, 7, 0, 0, 0)


def test_missing_ray_names_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    settings = PipelineSettings.of(models=("fake:echo",), n=1)
    output = tmp_path / "out.jsonl"
    with pytest.raises(MissingDependency, match=re.escape("pip install 'fusion-of-n[ray]'")):
        run_ray(settings, {}, inputs(), str(output), METHODS)
    assert not output.exists()


def test_backend_objects_are_refused_before_any_work(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    settings = PipelineSettings.of(models=(FakeBackend(["hi"]),), n=1)
    output = tmp_path / "out.jsonl"
    with pytest.raises(ConfigError, match="spec strings"):
        run_ray(settings, {}, inputs(), str(output), METHODS)
    assert not output.exists() and not Path(str(output) + ".run.json").exists()


# -- what the actors receive ------------------------------------------------------------------------

DRIVER_ENV = {
    "OPENAI_API_KEY": "sk-openai",
    "TEAM_KEY": "sk-team",
    "VLLM_API_KEY": "sk-vllm",
    "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
    "FUSION_OF_N_CACHE": "/cache",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "GITHUB_TOKEN": "ghp-secret",
    "RAY_ADDRESS": "local",
    "HOME": "/root",
}


def test_actors_receive_only_the_named_key_variables_and_fusion_of_n_settings() -> None:
    settings = PipelineSettings.of(
        models=("openai:gen@http://127.0.0.1:9/v1", "openai:team@http://127.0.0.1:9/v1#key_env=TEAM_KEY"),
        fusor="openai:big",  # no URL: OPENAI_BASE_URL is read
        reward="vllm:rm@http://127.0.0.1:9",
    )
    assert actor_env(settings, DRIVER_ENV) == {
        "FUSION_OF_N_CACHE": "/cache",
        "OPENAI_API_KEY": "sk-openai",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "TEAM_KEY": "sk-team",
        "VLLM_API_KEY": "sk-vllm",
    }


def test_a_spec_with_key_env_ships_that_variable_instead_of_the_default_key() -> None:
    settings = PipelineSettings.of(models=("openai:m@http://127.0.0.1:9/v1#key_env=TEAM_KEY",))
    assert actor_env(settings, DRIVER_ENV) == {"FUSION_OF_N_CACHE": "/cache", "TEAM_KEY": "sk-team"}
    assert actor_env(PipelineSettings.of(models=("fake:echo",)), DRIVER_ENV) == {"FUSION_OF_N_CACHE": "/cache"}


def test_the_ray_actors_constructor_arguments_hold_the_needed_key_and_no_unrelated_secret() -> None:
    settings = PipelineSettings.of(models=("openai:gen@http://127.0.0.1:9/v1",), n=2)
    worker_args, actors, per_actor = ray_engine._pool_shape(None, settings, DRIVER_ENV, METHODS, 4, 2)  # type: ignore[arg-type]
    assert (actors, per_actor) == (2, 2)
    assert worker_args["env"] == {"FUSION_OF_N_CACHE": "/cache", "OPENAI_API_KEY": "sk-openai"}
    assert "AWS_SECRET_ACCESS_KEY" not in worker_args["env"] and "GITHUB_TOKEN" not in worker_args["env"]


# -- a failing row in an actor's batch ----------------------------------------------------------------


def test_an_actor_returns_a_record_for_every_row_of_a_batch_when_some_rows_raise() -> None:
    """RowWorker is what map_batches runs on each actor; it needs no Ray to be called."""

    def step(request: Any) -> Any:
        faults = {"question 1": RuntimeError("backend bug"), "question 3": KeyError("index")}
        return faults.get(request.last_user_text) or Reply(f"answer to {request.last_user_text}")

    settings = PipelineSettings.of(models=(FakeBackend([step], name="gen"),), n=2)
    batch = [InputRow(id=f"q{i}", line=i + 1, prompt=f"question {i}") for i in range(5)]
    worker = RowWorker(settings, {}, ("first",), concurrency=2)
    try:
        out = worker({"row": [encode_row(row) for row in batch]})
    finally:
        worker.close()
    records = [json.loads(text) for text in out["record"]]
    assert [r["id"] for r in records] == ["q0", "q1", "q2", "q3", "q4"]  # every row, in order
    assert [r["error"] and r["error"]["type"] for r in records] == [None, "RuntimeError", None, "KeyError", None]
    assert records[1]["error"] == {"stage": "sampling", "type": "RuntimeError", "message": "backend bug"}
    assert records[2]["results"]["first"]["text"] == "answer to question 2"
