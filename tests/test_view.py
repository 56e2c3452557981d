"""fusion-of-n view, API level: the index, the list's filters, search, sort and paging, a record with
its attribution spans, compare, eval verdicts, damaged and Parquet inputs, and the command line."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from fusion_of_n.cli import main
from fusion_of_n.eval.accuracy import evaluate_accuracy
from fusion_of_n.eval.attribution import attribute_file
from fusion_of_n.eval.winrate import head_to_head, winrate
from fusion_of_n.records import errors_file, read_checked_records, write_parquet
from fusion_of_n.testing import FakeBackend, Reply
from fusion_of_n.types import Request
from fusion_of_n.view import RecordsFile, create_view_app, scan

TRAIN = "The train covers sixty kilometres during the first hour of its journey."
BANANAS = "Bananas are yellow and grow in bunches on tall tropical plants everywhere, 7 of them."
SLOWER = "Afterwards it slows down and covers forty kilometres in the second hour."
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes" </textarea>'
FUSED = f"{TRAIN}\n{SLOWER} So the train covers one hundred kilometres. The answer is 100."
GOOD = "GOOD"  # the fake judge prefers the answer holding it


def usage(total: int) -> dict[str, Any]:
    stage = {"calls": 1, "prompt_tokens": total // 2, "completion_tokens": total // 2, "total_tokens": total}
    return {"sampling": {**stage, "seconds": 1.0}, "total": {**stage, "seconds": 2.0}}


def candidate(index: int, text: str, *, flags: tuple[str, ...] = (), model: str = "fake:small") -> dict[str, Any]:
    return {
        "index": index,
        "model": model,
        "text": text,
        "finish_reason": "length" if "truncated" in flags else "stop",
        "completion_tokens": len(text.split()),
        "excluded": bool(flags),
        "flags": list(flags),
        "scores": {"bon": float(index)},
    }


def record(
    row_id: str,
    line: int,
    prompt: str | None,
    results: dict[str, dict[str, Any]],
    *,
    language: str | None = "en",
    candidates: list[dict[str, Any]] | None = None,
    tokens: int | None = 300,
    seconds: float | None = 2.5,
    messages: list[dict[str, str]] | None = None,
    answer: str = "100",
) -> dict[str, Any]:
    entries = {
        method: {"chosen": None, "score": None, "analysis": None, "flags": [], "by": "fake", **entry}
        for method, entry in results.items()
    }
    return {
        "id": row_id,
        "line": line,
        "prompt": prompt,
        "messages": messages,
        "language": language,
        "system": None,
        "meta": {"answer": answer},
        "candidates": candidates or [candidate(0, TRAIN), candidate(1, BANANAS), candidate(2, SLOWER)],
        "results": entries,
        "usage": usage(tokens) if tokens is not None else None,
        "seconds": seconds,
        "failures": [],
        "error": None,
    }


def records() -> list[dict[str, Any]]:
    """Four finished rows in file order 1, 2, 10, 4 (ids sort 1, 2, 4, 10)."""
    pool = [candidate(0, TRAIN), candidate(1, BANANAS), candidate(2, SLOWER), candidate(3, XSS)]
    return [
        record(
            "1",
            1,
            "How far does the train go in two hours?",
            {
                "fusion": {"text": FUSED, "analysis": "Both halves agree.", "presentation_order": [2, 0, 3, 1]},
                "bon": {"text": TRAIN + f" {GOOD}", "chosen": 0, "score": 9.0},
            },
            candidates=pool,
        ),
        record(
            "2",
            2,
            "Wie weit FÄHRT der Zug?",
            {
                "fusion": {"text": f"Der Zug fährt weit. {GOOD} The answer is 100.", "flags": ["fusor_truncated"]},
                "bon": {"text": SLOWER, "chosen": 2},
            },
            language="de",
            candidates=[candidate(0, TRAIN), candidate(1, "cut", flags=("truncated",)), candidate(2, SLOWER)],
            tokens=100,
            seconds=1.0,
        ),
        record(
            "10",
            3,
            'Then say "hi"\nplease.',
            {"bon": {"text": "hi there. The answer is 5.", "chosen": 0}},
            language="fr",
            tokens=None,
            seconds=None,
        ),
        record(
            "4",
            4,
            None,
            {"fusion": {"text": "A chat answer. The answer is 100."}, "bon": {"text": f"{GOOD} 100", "chosen": 1}},
            language=None,
            tokens=900,
            seconds=7.5,
            messages=[{"role": "user", "content": "Hello"}, {"role": "user", "content": "Compute the distance"}],
        ),
    ]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def judge() -> FakeBackend:
    """Prefers the response holding GOOD (A when both or neither do)."""

    def verdict(request: Request) -> Reply:
        text = request.last_user_text
        first, second = text.find("<<< Response A >>>"), text.find("<<< Response B >>>")
        a_good, b_good = GOOD in text[first:second], GOOD in text[second:]
        return Reply("[[B]]" if b_good and not a_good else "[[A]]" if a_good and not b_good else "[[C]]")

    return FakeBackend([verdict], name="judge")


@pytest.fixture
def data(tmp_path: Path) -> dict[str, str]:
    """A generate output with its errors file, and a winrate, accuracy and attribution result of it."""
    out = write_jsonl(tmp_path / "out.jsonl", records())
    failed = {"id": "3", "line": 5, "prompt": "?", "language": "en", "meta": {}, "error": {"stage": "sampling"}}
    failed["error"].update({"type": "RuntimeError", "message": "upstream 503"})
    write_jsonl(Path(errors_file(str(out))), [failed])
    paths = {"out": str(out)}
    results = {
        "winrate": head_to_head(str(out), "fusion,bon", judge(), resamples=50),
        "accuracy": evaluate_accuracy(read_checked_records(str(out)), "meta.answer", resamples=50),
        "attribution": attribute_file(str(out)),
    }
    for kind, result in results.items():
        paths[kind] = str(tmp_path / f"{kind}.json")
        Path(paths[kind]).write_text(json.dumps({**result, "output": str(out)}), encoding="utf-8")
    return paths


Client = TestClient[Any, Any]


@pytest.fixture
async def open_viewer() -> AsyncIterator[Callable[..., Any]]:
    clients: list[Client] = []

    async def start(paths: list[str], evals: list[str] | None = None) -> Client:
        client: Client = TestClient(TestServer(create_view_app(paths, evals or [])))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def client(data: dict[str, str], open_viewer: Callable[..., Any]) -> Client:
    client: Client = await open_viewer([data["out"]], [data["winrate"], data["accuracy"], data["attribution"]])
    return client


async def get(client: Client, url: str, status: int = 200) -> Any:
    response = await client.get(url)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def ids(client: Client, query: str = "") -> list[str]:
    found = await get(client, f"/api/records?{query}")
    return [row["id"] for row in found["rows"]]


# -- the list -------------------------------------------------------------------------------------------


async def test_files_lists_the_output_with_its_errors_file_and_the_evals(client: Client, data: dict[str, str]) -> None:
    files = await get(client, "/api/files")
    [only] = files["files"]
    assert (only["file"], only["path"], only["rows"], only["error_rows"]) == (0, data["out"], 5, 1)
    assert only["errors_path"] == data["out"] + ".errors.jsonl"
    assert [(e["kind"], e["files"], e["note"]) for e in files["evals"]] == [
        ("winrate", [0], None),
        ("accuracy", [0], None),
        ("attribution", [0], None),
    ]


async def test_list_rows_hold_the_listed_fields_in_file_order(client: Client) -> None:
    listed = await get(client, "/api/records")
    assert listed["total"] == 5 and (listed["offset"], listed["limit"]) == (0, 50)
    assert [r["id"] for r in listed["rows"]] == ["1", "2", "10", "4", "3"]
    first, second, _, chat, failed = listed["rows"]
    assert first == {
        "id": "1",
        "file": 0,
        "line": 1,
        "language": "en",
        "prompt": "How far does the train go in two hours?",
        "methods": ["fusion", "bon"],
        "flags": [],
        "error": None,
        "tokens": 300,
        "seconds": 2.5,
        "verdicts": {"fusion": "loss", "bon": "win"},  # head to head (the first --eval); accuracy below
    }
    assert second["flags"] == ["fusor_truncated", "truncated"]
    assert chat["prompt"] == "Compute the distance" and chat["language"] is None  # the last user turn
    assert failed["error"] == "sampling: RuntimeError: upstream 503" and failed["methods"] == []
    assert listed["facets"] == {
        "languages": ["de", "en", "fr"],
        "methods": ["fusion", "bon"],
        "flags": ["fusor_truncated", "truncated"],
        "verdicts": ["correct", "loss", "win", "wrong"],
    }


async def test_paging_walks_the_list_in_pages(client: Client) -> None:
    pages = [await get(client, f"/api/records?offset={offset}&limit=2") for offset in (0, 2, 4, 6)]
    assert [[r["id"] for r in p["rows"]] for p in pages] == [["1", "2"], ["10", "4"], ["3"], []]
    assert {p["total"] for p in pages} == {5}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("language=de", ["2"]),
        ("language=xx", []),
        ("method=fusion", ["1", "2", "4"]),
        ("method=bon", ["1", "2", "10", "4"]),
        ("flag=truncated", ["2"]),
        ("flag=fusor_truncated", ["2"]),
        ("error=1", ["3"]),
        ("error=0", ["1", "2", "10", "4"]),
        ("verdict=win", ["1", "2", "4"]),  # winrate, head to head: either side
        ("verdict=loss&method=fusion", ["1", "4"]),
        ("verdict=win&method=fusion", ["2"]),
        ("verdict=wrong", ["1", "2"]),  # accuracy: bon's answers without a number (row 10 has no fusion: not scored)
        ("verdict=correct&method=fusion", ["1", "2", "4"]),
        ("method=fusion&language=en", ["1"]),
    ],
)
async def test_each_filter_narrows_the_list(client: Client, query: str, expected: list[str]) -> None:
    assert await ids(client, query) == expected
    assert (await get(client, f"/api/records?{query}"))["total"] == len(expected)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=TRAIN+GO", ["1"]),  # the prompt, any case
        ("q=one+hundred+kilometres", ["1"]),  # an answer
        ("q=bananas", []),  # only in a candidate: not a prompt or an answer
        ("q=both+halves", []),  # only in the fusor's analysis
        ("q=f%C3%A4hrt", ["2"]),  # non-ASCII, in the prompt (FÄHRT) and the answer (fährt)
        ("q=say+%22hi%22%0Aplease", ["10"]),  # quotes and a line break, escaped in the file
        ("q=distance", ["4"]),  # a chat's message
        ("q=the+answer+is+100&method=bon", ["1", "2", "4"]),  # the filters are independent of the search
        ("q=the+answer+is+100", ["1", "2", "4"]),
    ],
)
async def test_search_matches_prompts_and_answers_case_insensitively(
    client: Client, query: str, expected: list[str]
) -> None:
    assert await ids(client, query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("sort=id", ["1", "2", "3", "4", "10"]),  # numeric ids in numeric order
        ("sort=id&order=desc", ["10", "4", "3", "2", "1"]),
        ("sort=tokens", ["2", "1", "4", "10", "3"]),  # rows without tokens last, in either order
        ("sort=tokens&order=desc", ["4", "1", "2", "10", "3"]),
        ("sort=seconds&order=desc", ["4", "1", "2", "10", "3"]),
        ("sort=language", ["2", "1", "3", "10", "4"]),
        ("sort=line&order=desc", ["3", "4", "10", "2", "1"]),
        ("order=desc", ["3", "4", "10", "2", "1"]),  # file order, reversed
    ],
)
async def test_sort_orders_the_list(client: Client, query: str, expected: list[str]) -> None:
    assert await ids(client, query) == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("sort=size", "sort='size'"),
        ("order=up", "order='up'"),
        ("error=yes", "error='yes'"),
        ("limit=0", "limit=0 is out of range"),
        ("offset=x", "offset='x' is not an integer"),
        ("file=3", "file=3 is out of range"),
    ],
)
async def test_bad_parameters_are_400_json(client: Client, query: str, message: str) -> None:
    found = await get(client, f"/api/records?{query}", 400)
    assert message in found["error"]


# -- one record -----------------------------------------------------------------------------------------


async def test_record_holds_the_conversation_results_candidates_usage_and_neighbours(client: Client) -> None:
    shown = await get(client, "/api/record/1")
    assert (shown["id"], shown["file"], shown["line"], shown["language"]) == ("1", 0, 1, "en")
    assert shown["messages"] == [{"role": "user", "content": "How far does the train go in two hours?"}]
    assert shown["system"] is None and shown["error"] is None and shown["methods"] == ["fusion", "bon"]
    fusion, bon = shown["results"]["fusion"], shown["results"]["bon"]
    assert (fusion["text"], fusion["chosen"], fusion["analysis"]) == (FUSED, None, "Both halves agree.")
    assert fusion["presentation_order"] == [2, 0, 3, 1]
    assert (bon["chosen"], bon["attribution"]) == (0, None)  # a selection is one candidate's copy
    assert [c["index"] for c in shown["candidates"]] == [0, 1, 2, 3]
    first = shown["candidates"][0]
    assert (first["model"], first["tokens"], first["finish_reason"]) == ("fake:small", 12, "stop")
    assert first["excluded"] is False
    assert first["scores"] == {"fusion": None, "bon": 0.0}
    assert shown["usage"]["total"]["total_tokens"] == 300
    assert (shown["prev"], shown["next"]) == (None, "2")
    assert (await get(client, "/api/record/4"))["prev"] == "10"
    assert (await get(client, "/api/record/3"))["next"] is None


async def test_fused_answer_spans_point_at_the_candidate_text_they_copy(client: Client) -> None:
    shown = await get(client, "/api/record/1")
    attribution = shown["results"]["fusion"]["attribution"]
    texts = {c["index"]: c["text"] for c in shown["candidates"]}
    spans = attribution["spans"]
    assert [s["candidate"] for s in spans] == [0, 2]
    for span in spans:
        copied = FUSED[span["start"] : span["end"]]
        source = texts[span["candidate"]][span["cstart"] : span["cend"]]
        assert copied.split() == source.split()
    assert FUSED[spans[0]["start"] : spans[0]["end"]] == TRAIN
    assert FUSED[spans[1]["start"] : spans[1]["end"]] == SLOWER
    assert set(attribution["shares"]) == {"0", "1", "2", "3"}
    assert attribution["shares"]["1"] == attribution["shares"]["3"] == 0.0
    assert 0 < attribution["novel"] < 0.5
    assert attribution["novel"] + sum(attribution["shares"].values()) == pytest.approx(1.0)


async def test_excluded_candidates_are_not_attributed_but_shown(client: Client) -> None:
    shown = await get(client, "/api/record/2")
    assert [c["excluded"] for c in shown["candidates"]] == [False, True, False]
    assert shown["candidates"][1]["flags"] == ["truncated"]
    assert set(shown["results"]["fusion"]["attribution"]["shares"]) == {"0", "2"}


async def test_neighbours_follow_the_filtered_and_sorted_list(client: Client) -> None:
    shown = await get(client, "/api/record/4?sort=id&error=0")
    assert (shown["prev"], shown["next"]) == ("2", "10")
    outside = await get(client, "/api/record/10?language=de")  # not in that list: file order
    assert (outside["prev"], outside["next"]) == ("2", "4")


async def test_an_xss_candidate_comes_back_as_the_exact_string(client: Client) -> None:
    response = await client.get("/api/record/1")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    shown = await response.json()
    assert shown["candidates"][3]["text"] == XSS


async def test_unknown_ids_are_404_json(client: Client) -> None:
    assert "'nope'" in (await get(client, "/api/record/nope", 404))["error"]
    assert "file 0" in (await get(client, "/api/record/nope?file=0", 404))["error"]
    assert (await get(client, "/api/nothing", 404))["error"]


async def test_a_file_changed_since_indexing_is_named_with_the_fix(
    tmp_path: Path, open_viewer: Callable[..., Any]
) -> None:
    path = write_jsonl(tmp_path / "out.jsonl", records())
    viewer = await open_viewer([str(path)])
    path.write_text("", encoding="utf-8")
    found = await get(viewer, "/api/record/2", 409)
    assert "changed since the viewer indexed it" in found["error"] and "restart fusion-of-n view" in found["error"]


async def test_ids_with_slashes_and_spaces_open(tmp_path: Path, open_viewer: Callable[..., Any]) -> None:
    rows = [record("a/b c", 1, "p", {"bon": {"text": "x", "chosen": 0}}), record("50%", 2, "q", {})]
    viewer = await open_viewer([str(write_jsonl(tmp_path / "odd.jsonl", rows))])
    assert (await get(viewer, "/api/record/a%2Fb%20c"))["id"] == "a/b c"
    assert (await get(viewer, "/api/record/50%25"))["next"] is None


# -- evals and compare ----------------------------------------------------------------------------------


async def test_eval_verdicts_per_row_and_method(client: Client) -> None:
    rows = {r["id"]: r["verdicts"] for r in (await get(client, "/api/records"))["rows"]}
    assert rows["2"]["fusion"] == "win" and rows["2"]["bon"] == "loss"  # head to head: the other side too
    assert rows["4"]["fusion"] == "loss" and rows["4"]["bon"] == "win"
    assert rows["10"] == {}  # no fusion result: neither judged head to head nor scored for accuracy
    assert rows["3"] == {}
    shown = await get(client, "/api/record/2")
    kinds = [e["kind"] for e in shown["verdicts"]["fusion"]["evals"]]
    assert kinds == ["winrate", "accuracy", "attribution"]
    judged = shown["verdicts"]["fusion"]["evals"][0]
    assert (judged["verdict"], judged["vs"], judged["judge"]) == ("win", "bon", "judge")
    assert shown["verdicts"]["maj@k"]["evals"][0]["baseline"] is True


async def test_compare_two_methods_of_a_row_with_the_judges_verdict(client: Client) -> None:
    found = await get(client, "/api/compare?a=0:4:fusion&b=0:4:bon")
    assert (found["a"]["text"], found["b"]["text"]) == ("A chat answer. The answer is 100.", f"{GOOD} 100")
    assert (found["a"]["method"], found["b"]["id"]) == ("fusion", "4")
    [verdict] = found["verdicts"]
    assert (verdict["a"], verdict["b"], verdict["kind"]) == ("loss", "win", "winrate")
    flipped = await get(client, "/api/compare?a=0:4:bon&b=0:4:fusion")
    assert [v["a"] for v in flipped["verdicts"]] == ["win"]


@pytest.fixture
def students(tmp_path: Path) -> tuple[str, str, str]:
    """The same row answered by two students (generate outputs) and a winrate of the first against
    the second (reference mode, the reference's fusion answers)."""
    fused = write_jsonl(tmp_path / "student-fused.jsonl", [record("7", 1, "p", {"fusion": {"text": f"{GOOD} yes"}})])
    bon = write_jsonl(tmp_path / "student-bon.jsonl", [record("7", 1, "p", {"fusion": {"text": "no"}})])
    result = winrate(str(fused), str(bon), judge(), "fusion", reference_method="fusion", resamples=50)
    evals = tmp_path / "winrate.json"
    evals.write_text(json.dumps(result), encoding="utf-8")
    return str(fused), str(bon), str(evals)


async def test_compare_the_same_row_in_two_files(
    students: tuple[str, str, str], open_viewer: Callable[..., Any]
) -> None:
    fused, bon, evals = students
    viewer = await open_viewer([fused, bon], [evals])
    found = await get(viewer, "/api/compare?a=1:7:fusion&b=0:7:fusion")
    assert (found["a"]["text"], found["b"]["text"]) == ("no", f"{GOOD} yes")
    assert [v["a"] for v in found["verdicts"]] == ["loss"]
    assert (await get(viewer, "/api/records?file=1"))["rows"][0]["verdicts"] == {"fusion": "loss"}
    assert (await get(viewer, "/api/records?file=0"))["rows"][0]["verdicts"] == {"fusion": "win"}
    assert "no record with id '8'" in (await get(viewer, "/api/compare?a=0:8:fusion&b=1:7:fusion", 404))["error"]
    assert "FILE:ID:METHOD" in (await get(viewer, "/api/compare?a=0:7&b=1:7:fusion", 400))["error"]


async def test_an_accuracy_result_names_its_rows() -> None:
    result = evaluate_accuracy(records(), "meta.answer", resamples=20)
    by_id = {row["id"]: row for row in result["records"]}
    assert set(by_id) == {"1", "2", "4"}  # row 10 has no fusion result: not scored
    assert by_id["2"]["correct"]["bon"] is False and by_id["1"]["correct"]["fusion"] is True
    assert by_id["1"]["answers"]["fusion"] == "100" and by_id["1"]["gold"] == "100"


# -- inputs ---------------------------------------------------------------------------------------------


async def test_damaged_lines_are_skipped_and_reported(tmp_path: Path, open_viewer: Callable[..., Any]) -> None:
    good = [json.dumps(r) for r in records()[:2]]
    text = "\n".join([good[0], '{"id": "broken", "candi', '{"reference": "not a record"}', good[1]]) + '\n{"id": "torn'
    path = tmp_path / "damaged.jsonl"
    path.write_text(text, encoding="utf-8")
    viewer = await open_viewer([str(path)])
    [described] = (await get(viewer, "/api/files"))["files"]
    assert described["rows"] == 2 and described["skipped"] == 3
    assert [(s["line"], s["reason"].split(" (")[0]) for s in described["skipped_lines"]] == [
        (2, "not JSON"),
        (3, "not a generate record"),
        (5, "a torn last line"),
    ]
    assert await ids(viewer) == ["1", "2"]
    assert await ids(viewer, "q=wie+weit") == ["2"]
    assert (await get(viewer, "/api/record/2"))["prev"] == "1"


def test_a_large_file_read_in_parallel_gives_the_same_index(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan.os, "cpu_count", lambda: 4)
    # idle threads left by earlier tests (e.g. asyncio's to_thread pool) would make the reader refuse to fork
    monkeypatch.setattr(scan.threading, "active_count", lambda: 1)
    rows = [json.dumps(record(str(n), n + 1, f"prompt {n}", {"bon": {"text": "x", "chosen": 0}})) for n in range(40)]
    rows[7], rows[23] = "not json", '{"reference": "x"}'
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(rows) + '\n{"id": "torn', encoding="utf-8")
    alone = RecordsFile(0, str(path), parallel_bytes=1 << 40)
    with caplog.at_level(logging.INFO, logger="fusion_of_n.view.scan"):
        parallel = RecordsFile(0, str(path), parallel_bytes=1024)
    assert "in 4 processes" in caplog.text
    for column in ("ids", "offset", "line", "prompts", "skipped", "skipped_count", "by_id"):
        assert getattr(parallel, column) == getattr(alone, column), column
    assert [s["line"] for s in parallel.skipped] == [8, 24, 41]
    assert [parallel.row(p) for p in range(len(parallel))] == [alone.row(p) for p in range(len(alone))]


async def test_a_parquet_output_lists_searches_and_opens(tmp_path: Path, open_viewer: Callable[..., Any]) -> None:
    rows = [r for r in records() if set(r["results"]) == {"fusion", "bon"}]
    journal = write_jsonl(tmp_path / "out.parquet.journal.jsonl", rows)
    target = tmp_path / "out.parquet"
    write_parquet(str(journal), str(target))
    viewer = await open_viewer([str(target)])
    assert await ids(viewer) == ["1", "2", "4"]
    assert await ids(viewer, "language=de") == ["2"]
    assert await ids(viewer, "q=distance") == ["4"]
    shown = await get(viewer, "/api/record/1")
    assert shown["results"]["fusion"]["text"] == FUSED and shown["candidates"][3]["text"] == XSS
    assert [s["candidate"] for s in shown["results"]["fusion"]["attribution"]["spans"]] == [0, 2]
    assert (await get(viewer, "/api/record/4"))["messages"][1]["content"] == "Compute the distance"


async def test_the_page_routes_serve_the_page(client: Client) -> None:
    for url in ("/", "/record/1", "/record/a%2Fb", "/compare?a=0:1:fusion&b=0:1:bon"):
        response = await client.get(url)
        assert response.status == 200 and response.content_type == "text/html", url
    assert (await client.get("/static/index.html")).status == 200


async def test_requests_naming_another_host_are_refused(client: Client) -> None:
    response = await client.get("/api/files", headers={"Host": "attacker.example:8765"})
    assert response.status == 403
    assert "attacker.example" in (await response.json())["error"]
    assert (await client.get("/api/files", headers={"Host": "localhost:8765"})).status == 200


# -- the command line -----------------------------------------------------------------------------------


def test_view_help_names_the_data_and_the_options() -> None:
    result = CliRunner().invoke(main, ["view", "--help"])
    assert result.exit_code == 0
    for text in ("DATA [MORE ...]", "--eval FILE", "--port", "8765", "--host", "127.0.0.1", "--open"):
        assert text in result.output


def bad_inputs(tmp_path: Path) -> list[tuple[list[str], str]]:
    good = write_jsonl(tmp_path / "good.jsonl", records()[:1])
    refs = write_jsonl(tmp_path / "refs.jsonl", [{"id": "1", "reference": "x"}])
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"kind": "winrate", "overall": {}}), encoding="utf-8")
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"kind": "sweep"}), encoding="utf-8")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    return [
        ([str(tmp_path / "missing.jsonl")], "no such file; pass the OUTPUT of `fusion-of-n generate`"),
        ([str(refs)], "holds no generate records"),
        ([str(result)], "is a 'winrate' eval result, not generate records; pass it with --eval"),
        ([str(empty)], "holds no records (an empty file)"),
        ([str(good), str(good)], "is given twice"),
        ([str(good), "--eval", str(tmp_path / "nope.json")], "--eval"),
        ([str(good), "--eval", str(sweep)], "a 'sweep' result; the viewer shows winrate, accuracy and attribution"),
        ([str(good), "--eval", str(good)], "JSON without a result 'kind'"),
        ([str(good), "--eval", str(empty)], "not a JSON eval result"),
    ]


def test_bad_inputs_are_one_line_naming_the_fix(tmp_path: Path) -> None:
    for args, message in bad_inputs(tmp_path):
        result = CliRunner().invoke(main, ["view", *args])
        assert result.exit_code == 1, (args, result.output)
        assert result.output.startswith("error: ") and message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_a_port_in_use_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", records()[:1])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["view", str(good), "--port", str(port)])
    assert result.exit_code == 1
    assert f"error: cannot listen on 127.0.0.1:{port}" in result.output and "pick another --port" in result.output


def test_the_command_serves_and_prints_its_url(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", records())
    command = [sys.executable, "-m", "fusion_of_n", "view", str(good), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("fusion-of-n view: http://127.0.0.1:"), line + process.stderr.read()
        assert "4 records in 1 file(s)" in line
        url = line.split()[2]
        import urllib.request

        with urllib.request.urlopen(url + "api/records?limit=1", timeout=10) as response:
            assert json.loads(response.read())["total"] == 4
    finally:
        process.terminate()
        process.wait(timeout=10)
