"""eval translation: sacrebleu-exact corpus scores, oracle and random baselines, COMET glue, the command."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from sacrebleu.metrics.bleu import BLEU
from sacrebleu.metrics.chrf import CHRF

from fusion_of_n.cli.eval import translation_command as command
from fusion_of_n.errors import ConfigError, MissingDependency
from fusion_of_n.eval.comet import load_comet
from fusion_of_n.eval.translation import (
    Reference,
    bleu_tokenizer,
    evaluate_translation,
    read_references,
)

GERMAN = [
    ("Der Hund läuft schnell über die Straße.", ["Der Hund rennt über die Straße.", "Ein Hund läuft schnell.", ""]),
    ("Ich trinke morgens gern Kaffee.", ["Ich trinke gern Kaffee am Morgen.", "Morgens trinke ich Tee.", "Kaffee"]),
    ("Das Wetter ist heute sehr schön.", ["Heute ist das Wetter schön.", "Das Wetter ist sehr schön heute.", "Ja"]),
]
FRENCH = [
    ("Le chat dort sur le canapé.", ["Le chat dort sur le sofa.", "Un chat dort.", "Le chien dort sur le canapé."]),
    ("Nous allons au marché demain.", ["Demain nous allons au marché.", "Nous irons au marché.", "Marché demain"]),
]
JAPANESE = [
    ("猫がソファの上で寝ています。", ["猫はソファで寝ている。", "ソファの上に猫がいます。", "猫"]),
    ("明日は雨が降るでしょう。", ["明日は雨でしょう。", "明日、雨が降ります。", "雨"]),
]
SETS = {"de": GERMAN, "fr": FRENCH, "ja": JAPANESE}


def record(key: str, language: str | None, candidates: list[str], chosen: int = 1, **extra: Any) -> dict[str, Any]:
    pool = [
        {"index": i, "text": t, "excluded": not t, "flags": [] if t else ["empty"]} for i, t in enumerate(candidates)
    ]
    return {
        "id": key,
        "language": language,
        "prompt": f"Translate into the target language: {key}",
        "candidates": pool,
        "results": {
            "bon": {"text": candidates[chosen], "chosen": chosen},
            "fusion": {"text": " ".join(candidates[:2]), "chosen": None},
        },
        "error": None,
        **extra,
    }


def fixture() -> tuple[list[dict[str, Any]], dict[str, Reference]]:
    records, refs = [], {}
    for lang, rows in SETS.items():
        for i, (reference, candidates) in enumerate(rows):
            key = f"{lang}-{i}"
            records.append(record(key, lang, candidates, chosen=i % 2))
            refs[key] = Reference(reference)
    return records, refs


def texts(records: list[dict[str, Any]], lang: str, method: str) -> list[str]:
    return [r["results"][method]["text"] for r in records if r["language"] == lang]


def test_corpus_scores_equal_sacrebleu_corpus_score_per_language_and_method() -> None:
    records, refs = fixture()
    result = evaluate_translation(records, refs, resamples=50)
    for lang in SETS:
        references = [[refs[r["id"]].reference for r in records if r["language"] == lang]]
        for method in ("bon", "fusion"):
            hyps = texts(records, lang, method)
            scores = result["languages"][lang][method]
            assert scores["chrf"]["score"] == CHRF().corpus_score(hyps, references).score
            assert scores["chrf++"]["score"] == CHRF(word_order=2).corpus_score(hyps, references).score
            expected_bleu = BLEU(tokenize=bleu_tokenizer(lang)).corpus_score(hyps, references).score
            assert scores["bleu"]["score"] == expected_bleu


def test_overall_is_the_pooled_corpus_score() -> None:
    records, refs = fixture()
    latin = [r for r in records if r["language"] in ("de", "fr")]  # both 13a: BLEU pools like one corpus
    result = evaluate_translation(latin, refs, resamples=50)
    hyps = [r["results"]["fusion"]["text"] for r in latin]
    references = [[refs[r["id"]].reference for r in latin]]
    assert result["overall"]["fusion"]["chrf"]["score"] == CHRF().corpus_score(hyps, references).score
    assert result["overall"]["fusion"]["bleu"]["score"] == BLEU().corpus_score(hyps, references).score
    assert result["overall"]["fusion"]["bleu"]["n"] == len(latin)


def test_result_layout_per_language_and_method_with_intervals() -> None:
    records, refs = fixture()
    result = evaluate_translation(records, refs, resamples=200)
    assert result["kind"] == "translation"
    assert result["methods"] == ["bon", "fusion", "oracle", "random_pick"]
    assert result["selection_methods"] == ["bon"]
    assert set(result["languages"]) == {"de", "fr", "ja"}
    assert result["tokenizers"]["de"] == "13a"
    for table in [*result["languages"].values(), result["overall"]]:
        for method in result["methods"]:
            assert set(table[method]) == {"chrf", "chrf++", "bleu"}
            for entry in table[method].values():
                low, high = entry["ci"]
                assert low <= high and 0 <= low and high <= 100 + 1e-9
    assert result["languages"]["de"]["bon"]["chrf"]["n"] == len(GERMAN)
    assert result["overall"]["bon"]["chrf"]["n"] == len(GERMAN) + len(FRENCH) + len(JAPANESE)
    json.dumps(result, allow_nan=False)  # plain JSON, no NaN


def test_interval_is_a_bootstrap_of_the_corpus_score_and_reproducible() -> None:
    records, refs = fixture()
    first = evaluate_translation(records, refs, resamples=300, seed=3)
    again = evaluate_translation(records, refs, resamples=300, seed=3)
    assert first == again
    low, high = first["overall"]["random_pick"]["chrf"]["ci"]
    assert low < high  # candidates differ, so resampled corpora differ


def test_bleu_tokenizers_for_cjk() -> None:
    assert bleu_tokenizer("zh") == "zh"
    assert bleu_tokenizer("de") == "13a" and bleu_tokenizer(None) == "13a"
    has_mecab = importlib.util.find_spec("MeCab") is not None and importlib.util.find_spec("ipadic") is not None
    assert bleu_tokenizer("ja") == ("ja-mecab" if has_mecab else "char")
    assert bleu_tokenizer("ko") in ("ko-mecab", "char")


words = st.sampled_from("the a cat dog sat ran on under mat house big small red".split())
sentences = st.lists(words, min_size=0, max_size=8).map(" ".join)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.lists(
        st.tuples(sentences, st.lists(sentences, min_size=1, max_size=4), st.integers(0, 3)), min_size=1, max_size=6
    ),
    oracle_metric=st.sampled_from(["chrf", "chrf++", "bleu"]),
)
def test_oracle_is_never_below_a_selection_method_per_segment(
    rows: list[tuple[str, list[str], int]], oracle_metric: str
) -> None:
    records, refs = [], {}
    for i, (reference, candidates, pick) in enumerate(rows):
        chosen = pick % len(candidates)
        records.append(record(f"r{i}", "en", [*candidates, candidates[0]], chosen=chosen))
        refs[f"r{i}"] = Reference(reference or "empty")
    result = evaluate_translation(records, refs, oracle_metric=oracle_metric, resamples=5, segments=True)
    for segment in result["segments"]:
        scores = segment["scores"]
        for method in [*result["selection_methods"], "random_pick"]:
            assert scores["oracle"][oracle_metric] >= scores[method][oracle_metric]


def test_oracle_picks_from_the_whole_pool_and_random_pick_from_usable_candidates() -> None:
    reference = "Der Hund läuft schnell über die Straße."
    pool = [
        {"index": 0, "text": "Hund", "excluded": False},
        {"index": 1, "text": reference, "excluded": True, "flags": ["truncated"]},
        {"index": 2, "text": "Ein Hund", "excluded": False},
    ]
    records = [
        {"id": f"r{i}", "language": "de", "candidates": pool, "results": {"first": {"text": "Hund", "chosen": 0}}}
        for i in range(30)
    ]
    refs = {f"r{i}": Reference(reference) for i in range(30)}
    result = evaluate_translation(records, refs, resamples=5, segments=True)
    assert {s["picks"]["oracle"] for s in result["segments"]} == {1}
    assert result["overall"]["oracle"]["chrf"]["score"] == 100.0
    random_picks = [s["picks"]["random_pick"] for s in result["segments"]]
    assert set(random_picks) == {0, 2}  # never the excluded one, both usable ones over 30 segments


def test_random_pick_is_seeded() -> None:
    records, refs = fixture()

    def picks(seed: int) -> list[int]:
        result = evaluate_translation(records, refs, seed=seed, resamples=5, segments=True)
        return [s["picks"]["random_pick"] for s in result["segments"]]

    assert picks(1) == picks(1)
    assert any(picks(seed) != picks(1) for seed in range(2, 8))


def test_unmatched_ids_and_failed_rows_are_counted() -> None:
    records, refs = fixture()
    extra = [
        record("no-ref", "de", ["Hallo Welt", "Hallo"]),
        {"id": "failed", "language": "de", "error": {"stage": "sampling", "message": "503"}},
    ]
    refs = {**refs, "orphan": Reference("nobody has this id")}
    result = evaluate_translation([*records, *extra], refs, resamples=5)
    counts = result["counts"]
    assert counts["records"] == len(records) + 2
    assert counts["evaluated"] == len(records)
    assert counts["no_reference"] == 1 and counts["error"] == 1 and counts["unused_references"] == 1


def test_records_missing_a_method_are_left_out_and_counted() -> None:
    records, refs = fixture()
    del records[0]["results"]["fusion"]
    result = evaluate_translation(records, refs, resamples=5)
    assert result["counts"]["missing_method"] == {"fusion": 1}
    assert result["overall"]["bon"]["chrf"]["n"] == len(records) - 1


def test_no_matching_ids_names_both_sides() -> None:
    records, _ = fixture()
    with pytest.raises(ConfigError, match=r"de-0.*other"):
        evaluate_translation(records, {"other": Reference("x")})


def test_language_falls_back_to_the_references_detected_language() -> None:
    rows = GERMAN * 2
    records = [record(f"r{i}", None, candidates) for i, (_, candidates) in enumerate(rows)]
    refs = {f"r{i}": Reference(reference) for i, (reference, _) in enumerate(rows)}
    assert set(evaluate_translation(records, refs, resamples=5)["languages"]) == {"de"}


def test_read_references_rejects_duplicates_and_bad_rows(tmp_path: Path) -> None:
    good = tmp_path / "refs.jsonl"
    good.write_text('{"id": 1, "reference": "a", "source": "src"}\n\n{"id": "2", "reference": "b"}\n', encoding="utf-8")
    assert read_references(str(good)) == {"1": Reference("a", "src"), "2": Reference("b")}
    twice = tmp_path / "twice.jsonl"
    twice.write_text('{"id": 1, "reference": "a"}\n{"id": 1, "reference": "b"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="twice"):
        read_references(str(twice))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "a"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.jsonl:1"):
        read_references(str(bad))


def test_comet_without_the_package_names_the_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "comet", None)  # import comet -> ImportError
    with pytest.raises(MissingDependency, match="pip install unbabel-comet"):
        load_comet(str(tmp_path))


def test_comet_loads_the_folders_checkpoint_and_scores_on_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoints" / "model.ckpt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"weights")
    calls: list[dict[str, Any]] = []

    class Model:
        def predict(self, samples: list[dict[str, str]], **kwargs: Any) -> Any:
            calls.append({"samples": samples, **kwargs})
            return types.SimpleNamespace(scores=[len(s["mt"]) / 100 for s in samples], system_score=0.0)

    loaded: list[str] = []
    fake = types.ModuleType("comet")
    fake.load_from_checkpoint = lambda path: loaded.append(path) or Model()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "comet", fake)
    records, refs = fixture()
    refs["de-0"] = Reference(refs["de-0"].reference, source="The dog runs fast across the street.")
    result = evaluate_translation(records, refs, comet=load_comet(str(tmp_path)), resamples=20)
    assert loaded == [str(checkpoint)]
    assert calls[0]["gpus"] == 0 and len(calls) == 1
    sources = {s["src"] for s in calls[0]["samples"]}
    assert "The dog runs fast across the street." in sources and records[1]["prompt"] in sources
    german = texts(records, "de", "fusion")
    assert result["languages"]["de"]["fusion"]["comet"]["score"] == pytest.approx(
        sum(len(t) / 100 for t in german) / len(german)
    )
    assert result["metrics"] == ["chrf", "chrf++", "bleu", "comet"]


def test_comet_folder_without_a_checkpoint_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "comet", types.ModuleType("comet"))
    with pytest.raises(ConfigError, match=r"checkpoints/model.ckpt"):
        load_comet(str(tmp_path))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_command_writes_the_result_json(tmp_path: Path) -> None:
    records, refs = fixture()
    output = write_jsonl(tmp_path / "out.jsonl", records)
    references = write_jsonl(tmp_path / "refs.jsonl", [{"id": k, "reference": v.reference} for k, v in refs.items()])
    target = tmp_path / "result.json"
    run = CliRunner().invoke(command, [output, "--references", references, "--resamples", "20", "-o", str(target)])
    assert run.exit_code == 0, run.output
    result = json.loads(target.read_text(encoding="utf-8"))
    assert result["kind"] == "translation" and result["output"] == output
    assert result["languages"]["fr"]["bon"]["chrf"]["n"] == len(FRENCH)


def test_command_without_comet_installed_fails_with_the_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "comet", None)
    records, refs = fixture()
    output = write_jsonl(tmp_path / "out.jsonl", records)
    references = write_jsonl(tmp_path / "refs.jsonl", [{"id": k, "reference": v.reference} for k, v in refs.items()])
    run = CliRunner().invoke(command, [output, "--references", references, "--comet-model", str(tmp_path)])
    assert run.exit_code == 1
    assert "pip install unbabel-comet" in run.output
