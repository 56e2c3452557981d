"""Reward-model scorers (local Hugging Face and remote vLLM /pooling) and the scorer factory."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from local_app import serve

from fusion_of_n.errors import BackendError, ConfigError, MissingDependency, UpstreamHTTPError
from fusion_of_n.scorers.base import Scorer
from fusion_of_n.scorers.factory import create_scorer
from fusion_of_n.scorers.judge import LLMJudge
from fusion_of_n.scorers.reward import LocalRewardModel, RemoteRewardModel
from fusion_of_n.testing import FakeBackend
from fusion_of_n.types import Candidate, Request

REQUEST = Request.from_prompt("what is the capital of france")
REPLIES = ["paris is the capital of france", "the capital is lyon", "i do not know"]
WORDS = sorted({w for text in [*REPLIES, REQUEST.last_user_text, "user assistant :"] for w in text.split()})


def pool(texts: list[str]) -> list[Candidate]:
    return [Candidate(text, "gen", "stop", index=i) for i, text in enumerate(texts)]


# --- local reward model ------------------------------------------------------------------------


def build_tiny_reward_model(folder: Path, *, num_labels: int = 1, chat_template: str | None = None) -> None:
    """A randomly initialised 1-layer BERT classifier with a word-level tokenizer, saved to ``folder``."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=64,
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=num_labels,
        pad_token_id=0,
    )
    model = transformers.BertForSequenceClassification(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def direct_scores(folder: Path, encode) -> list[float]:
    """Each reply scored alone (no batching, no padding) straight through transformers."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    scores = []
    for reply in REPLIES:
        with torch.no_grad():
            logits = model(**encode(tokenizer, reply)).logits
        scores.append(float(logits[0, -1]))
    return scores


@pytest.mark.reward
async def test_local_reward_scores_equal_a_direct_forward_pass_of_the_text_pair(tmp_path):
    build_tiny_reward_model(tmp_path)
    expected = direct_scores(tmp_path, lambda tok, reply: tok(REQUEST.last_user_text, reply, return_tensors="pt"))
    scorer = LocalRewardModel(tmp_path, batch_size=2)
    assert isinstance(scorer, Scorer)
    scoring = await scorer.score(REQUEST, pool(REPLIES))
    await scorer.aclose()
    assert scoring.scores == pytest.approx(expected, abs=1e-5)
    assert len(set(expected)) == 3  # the check above compares three different numbers
    assert scoring.flags == ()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    input_tokens = sum(len(tokenizer(REQUEST.last_user_text, reply)["input_ids"]) for reply in REPLIES)
    assert scoring.usage.calls == 2  # batches of 2 and 1
    assert scoring.usage.prompt_tokens == input_tokens
    assert scoring.usage.completion_tokens == 0


@pytest.mark.reward
async def test_local_reward_uses_the_chat_template_and_the_last_label(tmp_path):
    template = "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}"
    build_tiny_reward_model(tmp_path, num_labels=2, chat_template=template)

    def encode(tokenizer, reply):
        chat = [{"role": "user", "content": REQUEST.last_user_text}, {"role": "assistant", "content": reply}]
        text = tokenizer.apply_chat_template(chat, tokenize=False)
        return tokenizer(text, add_special_tokens=False, return_tensors="pt")

    expected = direct_scores(tmp_path, encode)
    scoring = await LocalRewardModel(tmp_path).score(REQUEST, pool(REPLIES))
    assert scoring.scores == pytest.approx(expected, abs=1e-5)
    assert scoring.usage.calls == 1


@pytest.mark.reward
async def test_local_reward_truncates_inputs_to_max_length(tmp_path):
    build_tiny_reward_model(tmp_path)
    long_reply = " ".join(REPLIES * 20)  # about 200 words; the model has 64 positions
    scorer = LocalRewardModel(tmp_path, max_length=16)
    scoring = await scorer.score(REQUEST, pool([long_reply, "i do not know"]))
    assert all(isinstance(score, float) for score in scoring.scores)
    assert scoring.usage.prompt_tokens <= 2 * 16


@pytest.mark.reward
async def test_local_reward_truncates_to_the_model_length_by_default(tmp_path):
    build_tiny_reward_model(tmp_path)
    long_reply = " ".join(REPLIES * 20)
    scoring = await LocalRewardModel(tmp_path).score(REQUEST, pool([long_reply]))
    assert scoring.usage.prompt_tokens == 64


def test_local_reward_without_torch_names_the_install_command(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(MissingDependency, match=r"pip install 'fusion-of-n\[reward\]'"):
        LocalRewardModel(tmp_path)


@pytest.mark.reward
def test_local_reward_rejects_a_missing_folder(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    with pytest.raises(ConfigError, match="does not exist"):
        LocalRewardModel(tmp_path / "nope")


# --- remote reward model (vLLM /pooling) -------------------------------------------------------


class PoolingServer:
    """A vLLM-like /pooling endpoint on 127.0.0.1: the reward is the reply's word count."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.shape = "sequence"
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        if self.shape == "broken":
            return web.json_response({"data": []})
        if self.shape == "echo-key":  # a server that quotes the caller's credentials back
            return web.json_response({"data": [], "detail": f"seen {request.headers.get('Authorization')}"})
        if self.shape == "missing-model":
            return web.json_response({"error": {"message": "model not found"}}, status=404)
        reward = float(len(body["messages"][-1]["content"].split()))
        data: Any = [reward] if self.shape == "sequence" else [[0.0], [-1.0], [reward]]
        return web.json_response(
            {
                "id": "pool-1",
                "object": "list",
                "model": body["model"],
                "data": [{"index": 0, "object": "pooling", "data": data}],
                "usage": {"prompt_tokens": 11, "total_tokens": 11, "completion_tokens": 0},
            }
        )


@pytest.fixture
async def pooling_server() -> AsyncIterator[PoolingServer]:
    server = PoolingServer()
    async with serve(server.handle, "/pooling", "POST") as url:
        server.url = url
        yield server


async def test_remote_reward_posts_each_chat_with_the_reply_to_pooling(pooling_server):
    scorer = RemoteRewardModel(pooling_server.url, "rm-1")
    scoring = await scorer.score(REQUEST, pool(REPLIES))
    await scorer.aclose()
    assert scoring.scores == tuple(float(len(r.split())) for r in REPLIES)
    assert scoring.usage.calls == 3
    assert scoring.usage.prompt_tokens == 33
    assert len(pooling_server.bodies) == 3
    replies_sent = sorted(body["messages"][-1]["content"] for body in pooling_server.bodies)
    assert replies_sent == sorted(REPLIES)
    for body in pooling_server.bodies:
        assert body["model"] == "rm-1"
        assert body["use_activation"] is False
        assert body["messages"][0] == {"role": "user", "content": REQUEST.last_user_text}
        assert body["messages"][-1]["role"] == "assistant"


async def test_remote_reward_reads_the_last_token_of_a_token_level_reward(pooling_server):
    pooling_server.shape = "token"
    scorer = RemoteRewardModel(pooling_server.url + "/v1", "rm-1")  # /v1 is trimmed: /pooling is at the root
    scoring = await scorer.score(REQUEST, pool(["one two three"]))
    await scorer.aclose()
    assert scoring.scores == (3.0,)


async def test_remote_reward_sends_the_api_key(pooling_server):
    scorer = create_scorer(reward=f"vllm:rm-1@{pooling_server.url}#key_env=RM_KEY", env={"RM_KEY": "sk-test"})
    assert isinstance(scorer, RemoteRewardModel)
    await scorer.score(REQUEST, pool(["a"]))
    await scorer.aclose()
    assert pooling_server.headers[0]["Authorization"] == "Bearer sk-test"


async def test_remote_reward_without_a_reward_in_the_answer_raises_a_backend_error(pooling_server):
    pooling_server.shape = "broken"
    scorer = RemoteRewardModel(pooling_server.url, "rm-1")
    with pytest.raises(BackendError, match=r"--runner pooling"):
        await scorer.score(REQUEST, pool(["a"]))
    await scorer.aclose()


async def test_a_reward_answer_quoting_the_key_is_redacted_in_the_error(pooling_server):
    pooling_server.shape = "echo-key"
    scorer = create_scorer(reward=f"vllm:rm-1@{pooling_server.url}#key_env=RM_KEY", env={"RM_KEY": "sk-rm-secret-123"})
    with pytest.raises(BackendError) as caught:
        await scorer.score(REQUEST, pool(["a"]))
    await scorer.aclose()
    assert "seen" in str(caught.value) and "sk-rm-secret-123" not in str(caught.value)


async def test_an_empty_key_env_variable_means_a_keyless_reward_server(pooling_server):
    scorer = create_scorer(reward=f"vllm:rm-1@{pooling_server.url}#key_env=NO_KEY", env={"NO_KEY": ""})
    await scorer.score(REQUEST, pool(["a"]))
    await scorer.aclose()
    assert "Authorization" not in pooling_server.headers[0]


async def test_remote_reward_passes_upstream_http_errors_on(pooling_server):
    pooling_server.shape = "missing-model"
    scorer = RemoteRewardModel(pooling_server.url, "rm-1")
    with pytest.raises(UpstreamHTTPError, match="model not found"):
        await scorer.score(REQUEST, pool(["a"]))
    await scorer.aclose()


# --- factory ---------------------------------------------------------------------------------


def test_factory_returns_none_without_a_judge_or_reward():
    assert create_scorer() is None


def test_factory_rejects_a_judge_and_a_reward_together():
    with pytest.raises(ConfigError, match="not both"):
        create_scorer(judge="fake:echo", reward="vllm:rm@http://127.0.0.1:1")


async def test_factory_builds_a_judge_that_owns_a_backend_built_from_a_spec():
    judge = create_scorer(judge="fake:echo")
    assert isinstance(judge, LLMJudge)
    assert judge.backend.name == "fake:echo"
    await judge.aclose()
    assert judge.backend.closed  # type: ignore[attr-defined]


async def test_factory_wraps_a_backend_object_without_taking_ownership():
    backend = FakeBackend(["Rating: 3"])
    judge = create_scorer(judge=backend)
    assert isinstance(judge, LLMJudge)
    assert judge.backend is backend
    await judge.aclose()
    assert not backend.closed


def test_factory_builds_a_remote_reward_model_with_its_root_url():
    scorer = create_scorer(reward="vllm:Skywork/RM@http://127.0.0.1:8000/v1#max_concurrency=4")
    assert isinstance(scorer, RemoteRewardModel)
    assert scorer.model == "Skywork/RM"
    assert scorer.client.base_url == "http://127.0.0.1:8000"
    assert scorer.client.max_concurrency == 4


@pytest.mark.parametrize(
    ("spec", "env", "message"),
    [
        ("openai:rm@http://127.0.0.1:1", {}, r"unknown reward provider 'openai'.*'hf:/path/to/model'.*'vllm:MODEL@"),
        ("no-colon", {}, r"not understood.*'hf:/path/to/model'"),
        ("vllm:rm", {}, r"needs the server's URL"),
        ("vllm:rm@http://127.0.0.1:1#key_env=MISSING", {}, r"MISSING is not set"),
        ("vllm:rm@http://127.0.0.1:1#colour=red", {}, r"unknown option\(s\) colour"),
        ("vllm:rm@http://127.0.0.1:1#max_concurrency=0", {}, r"max_concurrency=0 .*must be an integer >= 1"),
        ("hf:/models/rm@http://127.0.0.1:1", {}, r"local folder, not a URL"),
    ],
)
def test_factory_rejects_bad_reward_specs_naming_the_accepted_forms(spec, env, message):
    with pytest.raises(ConfigError, match=message):
        create_scorer(reward=spec, env=env)


@pytest.mark.reward
def test_factory_builds_a_local_reward_model_from_an_hf_spec(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    scorer = create_scorer(reward=f"hf:{tmp_path}#batch_size=4,max_length=128")
    assert isinstance(scorer, LocalRewardModel)
    assert scorer.path == tmp_path
    assert scorer.batch_size == 4
    assert scorer.max_length == 128


def test_a_new_reward_provider_is_one_decorated_class(monkeypatch):
    from fusion_of_n.scorers import base

    monkeypatch.setattr(base, "_REWARD_PROVIDERS", dict(base._REWARD_PROVIDERS))

    @base.register_reward("const", "'const:VALUE' (a constant score)")
    class Constant:
        def __init__(self, value: float) -> None:
            self.name, self.value = f"const:{value}", value

        @classmethod
        def from_spec(cls, spec, env):
            return cls(float(spec.model))

    scorer = create_scorer(reward="const:2.5")
    assert isinstance(scorer, Constant) and scorer.value == 2.5
    with pytest.raises(ConfigError, match=r"unknown reward provider 'nope'.*'vllm:MODEL@.*'const:VALUE'"):
        create_scorer(reward="nope:x")


def test_reward_forms_list_the_registered_providers_in_order():
    from fusion_of_n.scorers.base import reward_forms

    assert reward_forms() == (
        "'hf:/path/to/model' (a local Hugging Face model) or 'vllm:MODEL@http://host:port' (a vLLM server)"
    )
