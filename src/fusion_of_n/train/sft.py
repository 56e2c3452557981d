"""Supervised fine-tuning of a student on generated data, with TRL's ``SFTTrainer`` (LoRA by PEFT or full).

The steps of :func:`train`: check the output folder against the configuration (resume, nothing to do,
or refuse), read the examples, find the base as a Hugging Face folder and the GGUF converter (before
any training, so a missing piece fails in seconds, not after an hour), train (resuming from the last
checkpoint in ``DIR/checkpoints``), then merge the LoRA weights, save ``DIR/hf``, convert it to
``DIR/model.gguf`` (q8_0), draw ``DIR/loss.png``, complete ``DIR/train.json`` and register the student
in the cache (``fusion-of-n models`` lists it; ``local:DIR`` loads it).

Nothing here assumes one process: under ``accelerate launch`` every rank trains, and only the main
process writes the manifest, the merged model, the GGUF and the plot. A GPU is used when present
(bf16 where supported); otherwise the CPU, with ``threads`` torch threads.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..backends.local import sha256_file
from ..errors import ConfigError
from .bases import base_folder
from .convert import converter_dir, hf_to_gguf
from .deps import package_versions, require_training
from .examples import load_examples, split_examples
from .manifest import KIND, fingerprint, loss_curves, plot_loss, prepare, read_manifest, write_manifest

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "TrainObserver", "build_trainer", "train"]


@dataclass(frozen=True)
class TrainConfig:
    """One training run. The data, base, method and :meth:`hyperparameters` but ``threads`` and
    ``save_steps`` make its fingerprint: changing them on an existing output folder needs ``force``."""

    data: tuple[str, ...]
    method: str
    base: str
    output: str
    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    epochs: float = 1.0
    max_steps: int | None = None
    lr: float | None = None  # None: 2e-4 with LoRA, 2e-5 for full fine-tuning
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 1024
    seed: int = 0
    eval_fraction: float = 0.1
    include_flagged: bool = False
    threads: int = 1
    save_steps: int = 50
    llama_cpp: str | None = None
    force: bool = False  # replace a run with another configuration in ``output``
    extra_callbacks: tuple[Any, ...] = field(default=(), compare=False)  # transformers TrainerCallbacks

    def __post_init__(self) -> None:
        checks = {
            "--lora-r": self.lora_r >= 1,
            "--lora-alpha": self.lora_alpha >= 1,
            "--epochs": self.epochs > 0,
            "--max-steps": self.max_steps is None or self.max_steps >= 1,
            "--lr": self.lr is None or self.lr > 0,
            "--batch-size": self.batch_size >= 1,
            "--grad-accum": self.grad_accum >= 1,
            "--max-length": self.max_length >= 16,
            "--threads": self.threads >= 1,
            "--save-steps": self.save_steps >= 1,
        }
        wrong = [name for name, ok in checks.items() if not ok]
        if wrong:
            raise ConfigError(f"{', '.join(wrong)} out of range; see fusion-of-n train --help")
        if not self.data:
            raise ConfigError("no training data given; pass a generate output or an export file")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (2e-4 if self.lora else 2e-5)

    def hyperparameters(self) -> dict[str, Any]:
        keep = ("lora", "lora_r", "lora_alpha", "epochs", "max_steps", "batch_size", "grad_accum", "max_length")
        values = {key: getattr(self, key) for key in keep}
        values.update(lr=self.learning_rate, seed=self.seed, eval_fraction=self.eval_fraction)
        values.update(include_flagged=self.include_flagged, threads=self.threads, save_steps=self.save_steps)
        return values


class TrainObserver(Protocol):
    """What the CLI's progress display is told (called on the main process only)."""

    def started(self, total_steps: int, resumed_from: int) -> None: ...

    def stepped(self, step: int, loss: float | None, tokens_per_second: float | None) -> None: ...

    def stage(self, text: str) -> None: ...


class _Quiet:
    def started(self, total_steps: int, resumed_from: int) -> None:
        log.info("training %d steps (from step %d)", total_steps, resumed_from)

    def stepped(self, step: int, loss: float | None, tokens_per_second: float | None) -> None:
        pass

    def stage(self, text: str) -> None:
        log.info("%s", text)


def train(config: TrainConfig, cache_dir: Path, observer: TrainObserver | None = None) -> dict[str, Any]:
    """Train the student of ``config`` and return its completed manifest (module docstring)."""
    observer = observer or _Quiet()
    require_training()
    folder = Path(config.output)
    examples = load_examples(config.data, config.method, include_flagged=config.include_flagged)
    excluded = ", ".join(f"{reason} {count}" for reason, count in examples.exclusions.items()) or "none"
    observer.stage(f"{len(examples.rows)} {config.method} examples; left out: {excluded}")
    data = [
        {"path": str(Path(p).resolve()), "sha256": sha256_file(Path(p)), "format": examples.formats[p]}
        for p in config.data
    ]
    result_settings = {k: v for k, v in config.hyperparameters().items() if k not in ("threads", "save_steps")}
    settings = {"base": config.base, "method": config.method, "data": [d["sha256"] for d in data],
                "hyperparameters": result_settings}  # fmt: skip
    print_ = fingerprint(settings)
    action, found = prepare(folder, print_, force=config.force)
    if action == "complete" and found is not None:
        observer.stage(f"{folder} is already trained with this configuration; nothing to do")
        return found
    base_dir = base_folder(config.base, cache_dir)
    converter = converter_dir(cache_dir, config.llama_cpp)
    train_rows, eval_rows = split_examples(examples.rows, config.eval_fraction, config.seed)
    manifest: dict[str, Any] = {
        "kind": KIND, "version": 1, "status": "running", "fingerprint": print_,
        "base": config.base, "base_path": str(base_dir), "method": config.method, "data": data,
        "examples": {"train": len(train_rows), "eval": len(eval_rows), "excluded": sum(examples.exclusions.values())},
        "exclusions": dict(examples.exclusions), "hyperparameters": config.hyperparameters(),
        "versions": package_versions(), "device": "cpu", "seconds": float((found or {}).get("seconds") or 0.0),
        "tokens": 0, "loss": {"train": [], "eval": []},
        "outputs": {"hf": "hf", "gguf": "model.gguf", "plot": "loss.png"},
    }  # fmt: skip
    run = _Run(config, folder, manifest, observer)
    trainer = run.build(base_dir, train_rows, eval_rows)
    if trainer.is_world_process_zero():
        write_manifest(folder, manifest)
    run.fit(trainer)
    if trainer.is_world_process_zero():
        run.finish(trainer, converter, cache_dir)
    trainer.accelerator.wait_for_everyone()
    return manifest if trainer.is_world_process_zero() else (read_manifest(folder) or manifest)


def build_trainer(
    config: TrainConfig,
    base_dir: Path,
    train_rows: Sequence[dict[str, Any]],
    eval_rows: Sequence[dict[str, Any]],
    *,
    callbacks: Sequence[Any] = (),
) -> Any:
    """The ``SFTTrainer`` of a run: the base's own chat template, loss on the completion tokens only,
    LoRA on all linear layers (or full), checkpoints in ``OUTPUT/checkpoints``. Nothing runs yet."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import SFTConfig, SFTTrainer  # type: ignore[attr-defined]

    torch.set_num_threads(config.threads)
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if not tokenizer.chat_template:
        raise ConfigError(f"base {config.base!r} has no chat template; train from an instruct (chat) model")
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.bfloat16 if bf16 else torch.float32)
    steps_per_epoch = math.ceil(len(train_rows) / (config.batch_size * config.grad_accum))
    total = config.max_steps or max(1, math.ceil(steps_per_epoch * config.epochs))
    args = SFTConfig(
        output_dir=str(Path(config.output) / "checkpoints"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        max_length=config.max_length,
        completion_only_loss=True,
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        eval_strategy="steps" if eval_rows else "no",
        eval_steps=max(1, math.ceil(total / 5)),
        use_cpu=not cuda,
        bf16=bf16,
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    peft_config = None
    if config.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=config.lora_r, lora_alpha=config.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM"
        )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list([_trainable(r) for r in train_rows]),
        eval_dataset=Dataset.from_list([_trainable(r) for r in eval_rows]) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[*callbacks, *config.extra_callbacks],
    )
    for quiet in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(quiet)
    return trainer


class _Run:
    """One invocation of the trainer on a folder; keeps the manifest current."""

    def __init__(self, config: TrainConfig, folder: Path, manifest: dict[str, Any], observer: TrainObserver) -> None:
        self.config, self.folder, self.manifest, self.observer = config, folder, manifest, observer
        self.started = time.perf_counter()
        self.seconds_before = float(manifest["seconds"])

    def build(self, base_dir: Path, train_rows: Sequence[dict[str, Any]], eval_rows: Sequence[dict[str, Any]]) -> Any:
        import torch

        self.manifest["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        return build_trainer(self.config, base_dir, train_rows, eval_rows, callbacks=[_callback(self)])

    def fit(self, trainer: Any) -> None:
        from transformers.trainer_utils import get_last_checkpoint

        checkpoints = self.folder / "checkpoints"
        last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None  # type: ignore[no-untyped-call]
        if last:
            self.observer.stage(f"resuming from {Path(last).name}")
        trainer.train(resume_from_checkpoint=last)
        evaluated = [e["step"] for e in trainer.state.log_history if "eval_loss" in e]
        if trainer.eval_dataset is not None and (not evaluated or evaluated[-1] != trainer.state.global_step):
            trainer.evaluate()  # the loss at the end, when the last evaluation came earlier

    def update(self, trainer_state: Any) -> None:
        """Loss, tokens and seconds so far into the manifest (at every checkpoint and at the end)."""
        self.manifest["loss"] = loss_curves(trainer_state.log_history)
        tokens = [e["num_tokens"] for e in trainer_state.log_history if "num_tokens" in e]
        self.manifest["tokens"] = int(tokens[-1]) if tokens else 0
        self.manifest["seconds"] = round(self.seconds_before + time.perf_counter() - self.started, 1)

    def finish(self, trainer: Any, converter: Path, cache_dir: Path) -> None:
        from ..students import register_student

        self.update(trainer.state)
        self.observer.stage("merging and saving the model")
        model = trainer.accelerator.unwrap_model(trainer.model)
        if self.config.lora:
            model = model.merge_and_unload()
        scratch, hf = self.folder / ".hf.tmp", self.folder / "hf"
        shutil.rmtree(scratch, ignore_errors=True)
        model.save_pretrained(scratch)
        trainer.processing_class.save_pretrained(scratch)
        shutil.rmtree(hf, ignore_errors=True)
        scratch.rename(hf)
        self.observer.stage("converting to GGUF (q8_0)")
        hf_to_gguf(hf, self.folder / "model.gguf", converter)
        plot_loss(self.manifest, self.folder / "loss.png")
        shutil.rmtree(self.folder / "checkpoints", ignore_errors=True)
        self.manifest["status"] = "complete"
        self.manifest["seconds"] = round(self.seconds_before + time.perf_counter() - self.started, 1)
        write_manifest(self.folder, self.manifest)
        register_student(cache_dir, self.folder.resolve())


def _trainable(row: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": row["prompt"], "completion": row["completion"]}


def _callback(run: _Run) -> Any:
    from transformers import TrainerCallback

    class Observe(TrainerCallback):
        def __init__(self) -> None:
            self.mark: tuple[float, float] | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                run.observer.started(state.max_steps, state.global_step)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            now, tokens = time.perf_counter(), float(logs.get("num_tokens") or 0)
            rate = None
            if self.mark is not None and now > self.mark[0] and tokens > self.mark[1]:
                rate = (tokens - self.mark[1]) / (now - self.mark[0])
            self.mark = (now, tokens)
            run.observer.stepped(state.global_step, float(logs["loss"]), rate)

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                run.update(state)
                write_manifest(run.folder, run.manifest)

    return Observe()
