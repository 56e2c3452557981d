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

A reply that is a JSON object (a server that honoured the ``response_format`` JSON schema) is read
first: ``answer`` is the answer and ``comparison`` the analysis; a JSON reply cut before its end gives
the part of ``answer`` that arrived, flagged ``unterminated_json``.

Constrained output: the fusor call carries :func:`fusion_format` (``Params.output_format``): a GBNF
grammar (``prompts/fusion.gbnf``: "Comparison: ", one paragraph of at most ``comparison_limit``
characters, then "Final response:" and the answer inside ``[[ ]]``; small fusors that were allowed
several paragraphs wrote their answer into the comparison and put a remark in the brackets) that
the embedded llama.cpp backend enforces, and the same content as a JSON schema that
OpenAI-compatible servers enforce where their ``structured`` option allows. The
comparison limit is the fusor's token budget in characters (about a third of the budget in English),
at most 1,200, so the answer always has room. When the reply still has no ``[[ ]]`` (a backend that
cannot constrain), one cheap second step asks for the answer alone in a short follow-up turn
(``prompts/fusion_reask.txt``, constrained by ``prompts/fusion_answer.gbnf``); its answer is used
with the flag ``reasked``. Only when that too has no brackets do the guessing rules above decide
(flag ``reask_failed`` besides theirs).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from string import Template

from ..backends.base import Backend, StreamingBackend
from ..errors import ConfigError
from ..language import target_language
from ..types import Aggregation, Candidate, OutputFormat, Params, Request, Usage
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
GRAMMAR_TEMPLATE = _prompt("fusion.gbnf")
REASK_TEMPLATE = _prompt("fusion_reask.txt")
DEFAULT_COMPARISON_LIMIT = 800  # characters, when the fusor has no token budget
MAX_COMPARISON_LIMIT = 1200
ANSWER_FORMAT = OutputFormat(
    "fusion_answer",
    _prompt("fusion_answer.gbnf").template,
    {"type": "object", "properties": {"answer": {"type": "string", "minLength": 1}}, "required": ["answer"],
     "additionalProperties": False},
)  # fmt: skip
"""The format of the re-ask step: the answer alone."""


MIN_FUSOR_BUDGET = 512


def fusor_budget(explicit: int | None, candidates: Sequence[Candidate]) -> int:
    """The fusor's ``max_tokens``: ``explicit`` if given (the Pipeline passes ``--fusor-max-tokens``,
    else twice the configured ``--max-tokens``: room for the comparison and an answer as long as the
    longest candidate); else twice the longest candidate's completion tokens (its length in characters
    where the backend reported no count: an upper bound for every tokenizer but byte fallback), at
    least ``MIN_FUSOR_BUDGET``. Never a request's
    ``max_tokens`` (a proxy client's limit is for the candidates), never unbounded (a fusor that
    degenerates into repetition must not write until its context is full)."""
    if explicit is not None:
        return explicit
    longest = max((c.completion_tokens if c.completion_tokens is not None else len(c.text) for c in candidates),
                  default=0)  # fmt: skip
    return max(MIN_FUSOR_BUDGET, 2 * longest)


def comparison_limit(budget: int | None) -> int:
    """Characters the comparison may take: the fusor's token budget (a third of it in English), capped."""
    return DEFAULT_COMPARISON_LIMIT if budget is None else max(40, min(MAX_COMPARISON_LIMIT, budget))


def fusion_format(budget: int | None) -> OutputFormat:
    """The fusor's reply format for a token ``budget``: the grammar and its JSON-schema twin."""
    limit = comparison_limit(budget)
    schema = {
        "type": "object",
        "properties": {
            "comparison": {"type": "string", "maxLength": limit},
            "answer": {"type": "string", "minLength": 1},
        },
        "required": ["comparison", "answer"],
        "additionalProperties": False,
    }
    return OutputFormat("fusion", GRAMMAR_TEMPLATE.substitute(limit=limit), schema)


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


_ANSWER_KEY = re.compile(r'"answer"\s*:\s*"')


def json_string_prefix(text: str) -> tuple[str, bool]:
    """Decode the JSON string body at the start of ``text`` (after its opening quote): (the characters
    decoded so far, whether the closing quote came). An escape cut at the end is left out."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == '"':
            return "".join(out), True
        if char != "\\":
            out.append(char)
            i += 1
            continue
        if i + 1 >= len(text):
            break
        code = text[i + 1]
        if code == "u":
            if i + 6 > len(text):
                break
            unit = int(text[i + 2 : i + 6], 16)
            if 0xD800 <= unit < 0xDC00:  # a surrogate pair: wait for its second half
                if i + 12 > len(text):
                    break
                low = int(text[i + 8 : i + 12], 16)
                out.append(chr(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)))
                i += 12
                continue
            out.append(chr(unit))
            i += 6
            continue
        out.append({"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}.get(code, code))
        i += 2
    return "".join(out), False


def _parse_json_reply(reply: str) -> ParsedFusion | None:
    """A reply written to the JSON schema: {"comparison": ..., "answer": ...}; None if it is not one."""
    try:
        data = json.loads(reply)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("answer"), str):
        comparison = data.get("comparison")
        return ParsedFusion(data["answer"].strip(), comparison.strip() if isinstance(comparison, str) else "")
    match = _ANSWER_KEY.search(reply)
    if data is None and match:  # cut before its end (max_tokens)
        answer, _ = json_string_prefix(reply[match.end() :])
        head = re.search(r'"comparison"\s*:\s*"', reply)
        comparison = json_string_prefix(reply[head.end() :])[0] if head else ""
        return ParsedFusion(answer.strip(), comparison.strip(), ("unterminated_json",))
    return None


def parse_fusion(reply: str) -> ParsedFusion:
    """Split a fusor reply into (answer, analysis, flags); see the module docstring for the rules."""
    if reply.lstrip().startswith("{") and (parsed := _parse_json_reply(reply.strip())) is not None:
        return parsed
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


@register("fusion", uses=["fusor"])
@dataclass(frozen=True)
class Fusion:
    """Fuse the pool with ``fusor``. ``seed`` fixes the presentation order; ``max_tokens`` caps the
    fusor's reply (None: :func:`fusor_budget`)."""

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
        budget = fusor_budget(self.max_tokens, candidates)
        params = Params(self.temperature, max_tokens=budget, seed=self.seed, output_format=fusion_format(budget))
        fusor_request = request.with_messages(messages, params)
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
        decision = self.decide(reply.text, reply.finish_reason, generation.usage, order, candidates)
        return await self.reask_if_needed(decision, fusor_request, reply.text, order, candidates)

    async def reask_if_needed(
        self,
        decision: Aggregation,
        fusor_request: Request,
        reply: str,
        order: list[int],
        candidates: Sequence[Candidate],
    ) -> Aggregation:
        """The cheap second step (module docstring) when the reply had no brackets or no answer."""
        if "missing_brackets" not in decision.flags and "empty_fusion" not in decision.flags:
            return decision
        language = target_language(fusor_request.last_user_text, fusor_request.language)
        follow_up = REASK_TEMPLATE.substitute(language=language or UNKNOWN_LANGUAGE).strip()
        messages = [*fusor_request.messages, {"role": "assistant", "content": reply},
                    {"role": "user", "content": follow_up}]  # fmt: skip
        again = await self.fusor.generate(
            fusor_request.with_messages(messages, fusor_request.params.replace(output_format=ANSWER_FORMAT)), n=1
        )
        answer = again.candidates[0]
        usage = {"fusion": decision.usage["fusion"] + again.usage}
        parsed = parse_fusion(answer.text)
        if parsed.text and not {"missing_brackets", "unbalanced_brackets"} & set(parsed.flags):
            flags = ["reasked", *(["fusor_truncated"] if answer.finish_reason == "length" else [])]
            first = parse_fusion(reply)
            return replace(decision, text=parsed.text, chosen=None, analysis=first.analysis or reply.strip() or None,
                           flags=tuple(flags), usage=usage,
                           extra={**decision.extra, "raw_reply": reply, "reask_reply": answer.text})  # fmt: skip
        return replace(decision, flags=(*decision.flags, "reask_failed"), usage=usage,
                       extra={**decision.extra, "reask_reply": answer.text})  # fmt: skip

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
        if not answer.emitted:  # nothing streamed yet: a re-ask may still find the answer
            decision = await self.reask_if_needed(decision, fusor_request, answer.text, order, candidates)
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
    parsed once complete. A reply that opens with ``{`` (the JSON schema) streams the decoded ``answer``
    string as it arrives. The concatenated output always equals ``parse_fusion(text).text`` or a prefix
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
        if self.text.lstrip().startswith("{"):
            return self._certain_json()
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

    def _certain_json(self) -> str:
        """A JSON reply: the decoded ``answer`` string so far, without trailing white space."""
        match = _ANSWER_KEY.search(self.text)
        if match is None:
            return ""
        decoded, _closed = json_string_prefix(self.text[match.end() :])
        return decoded.strip()
