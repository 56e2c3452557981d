"""`fusion-of-n generate` end to end: a real subprocess, SIGKILLed mid-run and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fusion_of_n.records import read_records
from fusion_of_n.testing import FakeOpenAIServer, HTTPFault, Reply

KEY = "sk-generate-SECRET-31337"
LANGS = {
    "en": "What is {a} plus {b}? Answer briefly.",
    "de": "Was ist {a} plus {b}? Antworte kurz.",
    "fr": "Combien font {a} plus {b} ? Réponds brièvement.",
    "ar": "كم يساوي {a} زائد {b}؟ أجب باختصار.",
    "ja": "{a}足す{b}はいくつですか？簡潔に答えてください。",
}
BAD = [
    '{"id": "bad-json", "prompt": ',
    json.dumps({"id": "no-prompt", "text": "x"}),
    json.dumps({"id": "num-prompt", "prompt": 5}),
    json.dumps({"id": "empty", "prompt": "   "}),
    json.dumps({"id": "de-3", "prompt": "a duplicate id"}),
]


def write_input(path: Path) -> set[str]:
    rows = [
        {"id": f"{lang}-{k}", "prompt": template.format(a=k, b=k + 1), "topic": "math", "difficulty": k % 3}
        for lang, template in LANGS.items()
        for k in range(22)
    ]
    rows += [
        {
            "id": f"chat-{k}",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"Say hello number {k}."},
            ],
            "source": "chat",
        }
        for k in range(10)
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    for j, bad in enumerate(BAD):
        lines.insert(10 + 20 * j, bad)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {r["id"] for r in rows}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fusion_of_n", *args], capture_output=True, text=True, timeout=120)


def teacher_step(name: str):
    def step(body: Any) -> Reply:
        return Reply(f"{name}: the answer is {len(str(body['messages'][-1]['content'])) % 17}.")

    return step


def big_step(body: Any) -> Reply:
    text = str(body["messages"][-1]["content"])
    if "candidate responses" in text:
        return Reply("Comparison: both fine.\n[[The fused answer.]]")
    return Reply("Rating: 6")


def generate(inp: Path, out: Path, url: str) -> subprocess.Popen[str]:
    args = [
        sys.executable,
        "-m",
        "fusion_of_n",
        "generate",
        str(inp),
        "-o",
        str(out),
        "--model",
        f"openai:t1@{url}",
        "--model",
        f"openai:t2@{url}",
        "--fusor",
        f"openai:big@{url}",
        "-n",
        "1",
        "--method",
        "fusion",
        "--method",
        "bon",
        "--concurrency",
        "4",
        "--fail-on-error",
        "0.5",
    ]
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_run_then_resume_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    valid = write_input(inp)
    scripts = {
        "t1": [HTTPFault(500, "warming up"), HTTPFault(503, "still warming"), teacher_step("t1")],
        "t2": [HTTPFault(429, "slow down", retry_after=0.1), teacher_step("t2")],
        "big": big_step,
    }
    with FakeOpenAIServer(scripts, latency=0.05) as upstream:
        first = generate(inp, out, upstream.url)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 15):
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        killed_at = len(list(read_records(str(out))))
        assert 15 <= killed_at < len(valid)  # killed mid-run
        second = generate(inp, out, upstream.url)
        stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr
    records = list(read_records(str(out)))
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids))  # nothing twice
    assert set(ids) == valid  # nothing lost
    for record in records:
        assert set(record["results"]) == {"fusion", "bon"}
        assert record["results"]["fusion"]["text"] == "The fused answer."
        assert [c["model"].split("@")[0] for c in record["candidates"]] == ["openai:t1", "openai:t2"]
        if record["id"].startswith("chat-"):
            assert record["messages"][0] == {"role": "system", "content": "Be brief."}
            assert record["meta"] == {"source": "chat"}
        else:
            assert record["meta"]["topic"] == "math" and "difficulty" in record["meta"]
            assert record["language"] == record["id"].split("-")[0]
    errors = [json.loads(line) for line in Path(str(out) + ".errors.jsonl").read_text().splitlines()]
    reported = {(e.get("id"), e["line"]) for e in errors}
    assert len(errors) == len(BAD)
    assert {"no-prompt", "num-prompt", "empty", "de-3"} <= {i for i, _ in reported}
    assert (None, 11) in reported  # the malformed JSON line (inserted at index 10) is reported by its line
    everything = out.read_text() + stdout + stderr + Path(str(out) + ".errors.jsonl").read_text()
    assert KEY not in everything
    assert "rows written" in stderr


def test_error_fraction_above_threshold_exits_non_zero(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text('{"prompt": "fine"}\n{"prompt": ""}\n{"nope": 1}\n', encoding="utf-8")
    proc = run_cli("generate", str(inp), "-o", str(out), "--model", "fake:echo", "-n", "1", "--method", "first")
    assert proc.returncode == 1
    assert "--fail-on-error" in proc.stderr
    assert [r["prompt"] for r in read_records(str(out))] == ["fine"]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_generate_then_export_sft(tmp_path: Path, fmt: str) -> None:
    inp, out, sft = tmp_path / "in.jsonl", tmp_path / f"out.{fmt}", tmp_path / "sft.jsonl"
    inp.write_text('{"id": "a", "prompt": "Hello there"}\n{"id": "b", "prompt": "General Kenobi"}\n')
    run = run_cli(
        "generate", str(inp), "-o", str(out), "--model", "fake:echo", "-n", "2", "--method", "vote", "--format", fmt
    )
    assert run.returncode == 0, run.stderr
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        assert sorted(table.column("id").to_pylist()) == ["a", "b"]
        return
    exp = run_cli("export", str(out), "--method", "vote", "--to", str(sft))
    assert exp.returncode == 0, exp.stderr
    rows = [json.loads(line) for line in sft.read_text().splitlines()]
    assert {r["id"]: r["messages"] for r in rows} == {
        "a": [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hello there"}],
        "b": [{"role": "user", "content": "General Kenobi"}, {"role": "assistant", "content": "General Kenobi"}],
    }


def test_upstream_timeouts_and_errors_are_retried_within_a_run(tmp_path: Path) -> None:
    from fusion_of_n.config import PipelineSettings
    from fusion_of_n.pipeline.generate import run_generate

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"question {i}"}) + "\n" for i in range(6)))
    steps = [Reply("too slow", delay=5), HTTPFault(502, "bad gateway"), Reply("fine")]
    with FakeOpenAIServer({"m": steps}) as upstream:
        settings = PipelineSettings.of(models=[f"openai:m@{upstream.url}#timeout=0.5"], n=1, method="first")
        summary = run_generate(
            settings, {}, input_path=str(inp), dataset=None, output=str(out), methods=["first"], concurrency=1
        )
    assert (summary.done, summary.failed) == (6, 0)
    assert all(r["results"]["first"]["text"] == "fine" for r in read_records(str(out)))
    assert len(upstream.requests) == 6 + 2  # the timed-out and the 502 attempts were retried


def test_a_row_that_raises_an_unexpected_error_is_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    from fusion_of_n.config import PipelineSettings
    from fusion_of_n.pipeline.generate import run_generate
    from fusion_of_n.testing import FakeBackend

    def step(request: Any) -> Any:
        return RuntimeError("a bug in a backend") if request.last_user_text == "question 2" else Reply("fine")

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"question {i}"}) + "\n" for i in range(5)))
    settings = PipelineSettings.of(models=[FakeBackend([step])], n=1, method="first")
    summary = run_generate(
        settings, {}, input_path=str(inp), dataset=None, output=str(out), methods=["first"], concurrency=2
    )
    assert (summary.done, summary.failed) == (4, 1)
    assert sorted(r["id"] for r in read_records(str(out))) == ["q0", "q1", "q3", "q4"]
    [error] = read_records(summary.errors_file)
    assert error["id"] == "q2" and error["error"]["type"] == "RuntimeError"
    assert error["error"]["message"] == "a bug in a backend"
