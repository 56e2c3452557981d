"""Which language an answer should be written in (the fusor prompt's target-language slot).

Detection is offline (py3langid's bundled model, loaded once on first use: ~3 s). A prompt that asks
for a translation ("Translate into German: ...") targets the named language, not the prompt's own.
"""

from __future__ import annotations

import functools
import re
from typing import Any

NAMES = {
    "af": "Afrikaans",
    "am": "Amharic",
    "ar": "Arabic",
    "az": "Azerbaijani",
    "be": "Belarusian",
    "bg": "Bulgarian",
    "bn": "Bengali",
    "bs": "Bosnian",
    "ca": "Catalan",
    "cs": "Czech",
    "cy": "Welsh",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "eo": "Esperanto",
    "es": "Spanish",
    "et": "Estonian",
    "eu": "Basque",
    "fa": "Persian",
    "fi": "Finnish",
    "fr": "French",
    "ga": "Irish",
    "gl": "Galician",
    "gu": "Gujarati",
    "ha": "Hausa",
    "he": "Hebrew",
    "hi": "Hindi",
    "hr": "Croatian",
    "hu": "Hungarian",
    "hy": "Armenian",
    "id": "Indonesian",
    "ig": "Igbo",
    "is": "Icelandic",
    "it": "Italian",
    "ja": "Japanese",
    "jv": "Javanese",
    "ka": "Georgian",
    "kk": "Kazakh",
    "km": "Khmer",
    "kn": "Kannada",
    "ko": "Korean",
    "ku": "Kurdish",
    "ky": "Kyrgyz",
    "la": "Latin",
    "lo": "Lao",
    "lt": "Lithuanian",
    "lv": "Latvian",
    "mg": "Malagasy",
    "mk": "Macedonian",
    "ml": "Malayalam",
    "mn": "Mongolian",
    "mr": "Marathi",
    "ms": "Malay",
    "mt": "Maltese",
    "my": "Burmese",
    "ne": "Nepali",
    "nl": "Dutch",
    "no": "Norwegian",
    "pa": "Punjabi",
    "pl": "Polish",
    "ps": "Pashto",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "si": "Sinhala",
    "sk": "Slovak",
    "sl": "Slovenian",
    "so": "Somali",
    "sq": "Albanian",
    "sr": "Serbian",
    "sv": "Swedish",
    "sw": "Swahili",
    "ta": "Tamil",
    "te": "Telugu",
    "th": "Thai",
    "tl": "Tagalog",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "ur": "Urdu",
    "uz": "Uzbek",
    "vi": "Vietnamese",
    "xh": "Xhosa",
    "yo": "Yoruba",
    "zh": "Chinese",
    "zu": "Zulu",
}
# ISO 639-3 codes used by datasets (e.g. mgsm-symbolic's "deu") -> 639-1
ISO3 = {
    "ara": "ar",
    "ben": "bn",
    "dan": "da",
    "deu": "de",
    "eng": "en",
    "est": "et",
    "fra": "fr",
    "hin": "hi",
    "isl": "is",
    "ita": "it",
    "jpn": "ja",
    "kor": "ko",
    "mar": "mr",
    "nld": "nl",
    "pan": "pa",
    "por": "pt",
    "rus": "ru",
    "spa": "es",
    "swa": "sw",
    "swe": "sv",
    "tel": "te",
    "tha": "th",
    "ukr": "uk",
    "urd": "ur",
    "zho": "zh",
    "fas": "fa",
    "tur": "tr",
    "vie": "vi",
    "pol": "pl",
    "ces": "cs",
    "ell": "el",
    "heb": "he",
}
_BY_NAME = {name.lower(): code for code, name in NAMES.items()}
_TRANSLATE = re.compile(r"\btranslat\w*\b[^\n]{0,80}?\b(?:into|to)\s+(?P<lang>[A-Z][a-z]+)\b", re.IGNORECASE)
MIN_CONFIDENCE = 0.5


def language_code(value: str) -> str | None:
    """'de', 'deu', 'German' or 'german' -> 'de'; None when unknown."""
    key = value.strip().lower().replace("_", "-").split("-")[0]
    if key in NAMES:
        return key
    if key in ISO3:
        return ISO3[key]
    return _BY_NAME.get(value.strip().lower())


def language_name(value: str) -> str:
    """A readable name for a code or name; unknown values pass through unchanged."""
    code = language_code(value)
    return NAMES[code] if code else value.strip()


@functools.lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code of ``text``'s language, or None when unsure (short or mixed text)."""
    letters = sum(ch.isalpha() for ch in text)
    if letters < 3:
        return None
    code, confidence = _identifier().classify(text)
    if code not in NAMES or confidence < MIN_CONFIDENCE:
        return None
    return str(code)


def target_language(instruction: str, explicit: str | None = None) -> str | None:
    """The language an answer to ``instruction`` should be written in, as a name; None when unknown.

    Precedence: ``explicit`` (``--language``), then a translation target named in the instruction
    ("... into German"), then the detected language of the instruction.
    """
    if explicit:
        return language_name(explicit)
    match = _TRANSLATE.search(instruction)
    if match and language_code(match.group("lang")):
        return language_name(match.group("lang"))
    code = detect_language(instruction)
    return NAMES[code] if code else None
