"""Attribution: how much of each fused answer was copied from each candidate, and how much is new.

Unit: the fused text's non-whitespace characters (white space carries no content and is re-flowed
freely, so a verbatim copy counts as fully copied whatever its line breaks).

Matching (:func:`attribute`): both texts are cut into tokens (a word; one character of a script written
without spaces such as Chinese, Japanese or Thai; one punctuation mark). A stretch of the fused text
counts as copied from a candidate when it is covered by runs of ``min_tokens`` consecutive tokens that
occur verbatim (same tokens, same order) somewhere in that candidate, and the covered stretch holds at
least ``min_chars`` non-whitespace characters. Defaults: 3 tokens and 12 characters, so a shared number
or a stock phrase ("is 5.", "the sum") is no copy, while a copied clause is. Chinese/Japanese need 12
characters too, i.e. a clause, which errs on the side of calling text novel.

Why not ``difflib.SequenceMatcher``: its matching blocks form one monotone alignment, so a fused answer
that reorders copied paragraphs loses all but one of them; at character level its ``autojunk`` marks every
common letter as junk in texts over 200 characters, and without it the search is quadratic. The token
shingle index is linear in the texts' lengths and order-independent (10^4 records are measured in the
module's tests and the issue note).

When several candidates cover a token, it goes once to the candidate whose covered stretch around it is
longest, ties to the lowest pool index: shares never double count and sum to at most 1; the rest is
``novel``. Only the candidates the fusor saw are compared (those not excluded by hygiene; all of them
when every candidate was excluded, as the pipeline then shows them all).

Where each copy comes from (``fusion-of-n view`` highlights it in the candidate): a copied token maps to
the candidate token at the first position, in that candidate, of a shingle covering it (the one
continuing the previous token's source when there is such a shingle). A span (:attr:`Attribution.spans`)
is a run of tokens of one candidate that is contiguous in both texts, and :attr:`Attribution.sources`
holds its character span in the candidate.
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..language import detect_language, language_code
from ..records import read_checked_records, record_pool, record_result, result_text
from ..types import Candidate
from .stats import mean_ci

log = logging.getLogger(__name__)

MIN_TOKENS = 3
MIN_CHARS = 12
# Scripts written without spaces between words: every character is a token.
_UNSPACED = "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_UNSPACED}]|[^\W{_UNSPACED}]+|\S")
Run = tuple[int, int, int]


@dataclass(frozen=True)
class Attribution:
    """One fused text's attribution: ``shares[i]`` is the share copied from ``candidates[i]``."""

    chars: int  # non-whitespace characters in the fused text
    shares: tuple[float, ...]
    novel: float
    spans: tuple[Run, ...]  # (start, end, candidate position): character spans of the fused text
    sources: tuple[tuple[int, int], ...] = ()  # per span: (cstart, cend) in that candidate's text

    @property
    def copies(self) -> tuple[tuple[int, int, int, int, int], ...]:
        """Each span with its source: (start, end, candidate position, cstart, cend)."""
        return tuple((*span, *source) for span, source in zip(self.spans, self.sources, strict=True))

    @property
    def top(self) -> int | None:
        """Position of the top contributing candidate (lowest on ties), None when nothing was copied."""
        if not self.shares or max(self.shares) == 0.0:
            return None
        return self.shares.index(max(self.shares))


def tokenize(text: str) -> list[str]:
    """The tokens matching works on (white space dropped)."""
    return _TOKEN.findall(text)


def _shingles(tokens: Sequence[str], k: int) -> list[int]:
    # hashes of every run of k tokens (64-bit: a collision among a few thousand runs is negligible)
    return list(map(hash, zip(*(tokens[i:] for i in range(k)), strict=False)))


def _stretches(
    fused: Sequence[int], prefix: Sequence[int], candidate: Container[int], k: int, min_chars: int
) -> list[Run]:
    """The stretches (start, end, weight) of fused tokens covered by shingles found in ``candidate``
    that hold at least ``min_chars`` characters; ``prefix`` holds cumulative token weights."""
    runs: list[Run] = []
    first, reach = -1, -1
    for start, shingle in enumerate(fused):
        if shingle not in candidate:
            continue
        if start > reach:  # a gap: the previous stretch is complete
            if first >= 0:
                runs.append((first, reach, prefix[reach] - prefix[first]))
            first = start
        reach = start + k
    if first >= 0:
        runs.append((first, reach, prefix[reach] - prefix[first]))
    return [run for run in runs if run[2] >= min_chars]


def attribute(
    fused: str, candidates: Sequence[str], *, min_tokens: int = MIN_TOKENS, min_chars: int = MIN_CHARS
) -> Attribution:
    """Attribute each non-whitespace character of ``fused`` to one of ``candidates`` or to nobody."""
    if min_tokens < 1 or min_chars < 1:
        raise ValueError("min_tokens and min_chars must be at least 1")
    matches = list(_TOKEN.finditer(fused))
    prefix = [0]
    for match in matches:
        prefix.append(prefix[-1] + len(match.group()))
    total = prefix[-1]
    if total == 0:
        return Attribution(0, tuple(0.0 for _ in candidates), 0.0, ())
    shingles = _shingles([m.group() for m in matches], min_tokens)
    best = np.zeros(len(matches), dtype=np.int64)
    owner = np.full(len(matches), -1, dtype=np.int64)
    sources: list[_Source] = []
    for position, text in enumerate(candidates):
        source = _Source(text, min_tokens)
        sources.append(source)
        for start, end, weight in _stretches(shingles, prefix, source.first, min_tokens, min_chars):
            longer = best[start:end] < weight  # strictly longer: ties stay with the lower position
            best[start:end][longer] = weight
            owner[start:end][longer] = position
    copied = [0] * len(candidates)
    spans: list[Run] = []
    found: list[tuple[int, int]] = []  # per span: its first and last candidate token
    for t, (match, who) in enumerate(zip(matches, owner.tolist(), strict=True)):
        if who < 0:
            continue
        copied[who] += len(match.group())
        follows = bool(spans) and spans[-1][2] == who and not fused[spans[-1][1] : match.start()].strip()
        origin = sources[who].origin(shingles, t, found[-1][1] + 1 if follows else None)
        if follows and origin == found[-1][1] + 1:
            spans[-1] = (spans[-1][0], match.end(), who)
            found[-1] = (found[-1][0], origin)
        else:
            spans.append((match.start(), match.end(), who))
            found.append((origin, origin))
    shares = tuple(c / total for c in copied)
    where = tuple(sources[who].chars(first, last) for (_, _, who), (first, last) in zip(spans, found, strict=True))
    return Attribution(total, shares, (total - sum(copied)) / total, tuple(spans), where)


class _Source:
    """One candidate as matching sees it: its tokens and the first position of each shingle."""

    def __init__(self, text: str, k: int) -> None:
        self.k = k
        self.tokens = list(_TOKEN.finditer(text))
        shingles = _shingles([m.group() for m in self.tokens], k)
        self.first = {shingle: p for p, shingle in reversed(list(enumerate(shingles)))}

    def origin(self, fused: Sequence[int], t: int, wanted: int | None) -> int:
        """The candidate token fused token ``t`` was copied from: ``wanted`` when a covering shingle
        puts it there, else the one the earliest covering shingle found here puts it at."""
        options = [
            self.first[fused[s]] + t - s
            for s in range(max(0, t - self.k + 1), min(t, len(fused) - 1) + 1)
            if fused[s] in self.first
        ]
        return wanted if wanted in options else options[0]

    def chars(self, first: int, last: int) -> tuple[int, int]:
        return self.tokens[first].start(), self.tokens[last].end()


def _compared(record: Mapping[str, Any]) -> tuple[Candidate, ...]:
    pool = record_pool(record)
    return pool.usable or pool.candidates


def record_language(record: Mapping[str, Any], text: str) -> str:
    """The record's language code, else the detected language of ``text``, else "unknown"."""
    stated = record.get("language")
    code = language_code(str(stated)) if stated else None
    return code or detect_language(text) or "unknown"


def record_attribution(
    record: Mapping[str, Any], method: str = "fusion", **options: int
) -> tuple[tuple[Candidate, ...], Attribution] | None:
    """The candidates compared (those the fusor saw) and the attribution of ``method``'s answer to them
    (positions in ``spans`` and ``shares`` are positions in that tuple; ``candidate.index`` is the pool
    index); None when the record has no ``method`` result or is an error record."""
    if record.get("error") or record_result(record, method) is None:
        return None
    compared = _compared(record)
    return compared, attribute(result_text(record, method), [c.text for c in compared], **options)


def attribute_record(record: Mapping[str, Any], method: str = "fusion", **options: int) -> dict[str, Any] | None:
    """The attribution row of one generate record, or None when it has no ``method`` result."""
    attributed = record_attribution(record, method, **options)
    if attributed is None:
        return None
    compared, found = attributed
    text = result_text(record, method)
    shares = {str(c.index): round(s, 6) for c, s in zip(compared, found.shares, strict=True)}
    by_model: dict[str, float] = defaultdict(float)
    for c, s in zip(compared, found.shares, strict=True):
        by_model[c.model] += s
    top = found.top
    return {
        "id": record.get("id"),
        "language": record_language(record, text),
        "chars": found.chars,
        "shares": shares,
        "by_model": {m: round(s, 6) for m, s in by_model.items()},
        "novel": round(found.novel, 6),
        "top_index": compared[top].index if top is not None else None,
        "top_share": round(max(found.shares, default=0.0), 6),
    }


def summarize(rows: Sequence[Mapping[str, Any]], *, seed: int = 0) -> dict[str, Any]:
    """Mean shares with bootstrap CIs over rows; rows of empty fused texts are counted, not averaged."""
    scored = [r for r in rows if r["chars"] > 0]
    by_index: dict[str, list[float]] = defaultdict(list)
    by_model: dict[str, list[float]] = defaultdict(list)
    for row in scored:
        for index, share in row["shares"].items():
            by_index[index].append(share)
        for model, share in row["by_model"].items():
            by_model[model].append(share)
    return {
        "n": len(scored),
        "n_empty": len(rows) - len(scored),
        "novel": mean_ci([r["novel"] for r in scored], seed=seed),
        "copied": mean_ci([1.0 - r["novel"] for r in scored], seed=seed),
        "top_share": mean_ci([r["top_share"] for r in scored], seed=seed),
        "by_index": {i: mean_ci(v, seed=seed) for i, v in sorted(by_index.items(), key=lambda kv: int(kv[0]))},
        "by_model": {m: mean_ci(v, seed=seed) for m, v in sorted(by_model.items())},
    }


def attribution_report(
    records: Iterable[Mapping[str, Any]], method: str = "fusion", *, seed: int = 0, **options: int
) -> dict[str, Any]:
    """The ``"kind": "attribution"`` result over generate records (see :func:`attribute_file`)."""
    rows: list[dict[str, Any]] = []
    skipped = 0
    for record in records:
        row = attribute_record(record, method, **options)
        if row is None:
            skipped += 1
        else:
            rows.append(row)
    languages: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        languages[row["language"]].append(row)
    return {
        "kind": "attribution",
        "method": method,
        "settings": {
            "unit": "non-whitespace characters",
            "min_tokens": options.get("min_tokens", MIN_TOKENS),
            "min_chars": options.get("min_chars", MIN_CHARS),
            "seed": seed,
        },
        "n_records": len(rows),
        "skipped": skipped,
        "overall": summarize(rows, seed=seed),
        "by_language": {lang: summarize(group, seed=seed) for lang, group in sorted(languages.items())},
        "records": rows,
    }


def attribute_file(
    path: str, method: str = "fusion", *, seed: int = 0, min_tokens: int = MIN_TOKENS, min_chars: int = MIN_CHARS
) -> dict[str, Any]:
    """How much of each ``method`` answer in the generate file ``path`` was copied from each candidate.

    The ``"kind": "attribution"`` result with ``overall``, ``by_language`` and ``records``: per record the
    share of the answer's non-whitespace characters copied from each candidate (by pool index and by
    model) and the novel share; per language and overall their means with 95% bootstrap intervals. Also
    ``input`` and ``seconds``. A ConfigError when no record has a ``method`` result."""
    started = time.perf_counter()
    result = attribution_report(
        read_checked_records(path), method, seed=seed, min_tokens=min_tokens, min_chars=min_chars
    )
    if result["n_records"] == 0:
        raise ConfigError(f"no record in {path} has a {method!r} result; pass --method with one it has")
    result = {"input": path, **result, "seconds": round(time.perf_counter() - started, 3)}
    log.info("attributed %d records in %.1fs", result["n_records"], result["seconds"])
    return result
