"""Final-answer extraction: find the answer a model committed to and write it in one canonical form.

Used by majority vote and by answer-accuracy evaluation, so it is pure (no state, no I/O) and
deterministic. :func:`extract_answer` looks for, in this order of precedence:

1. the last ``\\boxed{...}`` (nested braces allowed; ``\\fbox`` too);
2. the last GSM8K-style ``#### X`` line;
3. the last "the (final) answer is X" phrase or an equivalent (``_ANSWER_PHRASES``: en, fr, de,
   es, it, pt, ru, ja, zh, ko, ar, hi), X being the rest of that sentence;
4. a multiple-choice letter (``_LETTER_PATTERNS``: "the correct option is C", a line holding only
   "**C**" or "(C)"...);
5. the last number anywhere in the text.

Normalization (:func:`normalize_number`): any Unicode decimal digit (Arabic-Indic, Devanagari,
full-width...) becomes ASCII; thousands separators go ("1,234", "1.234.567", "1 234" -> "1234");
a comma is a decimal mark only when it cannot be a thousands separator ("3,5" -> "3.5", "1.234,5" ->
"1234.5", but "1,234" -> "1234"); a lone dot is always a decimal mark ("1.234" stays 1.234, English
style); currency signs and units are dropped; "5.0" -> "5", "-3" stays negative, "1/2" stays a
fraction. Multiple-choice letters come back upper case ("(b)" -> "B"). Short free-text answers (a
boxed word, "the answer is Paris") come back lower-cased with markup and trailing punctuation removed.
Numbers written in words ("forty-two", "四十二") are not understood.

Bounds: extraction reads at most the last :data:`MAX_EXAMINED_CHARS` characters of a text
(:func:`examined_tail`; final answers come at the end) in time linear in them: braces are matched
in one pass with a stack, an answer phrase's clause is read up to its sentence end and at most
``_MAX_CLAUSE_CHARS``, and no pattern backtracks more than linearly. So a text of any length and
content (20,000 unclosed ``\\boxed{``, a megabyte of digits) is read in milliseconds.
"""

from __future__ import annotations

import bisect
import itertools
import re
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator

__all__ = [
    "MAX_EXAMINED_CHARS",
    "examined_tail",
    "explicit_answer",
    "extract_answer",
    "majority_answer",
    "normalize_number",
]

MAX_EXAMINED_CHARS = 8_000
"""Extraction reads only the last this-many characters of a text (see :func:`examined_tail`)."""

# Bidirectional and zero-width marks (common around numbers in Arabic text) carry no meaning here.
# Full-width forms are folded to ASCII first, so later patterns only need ASCII punctuation.
_INVISIBLE = dict.fromkeys(
    map(ord, "\u200b\u200c\u200d\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")
)
_CHAR_MAP = {
    ord("\u2212"): "-",  # minus sign
    ord("\u066b"): ".",  # Arabic decimal separator
    ord("\u066c"): ",",  # Arabic thousands separator
    **{code: chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F)},  # full-width ASCII forms
    **_INVISIBLE,
}

# A number: sign, then one of the grouping styles, then an optional "/denominator". Each form refuses
# to stop right before another digit group so that "1,2,3" or "12.5.3" are not half-read.
_END = r"(?![.,]?\d)"
_NUMBER = re.compile(
    rf"""
    (?=[-\d])                                        # a quick test first: a sign or a digit
    (?:(?<![A-Za-z0-9.,\-])-)?                       # a sign, not a hyphen inside a word or range
    (?<![A-Za-z0-9.,])                               # not the tail of a word or of another number
    (?:
        \d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?{_END}       # 1,234,567.89
      | \d{{1,3}}(?:\.\d{{3}})+,\d+{_END}            # 1.234.567,89
      | \d{{1,3}}(?:\.\d{{3}}){{2,}}{_END}           # 1.234.567
      | \d{{1,3}}(?:[ \u00a0\u202f\u2009]\d{{3}})+(?:[.,]\d+)?{_END}  # 1 234 567,89
      | \d+(?:[.,]\d+)?{_END}                        # 1234.5 or 1234,5
    )
    (?:/\d+{_END})?                                  # a fraction's denominator
    """,
    re.VERBOSE,
)
_SPACES = re.compile(r"[ \u00a0\u202f\u2009]")

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE = re.compile(r"[{}]")
_WHITESPACE = re.compile(r"\s")
_SPACE_RUN = re.compile(r"\s*")
_HASHES = re.compile(r"^[ \t]*####[ \t]*(.+)$", re.MULTILINE)

# Phrases after which the final answer follows (case-insensitive). Latin-script phrases must start
# a word; CJK ones cannot (no spaces).
_ANSWER_PHRASES: tuple[tuple[str, str], ...] = (
    ("en", r"(?<![A-Za-z])(?:final\s+|correct\s+|right\s+)?answer\s*(?:is\b|would\s+be\b|will\s+be\b|[:=])"),
    ("fr", r"(?<![A-Za-z])(?:bonne\s+)?réponse(?:\s+finale|\s+correcte)?\s*(?:est\b|[:=])"),
    ("de", r"(?<![A-Za-z])(?:endgültige\s+|richtige\s+)?(?:antwort|lösung|ergebnis)\s*(?:lautet\b|ist\b|[:=])"),
    ("es", r"(?<![A-Za-z])respuesta(?:\s+final|\s+correcta)?\s*(?:es\b|[:=])"),
    ("it", r"(?<![A-Za-z])risposta(?:\s+finale|\s+corretta)?\s*(?:è|e'|[:=])"),
    ("pt", r"(?<![A-Za-z])resposta(?:\s+final|\s+correta)?\s*(?:é|[:=])"),
    (
        "ru",
        r"(?<![\u0400-\u04ff])(?:окончательный\s+|итоговый\s+|правильный\s+)?ответ\s*(?:равен|будет|[:=\u2014\u2013-])",
    ),
    ("ja", r"(?:最終的な)?(?:答え|解答|正解)\s*(?:は|[:=])"),
    ("zh", r"(?:最终)?(?:答案|答)\s*(?:是|为|為|[:=])"),
    ("ko", r"(?:최종\s*)?(?:정답|답)\s*(?:은|는|[:=])"),
    ("ar", r"(?:الإجابة|الاجابة|الجواب)(?:\s+النهائية|\s+الصحيحة)?\s*(?:هي|هو|[:=])"),
    ("hi", r"(?:अंतिम\s+)?(?:उत्तर|जवाब)\s*(?:है|[:=])"),
)
# Every phrase above starts with one of these letters (in any case): one quick test per position
# before the alternation (4x faster; a test checks that the matches are the same).
_PHRASE_FIRST_LETTERS = "abceflr" + "иоп" + "最答解正" + "최정답" + "ا" + "अउज"
_PHRASE = re.compile(
    f"(?=[{_PHRASE_FIRST_LETTERS}])(?:" + "|".join(f"(?:{p})" for _, p in _ANSWER_PHRASES) + r"\s*:?)",
    re.IGNORECASE,
)

# Multiple-choice letters that are not introduced by an answer phrase (those are handled above).
# A bare letter must be upper case; a lower-case one only counts inside parentheses: "(c)".
_CHOICE = r"(?:\(([A-Ja-j])\)|([A-J])(?![A-Za-z]))"
# (``\s*(?::\s*)?``, not ``\s*:?\s*``: two ``\s*`` in a row backtrack quadratically over many spaces.)
_LETTER_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(rf"(?i:correct|right|best)\s+(?i:option|choice)\s+(?i:is|would\s+be)\s*(?::\s*)?{_CHOICE}"),
    re.compile(rf"(?<![A-Za-z])(?i:option|choice)\s*{_CHOICE}\s+(?i:is\s+(?:the\s+)?(?:correct|right|answer))"),
    re.compile(r"^[ \t*_>(\[]*([A-J])()[ \t*_)\].:]*$", re.MULTILINE),  # a line holding only "**C**", "(C)", "C."
)
# A letter answer at the start of a fragment: "(b)", "[C]", "B.", "B) Paris", "option B"; not "A bit".
_LETTER = re.compile(r"^(?:(?i:option|choice|letter)\s+)?(?:\(([A-Ja-j])\)|\[([A-J])\]|([A-J])(?=$|[.,;:)\]]))")
_MARKUP = re.compile(r"\*\*|__|`|\$|[{}]|\\[()\[\]]|\\[,;!: ]|\\(?:left|right)\b")
_LATEX_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf|operatorname)\s*\{([^{}]*)\}")
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_SENTENCE_END = re.compile(r"[.!?\u3002](?:\s|$)|\n")
_MATH_RUN = re.compile(r"^[\s\d.,+\-*/\u00d7x\u00f7()=$€£¥₹]*")
_TRAILING = " \t\n.,;:!?\u3002\u3001"
_CURRENCY = "$€£¥₹"
_MAX_CLAUSE_WORDS = 8
_MAX_FREE_TEXT_WORDS = 5
# An answer phrase's clause is read up to its sentence end, and at most this far: an answer is short,
# and a text repeating "the answer is" without a full stop must not make every clause the whole text.
_MAX_CLAUSE_CHARS = 1_000


def examined_tail(text: str) -> str:
    """The part of ``text`` that extraction reads: all of it up to :data:`MAX_EXAMINED_CHARS`
    characters, else its last ``MAX_EXAMINED_CHARS`` characters from their first whitespace on, so
    that no word or number is read cut in half (a tail without whitespace gives ``""``)."""
    if len(text) <= MAX_EXAMINED_CHARS:
        return text
    tail = text[-MAX_EXAMINED_CHARS:]
    if text[-MAX_EXAMINED_CHARS - 1].isspace():
        return tail
    space = _WHITESPACE.search(tail)
    return tail[space.start() :] if space else ""


def _fold_chars(text: str) -> str:
    """Map every Unicode decimal digit to ASCII and fold full-width forms, minus signs and marks."""
    text = text.translate(_CHAR_MAP)
    if text.isascii():
        return text
    return "".join(
        str(unicodedata.decimal(ch)) if not ch.isascii() and unicodedata.category(ch) == "Nd" else ch for ch in text
    )


def _canonical(token: str) -> str:
    """Canonical form of one number token matched by ``_NUMBER`` (already ASCII)."""
    if "/" in token:
        numerator, _, denominator = token.partition("/")
        return f"{_canonical(numerator)}/{_canonical(denominator)}"
    sign = "-" if token.startswith("-") else ""
    body = _SPACES.sub("", token.lstrip("-"))
    if "," in body and "." in body:
        decimal_mark = "," if body.rfind(",") > body.rfind(".") else "."
        body = body.replace("." if decimal_mark == "," else ",", "").replace(",", ".")
    elif "," in body:
        groups = body.split(",")
        thousands = len(groups) > 2 or len(groups[1]) == 3
        body = body.replace(",", "") if thousands else body.replace(",", ".")
    elif body.count(".") > 1:
        body = body.replace(".", "")
    whole, _, fraction = body.partition(".")
    whole = whole.lstrip("0") or "0"
    fraction = fraction.rstrip("0")
    number = f"{whole}.{fraction}" if fraction else whole
    return "0" if number == "0" else sign + number


def _numbers(text: str) -> list[str]:
    return [_canonical(m.group()) for m in _NUMBER.finditer(text)]


def normalize_number(text: str) -> str | None:
    """The canonical form of the one number written in ``text``, or None.

    ``text`` is a short answer such as "$1,234.50", "٣٥", "1 234,5 €", "-3", "1/2" or "5.0 kg":
    currency signs, units and other words around the number are ignored. Returns None when ``text``
    holds no number or more than one (e.g. "2 or 3"), since then there is no single value to report.
    """
    numbers = _numbers(_fold_chars(text))
    return numbers[0] if len(numbers) == 1 else None


def _clean(fragment: str) -> str:
    fragment = _LATEX_FRAC.sub(r"\1/\2", fragment)
    for _ in range(3):  # \text{\textbf{x}} unwraps in a few passes
        fragment = _LATEX_WRAP.sub(r"\1", fragment)
    fragment = _MARKUP.sub("", fragment)
    return " ".join(fragment.split()).strip(_TRAILING)


def _letter(fragment: str) -> str | None:
    match = _LETTER.match(fragment)
    if not match:
        return None
    return next(g for g in match.groups() if g).upper()


def _answer_in_clause(raw: str, *, boxed: bool, allow_text: bool = True) -> str | None:
    """The answer stated by a fragment that follows an answer marker (a box, ``####``, a phrase).

    A box holds nothing but the answer. After a phrase, the fragment is the rest of a sentence: a
    number counts when the sentence is short or opens with it, so "the answer is that we first add
    3 and 4 ..." is no answer statement; free text counts when it is a few words and ``allow_text``.
    """
    fragment = _clean(raw)
    letter = _letter(fragment)
    if letter:
        return letter
    run = _MATH_RUN.match(fragment)
    if run and "=" in run.group():  # "10 - 2 = 8": the value after the last "="
        tail = _numbers(run.group().rsplit("=", 1)[1])
        if tail:
            return tail[-1]
    numbers = list(itertools.islice(_NUMBER.finditer(fragment), 2))  # the first, and whether there are more
    first = _canonical(numbers[0].group()) if numbers else None
    if boxed:
        return first if len(numbers) == 1 else fragment.lower() or None
    if first:
        opens_with_number = _NUMBER.match(fragment.lstrip(_CURRENCY + " ")) is not None
        return first if opens_with_number or len(fragment.split()) <= _MAX_CLAUSE_WORDS else None
    if allow_text and fragment and len(fragment.split()) <= _MAX_FREE_TEXT_WORDS:
        return fragment.lower()
    return None


def _matching_braces(text: str) -> dict[int, int]:
    """Position of each ``{`` -> position of the ``}`` that closes it, in one pass with a stack
    (a ``}`` with nothing open is ignored; an unclosed ``{`` has no entry)."""
    open_braces: list[int] = []
    closing: dict[int, int] = {}
    for brace in _BRACE.finditer(text):
        if brace.group() == "{":
            open_braces.append(brace.start())
        elif open_braces:
            closing[open_braces.pop()] = brace.start()
    return closing


def _boxed_contents(text: str) -> Iterator[str]:
    """The contents of the closed boxes, the last opened first (cut lazily: nested boxes overlap)."""
    boxes = [match.end() for match in _BOXED.finditer(text)]
    if not boxes:
        return
    closing = _matching_braces(text)
    for start in reversed(boxes):
        end = closing.get(start - 1)
        if end is not None:
            yield text[start:end]


def _from_boxed(text: str) -> str | None:
    for content in _boxed_contents(text):
        answer = _answer_in_clause(content, boxed=True)
        if answer:
            return answer
    return None


def _from_hashes(text: str) -> str | None:
    for match in reversed(list(_HASHES.finditer(text))):
        fragment = _clean(match.group(1))
        letter = _letter(fragment)
        if letter and len(fragment) <= 3:
            return letter
        number = normalize_number(fragment)
        # a markdown heading ("#### 2. Plan the trip") is no answer: allow one short unit word at most
        leftover = _NUMBER.sub("", fragment).strip(_TRAILING + _CURRENCY + "%")
        if number and len(leftover.split()) <= 1 and len(leftover) <= 12:
            return number
    return None


def _from_phrase(text: str) -> str | None:
    phrases = list(_PHRASE.finditer(text))
    if not phrases:
        return None
    # A clause runs from the first non-space after its phrase to the next sentence end. A sentence end
    # is one character, or two with whitespace second, so the first one at or after a non-space is the
    # first at or after it among those found in one pass over the text.
    sentence_ends = [end.start() for end in _SENTENCE_END.finditer(text)]
    last_number_end = max((number.end() for number in _NUMBER.finditer(text)), default=-1)
    for match in reversed(phrases):
        start = _skip_spaces(text, match.end())
        following = bisect.bisect_left(sentence_ends, start)
        end = sentence_ends[following] if following < len(sentence_ends) else len(text)
        clause = text[start : min(end, start + _MAX_CLAUSE_CHARS)]
        # "the answer is not obvious ... 3 + 4 = 7": free text only when no number follows
        answer = _answer_in_clause(clause, boxed=False, allow_text=last_number_end <= match.end())
        if answer:
            return answer
    return None


def _skip_spaces(text: str, pos: int) -> int:
    spaces = _SPACE_RUN.match(text, pos)
    return spaces.end() if spaces else pos


def _from_letter(text: str) -> str | None:
    best: tuple[int, str] | None = None
    for pattern in _LETTER_PATTERNS:
        for match in pattern.finditer(text):
            if best is None or match.start() > best[0]:
                best = (match.start(), next(g for g in match.groups() if g).upper())
    return best[1] if best else None


def _from_last_number(text: str) -> str | None:
    last = deque(_NUMBER.finditer(text), maxlen=1)  # only the last one is normalized
    return _canonical(last[0].group()) if last else None


_EXTRACTORS = (_from_boxed, _from_hashes, _from_phrase, _from_letter, _from_last_number)


def _first_answer(text: str, extractors: tuple[Callable[[str], str | None], ...]) -> str | None:
    folded = _fold_chars(examined_tail(text))
    for extractor in extractors:
        answer = extractor(folded)
        if answer:
            return answer
    return None


def extract_answer(text: str) -> str | None:
    """The normalized final answer stated in ``text``, or None if it states none.

    See the module docstring for the order of precedence and the normalization. Examples::

        >>> extract_answer("... so she earns \\\\boxed{18} dollars")
        '18'
        >>> extract_answer("Die Antwort lautet 3,5 kg.")
        '3.5'
        >>> extract_answer("الإجابة هي ٤٢")
        '42'
        >>> extract_answer("The correct option is (c).")
        'C'
        >>> extract_answer("I cannot tell.") is None
        True

    Only the end of a long text is read: :func:`examined_tail`.
    """
    return _first_answer(text, _EXTRACTORS)


def explicit_answer(text: str) -> str | None:
    """The answer ``text`` marks as final (rules 1-4: ``\\boxed{}``, ``#### X``, an answer phrase, a
    choice letter), without the last-number fallback; None when nothing is marked."""
    return _first_answer(text, _EXTRACTORS[:-1])


def majority_answer(answers: Iterable[str | None]) -> str | None:
    """The majority rule of ``vote`` (and of accuracy's ``maj@k``): the most frequent answer, a tie going
    to the answer that occurs first in ``answers`` (pool order); None (no answer) casts no vote, and
    None comes back when nothing does.

        >>> majority_answer(["3", None, "4", "4", "3"])
        '3'
    """
    counts: dict[str, int] = {}
    for answer in answers:
        if answer is not None:
            counts[answer] = counts.get(answer, 0) + 1
    # dicts keep first-occurrence order and max() returns the first maximal key: ties go to the earliest
    return max(counts, key=counts.__getitem__, default=None)
