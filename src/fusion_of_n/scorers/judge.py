"""An LLM judge that rates each candidate on its own (pointwise), on a 1-9 scale.

Each candidate gets its own judge call (all concurrent; the backend limits concurrency). The prompt
(``prompts/judge.txt``) shows the instruction, then the response, then asks for ``Rating: <digit>``;
the instruction comes first so the N calls share a prefix the server can cache.

Reading the verdict:

1. The rating is found in the reply text with a table of formats (:data:`RATING_FORMATS`):
   ``Rating: 7``, ``[[7]]``, ``7/9``, ``Score: 7 out of 9``, ``**7**``, a lone ``7``, the only
   number in a reply of at most 12 words (``The answer is 7.``, as small models write). The first
   format that matches decides; a number outside 1-9 (or a fraction of anything but 9) is rejected.
2. When the backend returned logprobs, the score is the expected rating at the token that holds the
   digit: the digits 1-9 among that token's top alternatives, their probabilities renormalized
   (``P(7)=0.6, P(8)=0.4`` gives 7.4). This separates candidates that a greedy digit would tie.
3. No readable rating: the judge is asked once more (its reply and a reminder are appended to the
   chat). Still none: the score is ``None`` and the scoring gets the flag ``unscored:<pool index>``.
   An unreadable verdict is never turned into 0.
"""

from __future__ import annotations

import logging
import math
import re
import string
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

from ..aio import gather_or_cancel
from ..backends.base import Backend
from ..types import Candidate, Message, OutputFormat, Params, Request, TokenAlternatives, Usage, message_text
from .base import Scoring

logger = logging.getLogger(__name__)

LOW, HIGH = 1, 9
REMINDER = (
    "I could not find a rating in your reply. Reply again with only the word Rating, then a colon, "
    "then one single digit from 1 to 9."
)
"""The follow-up message sent once when the judge's first reply has no readable rating."""

_NUM = r"(?P<value>\d+(?:\.\d+)?)"
_DEN = r"(?:\s*(?:/|out\s+of)\s*(?P<den>\d+))?"
RATING_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("double brackets [[7]]", re.compile(r"\[\[\s*" + _NUM + r"\s*\]\]")),
    ("Rating: 7, **Rating:** 7, rating is 7", re.compile(r"\brating\W{0,4}(?:is\s+)?\W{0,4}" + _NUM + _DEN, re.I)),
    ("Score: 7 out of 9, Grade: 7", re.compile(r"\b(?:score|grade)\W{0,4}(?:is\s+|of\s+)?\W{0,4}" + _NUM + _DEN, re.I)),
    ("fraction 7/9, 7 out of 9", re.compile(_NUM + r"\s*(?:/|out\s+of)\s*(?P<den>\d+)", re.IGNORECASE)),
    ("bold **7**", re.compile(r"\*\*\s*" + _NUM + r"\s*\*\*")),
    ("a lone number", re.compile(r"\A[\s*\[\]().\"'`]*" + _NUM + r"[\s*\[\]().!\"'`]*\Z")),
    ("a digit alone on the first line", re.compile(r"\A\s*(?P<value>\d)[ \t]*\n")),
    (
        "the only number in a short reply: I give it a 7.",
        re.compile(r"\A\s*(?=(?:\S+\s+){0,11}\S+\s*\Z)\D*?(?<![.-])" + _NUM + r"\D*\Z"),
    ),
)
"""Formats tried in order; within a format the last match counts (reasoning may come first)."""


@dataclass(frozen=True)
class ParsedRating:
    value: float
    start: int  # character span of the number in the reply
    end: int


def parse_rating(text: str) -> ParsedRating | None:
    """The rating written in ``text``, or None if no format matches or the number is out of range."""
    for _, pattern in RATING_FORMATS:
        matches = list(pattern.finditer(text))
        if not matches:
            continue
        match = matches[-1]
        denominator = match.groupdict().get("den")
        value = float(match.group("value"))
        if (denominator is not None and int(denominator) != HIGH) or not LOW <= value <= HIGH:
            return None
        return ParsedRating(value, match.start("value"), match.end("value"))
    return None


def _digit(token: str) -> str | None:
    """The rating digit a token stands for (``" 7"``, ``"▁7"``, ``"[[7"``), else None."""
    core = token.strip().strip("▁Ġ*[]()\"'`:.")
    return core if len(core) == 1 and core in "123456789" else None


def _rating_token(logprobs: Sequence[TokenAlternatives], text: str, parsed: ParsedRating) -> int | None:
    """The index of the generated token that holds the parsed digit."""
    greedy = [max(alts, key=lambda alt: alt[1])[0] if alts else "" for alts in logprobs]
    digit = text[parsed.start : parsed.end]
    joined = "".join(greedy)
    if joined.strip() == text.strip():
        target = parsed.start - (len(text) - len(text.lstrip())) + (len(joined) - len(joined.lstrip()))
        position = 0
        for index, piece in enumerate(greedy):
            if position <= target < position + len(piece):
                return index if _digit(piece) == digit else None
            position += len(piece)
        return None
    # The backend's text and tokens disagree (e.g. it post-processed the text): the last token that
    # is this digit is the best guess, since the parser also takes the last match.
    candidates = [index for index, piece in enumerate(greedy) if _digit(piece) == digit]
    return candidates[-1] if candidates else None


def expected_rating(logprobs: Sequence[TokenAlternatives], text: str, parsed: ParsedRating) -> float | None:
    """Probability-weighted rating at the digit's token, or None if it cannot be located."""
    if not parsed.value.is_integer() or parsed.end - parsed.start != 1:
        return None
    index = _rating_token(logprobs, text, parsed)
    if index is None:
        return None
    mass: dict[int, float] = {}
    for token, logprob in logprobs[index]:
        digit = _digit(token)
        if digit is not None and math.isfinite(logprob):
            mass[int(digit)] = mass.get(int(digit), 0.0) + math.exp(logprob)
    total = sum(mass.values())
    if total <= 0.0:
        return None
    return sum(value * p for value, p in mass.items()) / total


def read_verdict(reply: Candidate) -> float | None:
    """The score in a judge reply: the expected rating when logprobs allow, else the written one."""
    parsed = parse_rating(reply.text)
    if parsed is None:
        return None
    if reply.logprobs:
        expected = expected_rating(reply.logprobs, reply.text, parsed)
        if expected is not None:
            return expected
    return parsed.value


JUDGE_FORMAT = OutputFormat(
    "judge_rating",
    resources.files(__package__).joinpath("prompts/judge.gbnf").read_text(encoding="utf-8"),
    {
        "type": "object",
        "properties": {"rating": {"type": "integer", "enum": list(range(LOW, HIGH + 1))}},
        "required": ["rating"],
        "additionalProperties": False,
    },
)
"""The rating the prompt asks for, enforced where the backend can: the "Rating: N" line as a grammar
(llama.cpp), the object ``{"rating": N}`` as a JSON schema (OpenAI-compatible servers, per their
``structured`` option). The "Rating: 7" format of :data:`RATING_FORMATS` reads both, and the digit is
still one token for the expected rating."""


def load_template() -> string.Template:
    text = resources.files(__package__).joinpath("prompts/judge.txt").read_text(encoding="utf-8")
    return string.Template(text)


def render_instruction(messages: Iterable[Message]) -> str:
    """One user turn renders as its text; a longer chat as ``Role: text`` paragraphs."""
    turns = [(str(m.get("role", "user")), message_text(m)) for m in messages]
    if len(turns) == 1 and turns[0][0] == "user":
        return turns[0][1]
    return "\n\n".join(f"{role.capitalize()}: {text}" for role, text in turns)


def render_prompt(request: Request, response: str, template: string.Template | None = None) -> str:
    """The judge prompt for one response (``$instruction`` and ``$response`` filled in)."""
    template = template or load_template()
    return template.substitute(instruction=render_instruction(request.messages), response=response)


class LLMJudge:
    """Rates each candidate 1-9 with an LLM (see the module docstring for how verdicts are read).

    ``top_logprobs=None`` stops asking for logprobs (for servers that reject them). The judge closes
    its backend in :meth:`aclose` only when ``close_backend`` is true (the factory sets it for a
    backend it built from a spec).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        max_tokens: int = 16,
        top_logprobs: int | None = 10,
        template: str | None = None,
        close_backend: bool = False,
    ) -> None:
        self.backend = backend
        self.name = f"judge:{backend.name}"
        self.params = Params(
            temperature=0.0, max_tokens=max_tokens, top_logprobs=top_logprobs, output_format=JUDGE_FORMAT
        )
        self.template = string.Template(template) if template is not None else load_template()
        self.close_backend = close_backend

    async def score(self, request: Request, candidates: Sequence[Candidate]) -> Scoring:
        started = time.perf_counter()
        results = await gather_or_cancel(self._judge(request, c) for c in candidates)
        usage = Usage()
        flags: list[str] = []
        for candidate, (score, call_usage) in zip(candidates, results, strict=True):
            usage = usage + call_usage
            if score is None:
                flags.append(f"unscored:{candidate.index}")
        usage = Usage(usage.calls, usage.prompt_tokens, usage.completion_tokens, time.perf_counter() - started)
        return Scoring(tuple(score for score, _ in results), usage, tuple(flags))

    async def _judge(self, request: Request, candidate: Candidate) -> tuple[float | None, Usage]:
        prompt = render_prompt(request, candidate.text, self.template)
        logger.debug("judge %s prompt for candidate %d:\n%s", self.name, candidate.index, prompt)
        messages: list[Message] = [{"role": "user", "content": prompt}]
        generation = await self.backend.generate(Request(tuple(messages), self.params), n=1)
        usage = generation.usage
        reply = generation.candidates[0]
        score = read_verdict(reply)
        if score is None:
            logger.debug("judge %s reply without a rating: %r; asking again", self.name, reply.text)
            messages += [{"role": "assistant", "content": reply.text}, {"role": "user", "content": REMINDER}]
            generation = await self.backend.generate(Request(tuple(messages), self.params), n=1)
            usage = usage + generation.usage
            reply = generation.candidates[0]
            score = read_verdict(reply)
        if score is None:
            logger.warning(
                "judge %s gave no readable rating for candidate %d, even when asked again; "
                "it stays unscored (try a larger judge model)",
                self.name,
                candidate.index,
            )
            logger.debug("judge %s second reply: %r", self.name, reply.text)
        return score, usage

    async def aclose(self) -> None:
        if self.close_backend:
            await self.backend.aclose()
