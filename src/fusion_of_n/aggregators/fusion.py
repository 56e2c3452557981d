"""Fusion-of-N: a fusor LLM compares the candidates and writes one answer from them.

The fusor sees the conversation up to the last user turn unchanged (so the candidate prompt is a
prefix of the fusor prompt for servers with prefix caching), then one user turn built from
``prompts/fusion.txt``: the instruction, the candidates numbered anonymously in a seeded shuffled
order, and the target language.

Reply parsing (:func:`parse_fusion`), in order:

1. ``[[`` ... ``]]``: the answer runs from the first ``[[`` to the last ``]]`` after it (so brackets
   inside the answer, e.g. nested lists in code, survive); the text before is the analysis.
   If the bracketed text is itself the comparison ("Comparison: ...") and an answer label
   ("Final response:") is followed by text before ``[[``, that text is the answer; flag
   ``bracketed_comparison`` (seen with 1.5B fusors).
2. ``[[`` without a closing ``]]`` (typically cut by max_tokens): everything after ``[[``;
   flag ``unbalanced_brackets``.
3. ``]]`` without ``[[``: the text before ``]]``, after the last answer label if there is one;
   flag ``unbalanced_brackets``.
4. No brackets: the text after the last answer label at the start of a line (``Answer:``,
   ``Final response:``, or the label alone on its line), without one outer pair of single
   brackets if the whole answer is wrapped in ``[ ]``; else, when the reply opens with
   "Comparison", the paragraphs after the last one that mentions a candidate; else the whole
   reply. Flag ``missing_brackets``.
5. Nothing left: the first usable candidate (pool order) is returned as a selection; flags
   ``empty_fusion`` and ``fell_back_to_candidate``. Upstream errors are never turned into answers:
   they propagate as exceptions.
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from importlib import resources
from string import Template

from ..backends.base import Backend, StreamingBackend
from ..errors import ConfigError
from ..language import target_language
from ..types import Aggregation, Candidate, Request, Usage
from .base import AggregatorOptions, register

_LABEL = re.compile(
    r"^[ \t*#>_-]*(?:final\s+(?:answer|response)|answer|response|fused\s+(?:answer|response))"
    r"(?:\s*[:：][ \t*_]*|[ \t*_]*$)",  # "Final response:" or a line that is only the label
    re.IGNORECASE | re.MULTILINE,
)
_COMPARISON = re.compile(r"^\W*comparison\W*", re.IGNORECASE)
_COMPARISON_WORD = re.compile(r"^\W*comparison", re.IGNORECASE)
_MENTIONS_CANDIDATE = re.compile(r"\bcandidates?\b", re.IGNORECASE)
UNKNOWN_LANGUAGE = "the instruction's language"


def _prompt(name: str) -> Template:
    return Template(resources.files(__package__).joinpath("prompts", name).read_text(encoding="utf-8"))


FUSION_TEMPLATE = _prompt("fusion.txt")
CANDIDATE_TEMPLATE = _prompt("fusion_candidate.txt")


@dataclass(frozen=True)
class ParsedFusion:
    text: str
    analysis: str
    flags: tuple[str, ...] = ()


_TRAILING_LABEL = re.compile(
    r"(?:final\s+(?:answer|response)|answer|response|fused\s+(?:answer|response))\W*$", re.IGNORECASE
)


def _clean_analysis(text: str) -> str:
    """The comparison without its leading "Comparison:" and a trailing "Answer:" label."""
    text = _TRAILING_LABEL.sub("", text.strip()).strip()
    return _COMPARISON.sub("", text, count=1).strip()


def _unwrap_single_brackets(text: str) -> str:
    """Small fusors often write ``[answer]`` with single brackets: drop that one outer pair."""
    if text.startswith("[") and text.endswith("]") and text.count("[") == 1 and text.count("]") == 1:
        return text[1:-1].strip()
    return text


def parse_fusion(reply: str) -> ParsedFusion:
    """Split a fusor reply into (answer, analysis, flags); see the module docstring for the rules."""
    start, end = reply.find("[["), reply.rfind("]]")
    if start != -1 and end > start:
        inner, head = reply[start + 2 : end].strip(), reply[:start]
        labels = list(_LABEL.finditer(head))
        if _COMPARISON.match(inner) and labels and head[labels[-1].end() :].strip():
            # a small fusor's slip: the answer after "Final response:", the comparison in brackets
            answer = head[labels[-1].end() :].strip()
            return ParsedFusion(answer, _clean_analysis(inner), ("bracketed_comparison",))
        return ParsedFusion(inner, _clean_analysis(head))
    if start != -1:
        return ParsedFusion(reply[start + 2 :].strip(), _clean_analysis(reply[:start]), ("unbalanced_brackets",))
    if end != -1:
        head = reply[:end]
        labels = list(_LABEL.finditer(head))
        cut = labels[-1].end() if labels else 0
        return ParsedFusion(head[cut:].strip(), _clean_analysis(head[:cut]), ("unbalanced_brackets",))
    labels = list(_LABEL.finditer(reply))
    if labels:
        last = labels[-1]
        answer = _unwrap_single_brackets(reply[last.end() :].strip())
        return ParsedFusion(answer, _clean_analysis(reply[: last.start()]), ("missing_brackets",))
    paragraphs = [p for p in re.split(r"\n\s*\n", reply.strip()) if p.strip()]
    if paragraphs and _COMPARISON.match(paragraphs[0]):
        cut = 1 + max(i for i, p in enumerate(paragraphs) if i == 0 or _MENTIONS_CANDIDATE.search(p))
        if cut < len(paragraphs):
            answer = "\n\n".join(paragraphs[cut:])
            return ParsedFusion(answer, _clean_analysis("\n\n".join(paragraphs[:cut])), ("missing_brackets",))
    return ParsedFusion(reply.strip(), "", ("missing_brackets",))


def presentation_order(count: int, seed: int | None) -> list[int]:
    """Positions 0..count-1 in the (seeded) shuffled order in which the fusor sees them."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return order


def render_fusion_prompt(instruction: str, texts: Sequence[str], language: str | None) -> str:
    """The fusor's user turn for candidate ``texts`` already in presentation order."""
    blocks = "\n\n".join(
        CANDIDATE_TEMPLATE.substitute(number=i, text=text.strip()).rstrip() for i, text in enumerate(texts, 1)
    )
    return FUSION_TEMPLATE.substitute(
        count=len(texts), language=language or UNKNOWN_LANGUAGE, instruction=instruction.strip(), candidates=blocks
    )


@register("fusion")
@dataclass(frozen=True)
class Fusion:
    """Fuse the pool with ``fusor``. ``seed`` fixes the presentation order; ``max_tokens`` caps the
    fusor's reply (None: twice the candidates' max_tokens if set, else the backend's default)."""

    fusor: Backend
    seed: int | None = None
    temperature: float = 0.0
    max_tokens: int | None = None
    name: str = "fusion"

    @classmethod
    def build(cls, options: AggregatorOptions) -> Fusion:
        if options.fusor is None:
            raise ConfigError("fusion needs a fusor model: pass --fusor SPEC (default: the first --model)")
        return cls(options.fusor, options.seed, max_tokens=options.fusor_max_tokens)

    def messages(self, request: Request, candidates: Sequence[Candidate]) -> tuple[list[dict[str, str]], list[int]]:
        """The fusor chat and the pool indices in presentation order."""
        order = [candidates[i].index for i in presentation_order(len(candidates), self._seed(request))]
        by_index = {c.index: c for c in candidates}
        language = target_language(request.last_user_text, request.language)
        turn = render_fusion_prompt(request.last_user_text, [by_index[i].text for i in order], language)
        history = list(request.messages)
        if history and history[-1].get("role") == "user":
            history = history[:-1]
        return [*history, {"role": "user", "content": turn}], order  # type: ignore[list-item]

    def _seed(self, request: Request) -> int | None:
        return self.seed if self.seed is not None else request.params.seed

    def fusor_request(self, request: Request, candidates: Sequence[Candidate]) -> tuple[Request, list[int]]:
        messages, order = self.messages(request, candidates)
        budget = self.max_tokens
        if budget is None and request.params.max_tokens is not None:
            budget = 2 * request.params.max_tokens
        fusor_request = request.with_messages(
            messages, temperature=self.temperature, max_tokens=budget, top_logprobs=None
        )
        return fusor_request, order

    def decide(
        self, reply: str, finish_reason: str | None, usage: Usage, order: list[int], candidates: Sequence[Candidate]
    ) -> Aggregation:
        """The aggregation for a complete fusor reply (shared by aggregate and astream)."""
        parsed = parse_fusion(reply)
        flags = list(parsed.flags)
        if finish_reason == "length":
            flags.append("fusor_truncated")
        text, chosen = parsed.text, None
        if not text:
            flags += ["empty_fusion", "fell_back_to_candidate"]
            first = min(candidates, key=lambda c: c.index)
            text, chosen = first.text, first.index
        return Aggregation(
            text=text,
            method=self.name,
            chosen=chosen,
            analysis=parsed.analysis or None,
            flags=tuple(flags),
            usage={"fusion": usage},
            extra={"presentation_order": order, "fusor": self.fusor.name, "raw_reply": reply},
        )

    async def aggregate(self, request: Request, candidates: Sequence[Candidate]) -> Aggregation:
        fusor_request, order = self.fusor_request(request, candidates)
        generation = await self.fusor.generate(fusor_request, n=1)
        reply = generation.candidates[0]
        return self.decide(reply.text, reply.finish_reason, generation.usage, order, candidates)

    async def astream(self, request: Request, candidates: Sequence[Candidate]) -> AsyncIterator[str | Aggregation]:
        """Yield the answer's text as the fusor writes it (only what will be inside ``[[ ]]``), then the
        Aggregation. The pieces concatenate exactly to ``Aggregation.text``."""
        if not isinstance(self.fusor, StreamingBackend):
            decision = await self.aggregate(request, candidates)
            yield decision.text
            yield decision
            return
        fusor_request, order = self.fusor_request(request, candidates)
        answer = AnswerStream()
        finish_reason, usage = None, Usage()
        stream = self.fusor.stream(fusor_request)
        try:
            async for delta in stream:
                if piece := answer.feed(delta.text):
                    yield piece
                if delta.finish_reason is not None or delta.usage is not None:
                    finish_reason, usage = delta.finish_reason, delta.usage or usage
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        decision = self.decide(answer.text, finish_reason, usage, order, candidates)
        if not decision.text.startswith(answer.emitted):  # cannot happen if AnswerStream mirrors parse_fusion
            raise AssertionError("streamed fusion text diverged from the parsed answer")
        if rest := decision.text[len(answer.emitted) :]:
            yield rest
        yield decision


class AnswerStream:
    """Incremental :func:`parse_fusion`: feed the fusor's text, get the part of the answer that is certain.

    After the first ``[[``, text up to the last ``]]`` seen so far (or all of it while no ``]]`` has
    come) is certainly part of the answer; what follows the last ``]]`` is held back, as are trailing
    white space and a lone trailing ``]``. If the bracketed text opens with "Comparison" (a slip that
    parse_fusion may resolve differently), nothing is emitted until the end. Replies without ``[[`` are
    parsed once complete. The concatenated output always equals ``parse_fusion(text).text`` or a prefix
    of it; the caller emits the rest when the reply is complete.
    """

    _HOLD = len("comparison")

    def __init__(self) -> None:
        self.text = ""
        self.emitted = ""

    def feed(self, piece: str) -> str:
        self.text += piece
        certain = self._certain()
        new = certain[len(self.emitted) :]
        self.emitted = certain
        return new

    def _certain(self) -> str:
        start = self.text.find("[[")
        if start == -1:
            return ""
        region = self.text[start + 2 :]
        head = region.lstrip()
        opening = _COMPARISON_WORD.match(head)
        if opening is None and len(re.sub(r"\W", "", head)) < self._HOLD:
            return ""  # too early to tell whether the bracket holds the comparison
        if opening is not None:
            return ""
        end = region.rfind("]]")
        if end == -1:
            end = len(region) - 1 if region.endswith("]") else len(region)
        return region[:end].strip()
