from __future__ import annotations

import pytest

from fusion_of_n.language import detect_language, language_code, language_name, target_language


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Wie viele Äpfel hat Anna, wenn sie drei verschenkt?", "de"),
        ("Quelle est la capitale de la France ?", "fr"),
        ("ما هي عاصمة فرنسا؟ أجب بجملة واحدة.", "ar"),
        ("東京の人口は何人ですか", "ja"),
        ("北京是中国的首都吗？请简单回答。", "zh"),
        ("Una tienda vende 12 manzanas. ¿Cuántas quedan?", "es"),
    ],
)
def test_detects_the_prompt_language(text: str, code: str) -> None:
    assert detect_language(text) == code


@pytest.mark.parametrize("text", ["2+2", "?!", ""])
def test_detection_is_none_when_there_is_nothing_to_go_on(text: str) -> None:
    assert detect_language(text) is None


@pytest.mark.parametrize(
    ("value", "code", "name"),
    [("de", "de", "German"), ("deu", "de", "German"), ("German", "de", "German"), ("pt-BR", "pt", "Portuguese")],
)
def test_language_codes_and_names(value: str, code: str, name: str) -> None:
    assert language_code(value) == code
    assert language_name(value) == name


def test_target_language_prefers_explicit_then_translation_target_then_detection() -> None:
    assert target_language("Translate into German: The weather is nice.", "fr") == "French"
    assert target_language("Translate into German: The weather is nice.") == "German"
    assert target_language("Please translate this sentence to Japanese: good morning") == "Japanese"
    assert target_language("Explique en trois phrases pourquoi le ciel est bleu.") == "French"
    assert target_language("2+2") is None
