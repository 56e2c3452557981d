from __future__ import annotations

import pytest

from fusion_of_n.aggregators.base import AggregatorOptions, build_aggregator
from fusion_of_n.aggregators.fusion import (
    MIN_FUSOR_BUDGET,
    Fusion,
    parse_fusion,
    presentation_order,
    render_fusion_prompt,
)
from fusion_of_n.errors import ConfigError, UpstreamHTTPError
from fusion_of_n.testing import FakeBackend, HTTPFault, Reply
from fusion_of_n.types import Candidate, Params, Request

PARSE_TABLE = [
    # reply, expected text, expected analysis, expected flags
    ("Comparison: A is good.\nAnswer: [[Hello world]]", "Hello world", "A is good.", ()),
    ("Comparison: fine\n\n[[ x = [[1, 2], [3]] ]]", "x = [[1, 2], [3]]", "fine", ()),
    ("Comparison: 1 is wrong.\n[[Das Wetter ist schön.]]\n", "Das Wetter ist schön.", "1 is wrong.", ()),
    ("[[only the answer]]", "only the answer", "", ()),
    ("Comparison: cut [[ the answer was cut", "the answer was cut", "cut", ("unbalanced_brackets",)),
    ("Answer: closing only ]]", "closing only", "", ("unbalanced_brackets",)),
    ("Comparison: both ok.\n\nFinal answer: 42", "42", "both ok.", ("missing_brackets",)),
    ("Comparison: ok.\n**Final response:** Bonjour", "Bonjour", "ok.", ("missing_brackets",)),
    (
        "Comparison: c1 good.\n\nCandidate 2 is bad.\n\nFused paragraph.\n\nMore.",
        "Fused paragraph.\n\nMore.",
        "c1 good.\n\nCandidate 2 is bad.",
        ("missing_brackets",),
    ),
    (
        "Comparison: c1 good.\n\nCandidate 2 is bad.",
        "Comparison: c1 good.\n\nCandidate 2 is bad.",
        "",
        ("missing_brackets",),
    ),
    ("Comparison: 1 is best.\n\nFinal response:\n[Die Antwort.]", "Die Antwort.", "1 is best.", ("missing_brackets",)),
    (
        "Comparison\n\n2 is odd.\n\nFinal response\n\nLe ciel est bleu.",
        "Le ciel est bleu.",
        "2 is odd.",
        ("missing_brackets",),
    ),
    ("Answer: [a] and [b]", "[a] and [b]", "", ("missing_brackets",)),
    (
        "Comparison:\n1 is odd.\n\nFinal response:\nDas Wetter ist schön. [[Comparison: 1 is odd.]]",
        "Das Wetter ist schön.",
        "1 is odd.",
        ("bracketed_comparison",),
    ),
    ("plain text only", "plain text only", "", ("missing_brackets",)),
    ("", "", "", ("missing_brackets",)),
]


@pytest.mark.parametrize(("reply", "text", "analysis", "flags"), PARSE_TABLE)
def test_parse_fusion_table(reply: str, text: str, analysis: str, flags: tuple[str, ...]) -> None:
    parsed = parse_fusion(reply)
    assert (parsed.text, parsed.analysis, parsed.flags) == (text, analysis, flags)


def test_fusion_prompt_golden(golden) -> None:
    prompt = render_fusion_prompt(
        "Translate into German: The weather is nice today.",
        ["Das Wetter ist heute schön.", "Heute ist das Wetter gut.", "The weather is nice."],
        "German",
    )
    golden("fusion_prompt.txt", prompt)


def test_fusion_prompt_without_language_names_the_instruction_language() -> None:
    prompt = render_fusion_prompt("2+2?", ["4"], None)
    assert "the instruction's language" in prompt and "$" not in prompt


def test_presentation_order_is_a_seeded_permutation() -> None:
    assert sorted(presentation_order(7, 3)) == list(range(7))
    assert presentation_order(7, 3) == presentation_order(7, 3)
    assert len({tuple(presentation_order(7, s)) for s in range(10)}) > 1


def _candidates(*texts: str, start: int = 0) -> list[Candidate]:
    return [Candidate(t, "m1", "stop", index=start + i) for i, t in enumerate(texts)]


async def test_fusion_sends_every_candidate_and_the_question_and_returns_bracketed_text() -> None:
    fusor = FakeBackend(["Comparison: 2 has a typo.\nAnswer: [[Das Wetter ist heute schön.]]"], name="fusor")
    request = Request.from_prompt("Translate into German: The weather is nice today.", params=Params(seed=5))
    pool = _candidates("Das Wetter ist heute schön.", "Das Weter ist schön.", "Heute schönes Wetter.")
    result = await Fusion(fusor).aggregate(request, pool)
    assert result.text == "Das Wetter ist heute schön."
    assert result.analysis == "2 has a typo."
    assert result.flags == ()
    assert result.chosen is None
    turn = fusor.calls[0].request.messages[-1]["content"]
    assert "The weather is nice today." in turn and "German" in turn
    for candidate in pool:
        assert candidate.text in turn
    assert "m1" not in turn  # anonymous: no model names
    order = result.extra["presentation_order"]
    assert sorted(order) == [0, 1, 2]
    positions = [turn.index(pool[i].text) for i in order]
    assert positions == sorted(positions)  # shown in the recorded order
    assert result.usage["fusion"].calls == 1


async def test_fusion_keeps_history_as_prefix_and_replaces_only_the_last_user_turn() -> None:
    fusor = FakeBackend(["[[ok]]"])
    history = (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 2+2?"},
    )
    await Fusion(fusor).aggregate(Request(history), _candidates("4", "5"))
    sent = fusor.calls[0].request.messages
    assert list(sent[:3]) == list(history[:3])
    assert sent[-1]["role"] == "user" and "What is 2+2?" in sent[-1]["content"]
    assert len(sent) == 4


async def test_fusion_without_brackets_still_answers_and_is_flagged() -> None:
    fusor = FakeBackend(["Comparison: both fine.\n\nFinal answer: 4"])
    result = await Fusion(fusor).aggregate(Request.from_prompt("2+2?"), _candidates("4", "four"))
    assert result.text == "4"
    assert "missing_brackets" in result.flags


async def test_empty_fusion_falls_back_to_first_usable_candidate_flagged() -> None:
    fusor = FakeBackend([Reply("", finish_reason="stop")])
    result = await Fusion(fusor).aggregate(Request.from_prompt("q"), _candidates("a", "b", start=3))
    assert result.text == "a" and result.chosen == 3
    assert {"empty_fusion", "fell_back_to_candidate"} <= set(result.flags)


async def test_truncated_fusor_reply_is_flagged() -> None:
    fusor = FakeBackend([Reply("Comparison: x [[ partial", finish_reason="length")])
    result = await Fusion(fusor).aggregate(Request.from_prompt("q"), _candidates("a"))
    assert result.text == "partial"
    assert {"unbalanced_brackets", "fusor_truncated"} <= set(result.flags)


async def test_fusor_upstream_error_propagates_and_never_becomes_an_answer() -> None:
    fusor = FakeBackend([HTTPFault(503, "overloaded")])
    with pytest.raises(UpstreamHTTPError):
        await Fusion(fusor).aggregate(Request.from_prompt("q"), _candidates("a"))


async def test_the_clients_sampling_params_never_reach_the_fusor() -> None:
    """stop/seed/top_p/max_tokens of a request are for the candidates: a client's stop "\n" must not cut
    the fusor before its [[ ]] answer, and its max_tokens does not size the fusor's budget."""
    fusor = FakeBackend(["[[x]]"])
    client = Params(max_tokens=50, temperature=0.9, top_p=0.5, seed=7, stop=("\n",), top_logprobs=3)
    pool = [Candidate("a", "m", index=0, completion_tokens=300)]
    await Fusion(fusor).aggregate(Request.from_prompt("q", params=client), pool)
    params = fusor.calls[0].request.params
    assert (params.temperature, params.top_p, params.seed, params.stop, params.top_logprobs) == (
        0.0,
        None,
        None,
        None,
        None,
    )
    assert params.max_tokens == 600  # from the pool, not the client's 50
    assert params.output_format is not None and params.output_format.name == "fusion"


async def test_the_pipeline_sizes_the_fusor_from_its_settings() -> None:
    from fusion_of_n.api import Pipeline
    from fusion_of_n.config import PipelineSettings

    configured = Pipeline(PipelineSettings.of(models=("fake:echo",), max_tokens=40))
    explicit = Pipeline(PipelineSettings.of(models=("fake:echo",), max_tokens=40, fusor_max_tokens=99))
    free = Pipeline(PipelineSettings.of(models=("fake:echo",)))
    assert (configured.fusor_max_tokens(), explicit.fusor_max_tokens(), free.fusor_max_tokens()) == (80, 99, None)


async def test_fusor_budget_follows_the_longest_candidate_and_is_never_unbounded() -> None:
    pool = [Candidate("a", "m", index=0, completion_tokens=300), Candidate("b", "m", index=1, completion_tokens=900)]
    short = [Candidate("a", "m", index=0, completion_tokens=10)]
    uncounted = [Candidate("a" * 1000, "m", index=0)]
    budgets = []
    for candidates in (pool, short, uncounted):
        fusor = FakeBackend(["[[x]]"])
        await Fusion(fusor).aggregate(Request.from_prompt("q"), candidates)
        budgets.append(fusor.calls[0].request.params.max_tokens)
    assert budgets == [1800, MIN_FUSOR_BUDGET, 2000]  # uncounted: characters bound the tokens
    fusor = FakeBackend(["[[x]]"])
    await Fusion(fusor, max_tokens=77).aggregate(Request.from_prompt("q", params=Params(max_tokens=50)), pool)
    assert fusor.calls[0].request.params.max_tokens == 77  # --fusor-max-tokens wins


async def test_explicit_language_overrides_detection() -> None:
    fusor = FakeBackend(["[[x]]"])
    await Fusion(fusor).aggregate(Request.from_prompt("What is 2+2?", language="ja"), _candidates("4"))
    assert "naturally in Japanese" in fusor.calls[0].request.messages[-1]["content"]


def test_fusion_without_fusor_is_a_config_error_naming_the_flag() -> None:
    with pytest.raises(ConfigError, match="--fusor"):
        build_aggregator("fusion", AggregatorOptions())
