"""Judging one pair of answers in both orders: the pairwise prompt, the verdict table, the combine rule.

Both orders, always: every pair is judged with the system's answer as Response A and again as
Response B, so a judge that prefers a position cannot move the result (see :data:`RULE`). A verdict
is read with :data:`VERDICT_FORMATS` (first matching format decides; conflicting matches are
ambiguous); none after one short follow-up turn means *missing*, never a guess.
"""

from __future__ import annotations

import asyncio
import logging
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, NamedTuple

from ..aio import gather_or_cancel
from ..backends import Backend
from ..errors import BackendError
from ..types import Message, Params, Request, Usage

logger = logging.getLogger(__name__)

Verdict = Literal["A", "B", "tie"]
Outcome = Literal["win", "tie", "loss", "missing"]
SCORES: Mapping[str, float] = {"win": 1.0, "tie": 0.5, "loss": 0.0}

RULE = (
    "each pair is judged in both orders; the same verdict twice counts, any disagreement is a tie, a missing "
    "verdict in either order makes the pair missing; scores are 1 / 0.5 / 0 for win / tie / loss"
)
FOLLOW_UP = (
    "I could not find your verdict. Reply again with only the verdict: two opening square brackets, the "
    "capital letter A, B or C (C means the two responses are equally good), then two closing square brackets."
)

_TIE = r"(?i:(?:a\s+)?tie)"
# the letter A, but not the article in "Verdict: A good answer is..." ("A because ..." is fine)
_A_ALONE = r"A(?![\w'])(?![ \t]+(?!(?:because|since|as|for|with|and|but|over)\b)[a-z])"
SHORT_REPLY = 30
"""Most words a reply may have for a tie written in words ("They are equally good.") to count."""


class VerdictFormat(NamedTuple):
    description: str
    pattern: re.Pattern[str]
    max_words: int | None = None  # only replies of at most this many words


VERDICT_FORMATS: tuple[VerdictFormat, ...] = (
    VerdictFormat(
        "brackets: [[A]], [[B]], [[C]] (C = tie), [[tie]], also single: [B]",
        re.compile(r"\[\[\s*(?P<v>[ABCabc]|" + _TIE + r")\s*\]\]|\[\s*(?P<s>[ABC]|" + _TIE + r")\s*\]"),
    ),
    VerdictFormat(
        "a label: Verdict: A, Winner: Response B, The winner is B, Final answer: C, Verdict: tie",
        re.compile(
            r"(?i:\b(?:verdict|winner|decision|choice|answer|better\s+response)\b)[\s*:]*(?i:is\s+)?[\s*:]*"
            r"(?:(?i:response|assistant)\s+)?(?P<v>" + _TIE + r"|" + _A_ALONE + r"|[BC](?![\w']))"
        ),
    ),
    VerdictFormat(
        "a sentence: Response A is better, B is the better one, I prefer Response B",
        re.compile(
            r"(?:\b(?P<v>[AB])\s+(?i:is\s+(?:clearly\s+|slightly\s+|much\s+|far\s+)?(?:the\s+)?"
            r"(?:better|superior|stronger|preferred))|(?i:\bprefer\s+(?:response\s+|assistant\s+)?)(?P<p>[AB])\b)"
        ),
    ),
    VerdictFormat(
        "a tie in words: It's a tie, both are equally good, neither is better",
        re.compile(
            r"(?i:\b(?P<t>tie|equally\s+(?:good|bad|helpful|correct|strong|weak)|neither\s+(?:\w+\s+)?is\s+better)\b)"
        ),
        SHORT_REPLY,
    ),
    VerdictFormat(
        "a lone letter: A, (B), **C**, Tie, alone or on the last line",
        re.compile(r"(?:\A|\n)[\s*\[\]().\"'`]*(?P<v>[ABC]|(?i:tie))[\s*\[\]().!\"'`]*\Z"),
    ),
)


def _normalize(raw: str) -> Verdict:
    letter = raw.strip().upper()
    return "A" if letter == "A" else "B" if letter == "B" else "tie"  # C, TIE, A TIE


def parse_verdict(text: str) -> Verdict | None:
    """The verdict written in a judge reply, or None when no format matches or the first that matches
    names different verdicts."""
    for _, pattern, max_words in VERDICT_FORMATS:
        if max_words is not None and len(text.split()) > max_words:
            continue
        found = {_normalize(next(g for g in m.groups() if g is not None)) for m in pattern.finditer(text)}
        if found:
            return found.pop() if len(found) == 1 else None
    return None


def combine(system_first: Verdict | None, reference_first: Verdict | None) -> Outcome:
    """The pair's outcome for the system from its two verdicts (rule in the module docstring)."""
    if system_first is None or reference_first is None:
        return "missing"
    forward: Outcome = "win" if system_first == "A" else "loss" if system_first == "B" else "tie"
    backward: Outcome = "win" if reference_first == "B" else "loss" if reference_first == "A" else "tie"
    return forward if forward == backward else "tie"


@dataclass(frozen=True)
class Pair:
    """One prompt (rendered as text) with the system's answer and the reference answer."""

    id: str
    instruction: str
    system: str
    reference: str
    language: str | None = None


@dataclass(frozen=True)
class OrderVerdict:
    """One presentation order: the verdict (None = missing), the judge's replies, an upstream error."""

    verdict: Verdict | None
    replies: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class PairJudgement:
    id: str
    language: str  # "unknown" when the record has none
    system_first: OrderVerdict  # A = system, B = reference
    reference_first: OrderVerdict  # A = reference, B = system
    usage: Usage = field(default_factory=Usage)
    identical: bool = False  # the two answers were the same text: a tie, no judge call

    @property
    def outcome(self) -> Outcome:
        return combine(self.system_first.verdict, self.reference_first.verdict)

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"id": self.id, "language": self.language, "outcome": self.outcome}
        row["score"] = SCORES.get(self.outcome)
        row["system_first"] = self.system_first.verdict
        row["reference_first"] = self.reference_first.verdict
        if self.identical:
            row["identical"] = True
        for name, order in (("system_first", self.system_first), ("reference_first", self.reference_first)):
            if order.verdict is None:
                row[f"{name}_unread"] = {"replies": list(order.replies), "error": order.error}
        return row


def load_template() -> string.Template:
    text = resources.files(__package__).joinpath("prompts/pairwise.txt").read_text(encoding="utf-8")
    return string.Template(text)


def render_prompt(instruction: str, response_a: str, response_b: str, template: string.Template | None = None) -> str:
    return (template or load_template()).substitute(
        instruction=instruction, response_a=response_a, response_b=response_b
    )


async def judge_pairs(
    pairs: Sequence[Pair], judge: Backend, *, max_tokens: int = 512, template: string.Template | None = None
) -> list[PairJudgement]:
    """Judge every pair in both orders, all calls concurrent (the backend limits concurrency)."""
    params = Params(temperature=0.0, max_tokens=max_tokens)
    tmpl = template or load_template()
    return await gather_or_cancel(_judge_pair(pair, judge, params, tmpl) for pair in pairs)


async def _judge_pair(pair: Pair, judge: Backend, params: Params, template: string.Template) -> PairJudgement:
    language = pair.language or "unknown"
    if pair.system == pair.reference:
        tie = OrderVerdict("tie")
        return PairJudgement(pair.id, language, tie, tie, identical=True)
    forward, backward = await asyncio.gather(
        _judge_order(render_prompt(pair.instruction, pair.system, pair.reference, template), judge, params, pair.id),
        _judge_order(render_prompt(pair.instruction, pair.reference, pair.system, template), judge, params, pair.id),
    )
    return PairJudgement(pair.id, language, forward[0], backward[0], forward[1] + backward[1])


async def _judge_order(prompt: str, judge: Backend, params: Params, pair_id: str) -> tuple[OrderVerdict, Usage]:
    logger.debug("pairwise judge prompt for %s:\n%s", pair_id, prompt)
    messages: list[Message] = [{"role": "user", "content": prompt}]
    replies: list[str] = []
    usage = Usage()
    try:
        for attempt in range(2):
            generation = await judge.generate(Request(tuple(messages), params), n=1)
            usage = usage + generation.usage
            replies.append(generation.candidates[0].text)
            verdict = parse_verdict(replies[-1])
            if verdict is not None:
                return OrderVerdict(verdict, tuple(replies)), usage
            if attempt == 0:
                logger.debug("judge reply for %s has no verdict: %r; asking again", pair_id, replies[-1])
                messages += [{"role": "assistant", "content": replies[-1]}, {"role": "user", "content": FOLLOW_UP}]
    except BackendError as exc:
        logger.info("judge call for pair %s failed (%s); the pair counts as missing", pair_id, exc)
        return OrderVerdict(None, tuple(replies), str(exc)), usage
    logger.info("judge gave no readable verdict for pair %s, even when asked again; it counts as missing", pair_id)
    return OrderVerdict(None, tuple(replies)), usage
