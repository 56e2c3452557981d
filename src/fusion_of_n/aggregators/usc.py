"""Universal self-consistency (Chen et al. 2023): an LLM picks the response most consistent with the rest.

The selector sees the conversation up to the last user turn unchanged (so the candidate prompt is a
prefix of its prompt), then one user turn built from ``prompts/usc.txt``: the instruction and the
candidates numbered 1..k in pool order. It answers at temperature 0 with a small ``max_tokens``.

The reply is constrained where the backend can (:func:`usc_format`: a grammar on llama.cpp, a JSON
schema on OpenAI-compatible servers) and parsed by :func:`parse_choice` (formats in
``_CHOICE_FORMATS``: ``{"response": 3}``, "Response 3",
"response #3", "[[3]]", "The most consistent response is 2", "the third response", "I choose 3",
a lone "3"); a bare number inside prose ("the answer is 4") is not taken for a choice, and numbers
outside 1..k are rejected. An unparseable reply gets one short follow-up turn asking for the number
alone (flag ``usc_reasked``). If that is unparseable too, the first candidate (lowest pool index) is
returned with flag ``usc_unparsed``: a documented fallback, never a silent pick.
Upstream errors propagate. A single candidate is returned without any call.

Usage of the selector calls is reported under the stage ``"scoring"``; ``analysis`` holds its replies.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from string import Template

from ..backends.base import Backend
from ..errors import ConfigError
from ..types import Aggregation, Candidate, Message, OutputFormat, Params, Request, Usage
from .base import AggregatorOptions, register

logger = logging.getLogger(__name__)

USC_TEMPLATE = Template(resources.files(__package__).joinpath("prompts", "usc.txt").read_text(encoding="utf-8"))
RESPONSE_BLOCK = Template("--- Response $number ---\n$text")
GRAMMAR_TEMPLATE = Template(resources.files(__package__).joinpath("prompts", "usc.gbnf").read_text(encoding="utf-8"))


def usc_format(count: int) -> OutputFormat:
    """The selector's reply where the backend can enforce it: "Response N." with N one of 1..count (a
    grammar for llama.cpp; for servers, the JSON object ``{"response": N}``)."""
    numbers = list(range(1, count + 1))
    schema = {
        "type": "object",
        "properties": {"response": {"type": "integer", "enum": numbers}},
        "required": ["response"],
        "additionalProperties": False,
    }
    grammar = GRAMMAR_TEMPLATE.substitute(choices=" | ".join(f'"{i}"' for i in numbers))
    return OutputFormat("usc_choice", grammar, schema)


FOLLOW_UP = Template(
    "I could not tell which response you chose. Reply with its number only: one whole number from 1 to $count."
)

_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
_NOUN = r"(?:response|answer|candidate|option)"
_CHOICE_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ('{"response": 3} (the JSON schema)', re.compile(r'"response"\s*:\s*"?(\d+)')),
    ("[[3]]", re.compile(r"\[\[\s*#?\s*(\d+)\s*\]\]")),
    (
        "the most consistent response is (Response) 3",
        re.compile(
            rf"most\s+consistent(?:\s+{_NOUN}|\s+one)?\s*(?:is|:|=)\s*(?:{_NOUN}\s*)?(?:number\s*|no\.\s*)?#?\s*(\d+)\b",
            re.I,
        ),
    ),
    (
        "Response 3 is the most consistent",
        re.compile(rf"\b{_NOUN}\s*#?\s*(\d+)\b[^.\n]{{0,20}}?\bmost\s+consistent", re.I),
    ),
    (
        "Response 3 / response #3 / response number 3",
        re.compile(rf"\b{_NOUN}\s*(?:number\s*|no\.\s*)?#?\s*(\d+)\b", re.I),
    ),
    ("the third response", re.compile(rf"\b({'|'.join(_ORDINALS)})\s+(?:{_NOUN}|one)\b", re.I)),
    ("I choose 3", re.compile(r"\b(?:choose|chose|pick|picked|select|selected)\s*:?\s*#?\s*(\d+)\b", re.I)),
    ("a lone 3", re.compile(r"^[\W_]*(\d+)[\W_]*$")),
)


def render_usc_prompt(instruction: str, texts: Sequence[str]) -> str:
    """The selector's user turn for candidate ``texts`` in pool order (numbered from 1)."""
    blocks = "\n\n".join(RESPONSE_BLOCK.substitute(number=i, text=text.strip()) for i, text in enumerate(texts, 1))
    return USC_TEMPLATE.substitute(count=len(texts), instruction=instruction.strip(), responses=blocks).rstrip() + "\n"


def _as_number(token: str) -> int:
    lowered = token.lower()
    return _ORDINALS.index(lowered) + 1 if lowered in _ORDINALS else int(token)


def parse_choice(reply: str, count: int) -> int | None:
    """The response number (1..count) that ``reply`` selects, or None if it names none in range."""
    text = reply.strip()
    for _, pattern in _CHOICE_FORMATS:
        for match in pattern.finditer(text):
            number = _as_number(match.group(1))
            if 1 <= number <= count:
                return number
    return None


@register("usc", uses=["fusor"])
@dataclass(frozen=True)
class UniversalSelfConsistency:
    """Ask ``selector`` which candidate is most consistent with the others; ``max_tokens`` caps its reply."""

    selector: Backend
    max_tokens: int = 32
    name: str = "usc"

    @classmethod
    def build(cls, options: AggregatorOptions) -> UniversalSelfConsistency:
        if options.selector is None:
            raise ConfigError(
                "usc needs a selector model (the LLM that picks the most consistent candidate): "
                "pass --fusor SPEC, e.g. --fusor local:qwen2.5-coder-1.5b"
            )
        return cls(options.selector)

    def messages(self, request: Request, pool: Sequence[Candidate]) -> list[Message]:
        """The selector chat: the conversation before the last user turn, then the selection turn."""
        turn = render_usc_prompt(request.last_user_text, [c.text for c in pool])
        history = list(request.messages)
        if history and history[-1].get("role") == "user":
            history = history[:-1]
        return [*history, {"role": "user", "content": turn}]

    async def _ask(self, request: Request, messages: Sequence[Message], count: int) -> tuple[str, Usage]:
        params = Params(temperature=0.0, max_tokens=self.max_tokens, output_format=usc_format(count))
        ask = Request(tuple(messages), params, request.language)
        generation = await self.selector.generate(ask, n=1)
        return generation.candidates[0].text, generation.usage

    async def aggregate(self, request: Request, candidates: Sequence[Candidate]) -> Aggregation:
        pool = sorted(candidates, key=lambda c: c.index)
        if len(pool) == 1:
            return Aggregation(text=pool[0].text, method=self.name, chosen=pool[0].index)
        messages = self.messages(request, pool)
        reply, usage = await self._ask(request, messages, len(pool))
        replies, flags = [reply], []
        number = parse_choice(reply, len(pool))
        if number is None:
            logger.debug("usc: unparseable selector reply %r; asking once more", reply)
            flags.append("usc_reasked")
            follow_up = FOLLOW_UP.substitute(count=len(pool))
            retry, retry_usage = await self._ask(
                request,
                [*messages, {"role": "assistant", "content": reply}, {"role": "user", "content": follow_up}],
                len(pool),
            )
            replies.append(retry)
            usage = usage + retry_usage
            number = parse_choice(retry, len(pool))
        if number is None:
            logger.warning(
                "usc: selector %s named no response in 1..%d; returning the first", self.selector.name, len(pool)
            )
            flags.append("usc_unparsed")
            number = 1
        chosen = pool[number - 1]
        return Aggregation(
            text=chosen.text,
            method=self.name,
            chosen=chosen.index,
            analysis="\n\n".join(r.strip() for r in replies) or None,
            flags=tuple(flags),
            usage={"scoring": usage},
            extra={"selector": self.selector.name},
        )
