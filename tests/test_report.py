"""fusion-of-n report: HTML + Markdown + PNGs from generate outputs, every eval result kind and train
manifests."""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fusion_of_n import ConfigError, Pipeline
from fusion_of_n.cli.eval import report_command as command
from fusion_of_n.errors import MissingDependency
from fusion_of_n.eval import plots
from fusion_of_n.eval.accuracy import evaluate_accuracy
from fusion_of_n.eval.attribution import attribution_report
from fusion_of_n.eval.pairwise import OrderVerdict, PairJudgement
from fusion_of_n.eval.report import MANIFEST, build_report, load_input
from fusion_of_n.eval.report_pools import cost_table, sweep_curves
from fusion_of_n.eval.report_train import student_names
from fusion_of_n.eval.sweep import accuracy_metric, run_sweep, sweep_settings
from fusion_of_n.eval.translation import Reference, evaluate_translation
from fusion_of_n.eval.winrate import summarize

LANGUAGES = ("de", "fr", "ja", "sw", "en")
STAGES = ("sampling", "fusion", "bon", "vote")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OPENINGS = [
    "First we count the baskets on the kitchen table.",
    "Let us look at how many baskets there are in total.",
    "The problem gives us several baskets full of apples.",
    "We begin by writing down the number of baskets.",
    "Each basket holds the same number of red apples.",
]
STEPS = [
    "Multiplying the baskets by the apples per basket gives the total.",
    "Then we add the apples from every basket together one by one.",
    "So the total is baskets times apples in each basket.",
    "Adding up the counts of all baskets gives the full amount.",
    "Counting every apple in every basket, we reach the sum.",
]


def usage(rng: random.Random, calls: int) -> dict[str, Any]:
    prompt, completion = rng.randint(50, 400) * calls, rng.randint(20, 300) * calls
    return {
        "calls": calls,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "seconds": round(rng.uniform(0.1, 3.0), 3),
    }


def generate_records(per_language: int = 4, seed: int = 1) -> list[dict[str, Any]]:
    """A generate output: pools of 5 with mostly-right answers, fusion copying from them, one error row."""
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    for lang in LANGUAGES:
        for n in range(per_language):
            gold = rng.randint(2, 90)
            answers = [gold if rng.random() < 0.6 else gold + 1 for _ in range(5)]
            texts = [f"{OPENINGS[i]} {STEPS[(i + n) % 5]} The answer is {answer}." for i, answer in enumerate(answers)]
            fused = f"{OPENINGS[n % 5]} {STEPS[(2 + n) % 5]} Checking all five solutions, the answer is {gold}."
            candidates = [
                {
                    "index": i,
                    "model": "small" if i < 3 else "tiny",
                    "text": t,
                    "finish_reason": "stop",
                    "completion_tokens": rng.randint(20, 60),
                    "excluded": False,
                    "flags": [],
                    "scores": {},
                }
                for i, t in enumerate(texts)
            ]
            usages = {
                stage: usage(rng, 1 if stage == "sampling" else 2 if stage == "fusion" else 5) for stage in STAGES
            }
            usages["vote"] = dict.fromkeys(usages["sampling"], 0)  # selection: no model call
            usages["total"] = {k: sum(u[k] for u in usages.values()) for k in usages["sampling"]}
            records.append(
                {
                    "id": f"{lang}-{n}",
                    "prompt": f"How many apples? ({lang})",
                    "messages": None,
                    "language": lang,
                    "meta": {"answer": str(gold)},
                    "candidates": candidates,
                    "results": {
                        "fusion": {"text": fused, "chosen": None},
                        "bon": {"text": texts[1], "chosen": 1},
                        "vote": {"text": texts[2], "chosen": 2},
                    },
                    "usage": usages,
                    "seconds": 1.5,
                    "failures": [],
                    "error": None,
                }
            )
    records.append({"id": "broken", "line": 99, "prompt": "?", "error": {"stage": "sampling", "message": "503"}})
    return records


def winrate_result(method: str, win_share: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    judgements = []
    for lang in LANGUAGES:
        for n in range(12):
            roll = rng.random()
            forward = "A" if roll < win_share else "tie" if roll < win_share + 0.15 else "B"
            backward = {"A": "B", "B": "A", "tie": "tie"}[forward]
            missing = n == 11 and lang == "sw"
            judgements.append(
                PairJudgement(f"{lang}-{n}", lang, OrderVerdict(None if missing else forward), OrderVerdict(backward))
            )
    return {
        "kind": "winrate",
        "judge": "fake:judge",
        "mode": "reference",
        "methods": [method],
        "system": {"path": "out.jsonl", "method": method},
        "reference": {"path": "refs.jsonl", "method": None},
        "counts": {"pairs": len(judgements)},
        **summarize(judgements, resamples=200),
    }


def translation_result(records: list[dict[str, Any]]) -> dict[str, Any]:
    references = {
        str(r["id"]): Reference(f"We count the baskets and the apples. The answer is {r['meta']['answer']}.")
        for r in records
        if not r.get("error")
    }
    return evaluate_translation(records, references, resamples=100)


async def sweep_result(records: list[dict[str, Any]]) -> dict[str, Any]:
    methods = ("vote", "first", "random")
    async with Pipeline(sweep_settings(methods), env={}) as pipeline:
        result = await run_sweep(records, pipeline, accuracy_metric(), ks=(1, 2, 3, 5), seeds=3, methods=methods)
    return {**result, "metric": "accuracy"}


def write_json(path: Path, data: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return str(path)


def train_manifest(method: str, start: float, steps: int = 12, eval_every: int | None = 4) -> dict[str, Any]:
    """A finished `fusion-of-n train` manifest (schema version 1) whose train loss falls from ``start``."""
    train = [[step, round(start * 0.93**step, 4)] for step in range(1, steps + 1)]
    every = range(eval_every, steps + 1, eval_every) if eval_every else range(0)
    evals = [[step, round(start * 0.9**step + 0.1, 4)] for step in every]
    return {
        "kind": "fusion-of-n train",
        "version": 1,
        "status": "complete",
        "base": "local:qwen2.5-coder-0.5b",
        "method": method,
        "data": [{"path": "out.jsonl", "sha256": "0" * 64, "format": "generate"}],
        "examples": {"train": 27, "eval": 3, "excluded": 4},
        "exclusions": {"error": 1, "flagged:fusor_truncated": 3},
        "hyperparameters": {
            **{"lora": True, "lora_r": 16, "lora_alpha": 32, "epochs": 2, "max_steps": None, "lr": 0.0002},
            **{"batch_size": 4, "grad_accum": 1, "max_length": 768, "seed": 1, "eval_fraction": 0.1, "threads": 1},
        },
        "versions": {"torch": "2.13.0", "transformers": "5.25.0", "trl": "1.16.0", "peft": "0.21.2"},
        "device": "cpu",
        "seconds": 812.4,
        "tokens": 21034,
        "loss": {"train": train, "eval": evals},
        "outputs": {"hf": "hf", "gguf": "model.gguf", "plot": "loss.png"},
    }


@pytest.fixture
async def inputs(tmp_path: Path) -> dict[str, str]:
    """One file of every kind the report reads, written from the real evaluation code."""
    records = generate_records()
    output = tmp_path / "out.jsonl"
    output.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return {
        "generate": str(output),
        "winrate": write_json(tmp_path / "winrate-fusion.json", winrate_result("fusion", 0.6, 1)),
        "winrate2": write_json(tmp_path / "winrate-bon.json", winrate_result("bon", 0.4, 2)),
        "accuracy": write_json(tmp_path / "accuracy.json", evaluate_accuracy(records, "meta.answer", resamples=200)),
        "translation": write_json(tmp_path / "translation.json", translation_result(records)),
        "attribution": write_json(tmp_path / "attribution.json", attribution_report(records, "fusion")),
        "sweep": write_json(tmp_path / "sweep.json", await sweep_result(records)),
        "train": write_json(tmp_path / "student-fusion" / "train.json", train_manifest("fusion", 2.0)),
    }


def images(page: str, pattern: str) -> list[str]:
    return re.findall(pattern, page)


def test_report_from_every_kind_links_only_valid_pngs(inputs: dict[str, str], tmp_path: Path) -> None:
    from matplotlib.image import imread

    out = tmp_path / "report"
    written = build_report(list(inputs.values()), out)
    page = (out / "index.html").read_text(encoding="utf-8")
    markdown = (out / "report.md").read_text(encoding="utf-8")
    linked = images(page, r'<img src="([^"]+)"')
    assert linked == images(markdown, r"!\[[^\]]*\]\(([^)]+)\)")
    assert set(linked) == {p.name for p in written if p.suffix == ".png"}
    expected = {
        "train-loss.png",
        "winrate.png",
        "accuracy1-accuracy.png",
        "accuracy1-language.png",
        "translation1-chrf.png",
        "translation1-chrfpp.png",
        "translation1-bleu.png",
        "sweep1-k.png",
        "sweep1-tokens.png",
        "attribution1.png",
    }
    assert set(linked) == expected
    for name in linked:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC)
        pixels = imread(out / name)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 600  # readable size at 110 dpi
    for path in inputs.values():
        assert path in page and path in markdown  # the inputs it was built from are listed
    assert 'class="note"' not in page  # nothing left out
    titles = re.findall(r"<h2>([^<]*)</h2>", page)
    assert titles[1:3] == ["Students (fine-tuning)", "Win rates (pairwise LLM judge, both orders)"]
    assert "<style>" in page and "<script" not in page  # self-contained, inline CSS
    assert json.loads((out / MANIFEST).read_text())["files"] == ["index.html", "report.md", *linked]


def test_sections_without_an_input_are_left_out_with_one_line_each(inputs: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "only-winrate"
    build_report([inputs["winrate"]], out)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "Win rates" in page
    for title in ("Students", "Accuracy:", "Translation:", "Quality against", "Attribution:", "Cost per stage"):
        assert title not in page
    notes = re.findall(r'<p class="note">([^<]*)</p>', page)
    assert len(notes) == 6 and all("left out" in n for n in notes)
    assert "No train manifest given: the students&#x27; training left out." in notes
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, "index.html", "report.md", "winrate.png"])


def test_cost_table_sums_the_records_usage(inputs: dict[str, str], tmp_path: Path) -> None:
    records = [json.loads(line) for line in Path(inputs["generate"]).read_text().splitlines()]
    used = [r for r in records if r.get("usage")]
    cost = cost_table(records)
    assert (cost.records, cost.with_usage, cost.errors) == (len(records), len(used), 1)
    assert list(cost.stages) == ["sampling", "fusion", "bon", "vote", "total"]
    for stage in cost.stages:
        for key in ("calls", "prompt_tokens", "completion_tokens", "seconds"):
            assert cost.stages[stage][key] == pytest.approx(sum(r["usage"][stage][key] for r in used))
    build_report([inputs["generate"]], tmp_path / "cost")
    markdown = (tmp_path / "cost" / "report.md").read_text(encoding="utf-8")
    fusion = cost.stages["fusion"]
    row = (
        f"| fusion | {fusion['calls']:,.0f} | {fusion['prompt_tokens']:,.0f} | {fusion['completion_tokens']:,.0f} | "
        f"{fusion['seconds']:.2f} | {fusion['calls'] / len(used):.1f} | {fusion['prompt_tokens'] / len(used):,.1f}"
    )
    assert row in markdown


def test_winrate_table_shows_counts_and_the_percent_ci_of_each_language(inputs: dict[str, str], tmp_path: Path) -> None:
    result = json.loads(Path(inputs["winrate"]).read_text())
    build_report([inputs["winrate"], inputs["winrate2"]], tmp_path / "w")
    markdown = (tmp_path / "w" / "report.md").read_text(encoding="utf-8")
    assert "fusion vs refs.jsonl" in markdown and "bon vs refs.jsonl" in markdown
    sw = result["by_language"]["sw"]
    low, high = sw["ci"]
    row = (
        f"| sw | {sw['pairs']} | {sw['wins']} | {sw['ties']} | {sw['losses']} | {sw['missing']} | "
        f"{100 * sw['win_rate']:.1f} [{100 * low:.1f}, {100 * high:.1f}] |"
    )
    assert sw["missing"] == 1 and row in markdown


def test_metric_tables_show_each_score_with_its_ci_in_display_units(inputs: dict[str, str], tmp_path: Path) -> None:
    accuracy = json.loads(Path(inputs["accuracy"]).read_text())
    translation = json.loads(Path(inputs["translation"]).read_text())
    build_report([inputs["accuracy"], inputs["translation"]], tmp_path / "m")
    lines = (tmp_path / "m" / "report.md").read_text(encoding="utf-8").splitlines()

    def row(header: str, language: str) -> dict[str, str]:
        start = lines.index(header) + 2  # the table follows its caption line and a blank line
        names = [c.strip() for c in lines[start].strip("|").split("|")]
        found = next(line for line in lines[start:] if line.startswith(f"| {language} |"))
        return dict(zip(names, (c.strip() for c in found.strip("|").split("|")), strict=True))

    def shown(cell: dict[str, Any], scale: float) -> str:
        low, high = cell["ci"]
        return f"{scale * cell['score']:.1f} [{scale * low:.1f}, {scale * high:.1f}]"

    bon = accuracy["languages"]["fr"]["bon"]["accuracy"]
    assert row("Accuracy (%) [95% CI]:", "fr")["bon"] == shown(bon, 100.0)
    assert row("Accuracy (%) [95% CI]:", "fr")["n"] == str(bon["n"])
    oracle = translation["overall"]["oracle"]["chrf"]
    assert row("chrF (0-100) [95% CI]:", "overall")["oracle (baseline)"] == shown(oracle, 1.0)


def test_attribution_rows_split_each_answer_into_top_other_and_novel(inputs: dict[str, str], tmp_path: Path) -> None:
    result = json.loads(Path(inputs["attribution"]).read_text())
    build_report([inputs["attribution"]], tmp_path / "a")
    markdown = (tmp_path / "a" / "report.md").read_text(encoding="utf-8")
    overall = result["overall"]
    top, copied = 100 * overall["top_share"]["mean"], 100 * overall["copied"]["mean"]
    row = next(line for line in markdown.splitlines() if line.startswith("| overall |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2].startswith(f"{top:.1f} [") and cells[3] == f"{copied - top:.1f}"
    assert cells[4].startswith(f"{100 * overall['novel']['mean']:.1f} [")


def test_sweep_points_without_a_summary_are_averaged_over_seeds() -> None:
    points = [
        {"method": "vote", "k": k, "seed": s, "quality": q, "tokens": t, "n_records": 4}
        for k, s, q, t in [(1, 0, 0.5, 100), (1, 1, 0.7, 120), (3, 0, 0.9, 300), (3, 1, None, None)]
    ]
    curves = sweep_curves({"kind": "sweep", "points": points})
    assert [(p.k, p.quality, p.tokens, p.n_records) for p in curves["vote"]] == [
        (1, pytest.approx(0.6), 110, 4),
        (3, 0.9, 300, 4),
    ]
    assert curves["vote"][0].ci is not None and curves["vote"][1].ci is None  # one seed: no interval


def test_rerun_replaces_its_own_files_and_removes_stale_plots(inputs: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    build_report([inputs["winrate"], inputs["attribution"]], out)
    assert (out / "attribution1.png").exists()
    build_report([inputs["winrate"]], out)
    assert not (out / "attribution1.png").exists()  # ours and no longer linked: removed
    assert (out / "notes.txt").read_text() == "mine" and (out / "winrate.png").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".report-")]  # the scratch folder is gone


def test_a_file_the_report_did_not_write_is_never_overwritten(inputs: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("somebody's page")
    with pytest.raises(ConfigError, match=r"index\.html is there and was not written by a report"):
        build_report([inputs["winrate"]], out)
    assert (out / "index.html").read_text() == "somebody's page"
    assert sorted(p.name for p in out.iterdir()) == ["index.html"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file; pass a generate output"),
        ("\n", "the file is empty; pass a generate output"),
        ("id,text\n1,hello\n", "not JSON; pass a generate output"),
        ('{"kind": "bleurt", "overall": {}}', "unknown result kind 'bleurt'; the report reads generate outputs"),
        ('{"models": ["a"], "n": 5}', 'JSON, but neither an eval result \\(no "kind"\\) nor generate records; pass'),
        ('{"kind": "winrate", "overall": {}}', "a winrate result without 'by_language'; write it again"),
        ('{"kind": ["winrate"]}', "unknown result kind \\['winrate'\\]; the report reads generate outputs, train"),
        (
            '{"kind": "fusion-of-n train", "method": "fusion", "base": "local:x", "loss": [[1, 2.0]]}',
            "a train manifest without 'loss'; pass the train.json that `fusion-of-n train ... -o DIR` writes",
        ),
    ],
)
def test_bad_inputs_name_the_file_and_the_fix(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "input.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: {message}"):
        load_input(str(path))


def test_command_writes_the_report_and_a_bad_input_is_one_error_line(inputs: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "cli"
    done = CliRunner().invoke(command, [inputs["generate"], inputs["sweep"], "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert (out / "index.html").exists() and (out / "sweep1-tokens.png").exists()
    missing = str(tmp_path / "nope.json")
    failed = CliRunner().invoke(command, [inputs["sweep"], missing, "-o", str(tmp_path / "cli2")])
    assert failed.exit_code == 1
    assert failed.output.strip().splitlines() == [
        f"error: {missing}: no such file; pass a generate output (JSONL), a result written by "
        "`fusion-of-n eval ... -o FILE` or `fusion-of-n sweep -o FILE`, or the train.json of a `fusion-of-n train` run"
    ]
    assert not (tmp_path / "cli2").exists()  # nothing is written before every input is read


def test_viewer_url_adds_example_rows_linked_to_their_viewer_pages(inputs: dict[str, str], tmp_path: Path) -> None:
    chosen = [inputs[k] for k in ("generate", "accuracy", "attribution", "winrate")]
    build_report(chosen, tmp_path / "plain")
    assert "<a href" not in (tmp_path / "plain" / "index.html").read_text(encoding="utf-8")  # no URL, no links
    out = tmp_path / "linked"
    done = CliRunner().invoke(command, [*chosen, "-o", str(out), "--viewer-url", "http://127.0.0.1:8765/"])
    assert done.exit_code == 0, done.output
    page = (out / "index.html").read_text(encoding="utf-8")
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "<h2>Examples (open in the viewer)</h2>" in page
    links = re.findall(r'<a href="([^"]+)">([^<]*)</a>', page)
    assert links and all(href == f"http://127.0.0.1:8765/record/{text}" for href, text in links)
    assert links[0] == ("http://127.0.0.1:8765/record/broken", "broken")  # the failed row comes first
    assert "| [broken](<http://127.0.0.1:8765/record/broken>) | – | failed: sampling: 503 |" in markdown
    assert {"accuracy.json (accuracy)", "attribution.json (attribution)"} <= set(re.findall(r"<p>([^<]*):</p>", page))
    assert "winrate-fusion.json" not in page.split("Examples (open in the viewer)")[1]  # no per-row pairs in it
    bad = CliRunner().invoke(command, [inputs["generate"], "-o", str(tmp_path / "x"), "--viewer-url", "localhost"])
    assert bad.exit_code == 1 and "give the viewer's http:// URL" in bad.output


def test_builtin_methods_keep_their_colour_and_others_get_distinct_spares() -> None:
    colours = plots.method_colours(["mine", "fusion", "theirs", "mine", "vote"])
    assert colours["fusion"] == plots.KNOWN_COLOURS["fusion"] and colours["vote"] == plots.KNOWN_COLOURS["vote"]
    assert colours["mine"] != colours["theirs"]
    assert plots.method_colours(["theirs", "mine"])["theirs"] == colours["mine"]  # order of appearance decides


def test_missing_matplotlib_names_the_extra_and_leaves_no_folder_behind(
    inputs: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingDependency, match=r"pip install 'fusion-of-n\[eval\]'"):
        build_report([inputs["winrate"]], tmp_path / "new")
    assert not (tmp_path / "new").exists()
    build_report([inputs["generate"]], tmp_path / "cost-only")  # a cost table draws nothing: no matplotlib needed
    assert (tmp_path / "cost-only" / "index.html").exists()


def md_row(markdown: str, first: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {first} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_students_section_has_a_row_per_manifest_and_one_loss_plot_in_both_pages(tmp_path: Path) -> None:
    from matplotlib.image import imread

    fusion = write_json(tmp_path / "student-fusion" / "train.json", train_manifest("fusion", 2.0))
    bon_manifest = train_manifest("bon", 2.5, steps=10, eval_every=5)
    bon = write_json(tmp_path / "student-bon" / "train.json", bon_manifest)
    out = tmp_path / "students"
    written = build_report([fusion, bon], out)
    page = (out / "index.html").read_text(encoding="utf-8")
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert [p.name for p in written if p.suffix == ".png"] == ["train-loss.png"]
    assert '<img src="train-loss.png"' in page and "](train-loss.png)" in markdown
    assert (out / "train-loss.png").read_bytes().startswith(PNG_MAGIC)
    assert imread(out / "train-loss.png").shape[1] > 600
    for student in ("student-fusion", "student-bon"):
        assert f"<td>{student}</td>" in page and f"| {student} |" in markdown
    assert "<h2>Students (fine-tuning)</h2>" in page and "## Students (fine-tuning)" in markdown
    final, last_eval = bon_manifest["loss"]["train"][-1][1], bon_manifest["loss"]["eval"][-1][1]
    assert md_row(markdown, "student-bon") == [
        *("student-bon", "bon", "local:qwen2.5-coder-0.5b", "27", "3", "4", "2 / 10"),
        *(f"{final:.3f}", f"{last_eval:.3f}", "812"),
    ]
    assert f"| {fusion} | train manifest: fusion student of local:qwen2.5-coder-0.5b, 27 train and 3 eval" in markdown


def test_a_train_manifest_without_loss_is_refused_in_one_line_naming_the_file(tmp_path: Path) -> None:
    manifest = train_manifest("fusion", 2.0)
    del manifest["loss"]
    path = write_json(tmp_path / "student" / "train.json", manifest)
    failed = CliRunner().invoke(command, [path, "-o", str(tmp_path / "r")])
    assert failed.exit_code == 1
    assert failed.output.strip().splitlines() == [
        f"error: {path}: a train manifest without 'loss'; "
        "pass the train.json that `fusion-of-n train ... -o DIR` writes into DIR"
    ]
    assert not (tmp_path / "r").exists()


def test_a_student_without_eval_loss_is_still_plotted(tmp_path: Path) -> None:
    manifest = train_manifest("fusion", 2.0, eval_every=None)
    assert manifest["loss"]["eval"] == []
    out = tmp_path / "no-eval"
    build_report([write_json(tmp_path / "no-eval-student" / "train.json", manifest)], out)
    assert (out / "train-loss.png").read_bytes().startswith(PNG_MAGIC)
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "![train and eval loss of each student against steps](train-loss.png)" in markdown
    assert md_row(markdown, "no-eval-student")[7:9] == [f"{manifest['loss']['train'][-1][1]:.3f}", "–"]


def test_a_running_student_with_no_loss_yet_is_listed_and_nothing_is_plotted(tmp_path: Path) -> None:
    manifest = {**train_manifest("bon", 2.0), "status": "running", "loss": {"train": [], "eval": []}}
    manifest["hyperparameters"] = {**manifest["hyperparameters"], "max_steps": 50}
    out = tmp_path / "running"
    written = build_report([write_json(tmp_path / "early" / "train.json", manifest)], out)
    assert not [p for p in written if p.suffix == ".png"]
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert md_row(markdown, "early")[6:9] == ["max 50 steps / –", "–", "–"]
    assert "No loss was logged by any student yet" in markdown and "(status 'running'): early;" in markdown


def test_students_are_named_by_folder_and_by_path_where_folders_share_a_name() -> None:
    paths = ["runs/a/out/train.json", "runs/b/out/train.json", "runs/c/train.json", "runs/c/train.json"]
    assert student_names(paths) == ["runs/a/out/train.json", "runs/b/out/train.json", "c", "c (2)"]
