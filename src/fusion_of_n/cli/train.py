"""``fusion-of-n train DATA... --method M --base BASE -o DIR``: the command and its progress display
(a :class:`fusion_of_n.train.TrainObserver`); the training itself is :func:`fusion_of_n.train.train`."""

from __future__ import annotations

from typing import Any

import click

from ..config import cache_dir, environment
from .common import friendly_errors, setup_logging


class TrainProgress:
    """A rich progress bar (step, loss, tokens/s, ETA) on a terminal; a line per tenth of the run otherwise.
    Under ``accelerate launch``/``torchrun`` only the main process (RANK 0) shows anything."""

    def __init__(self, main_process: bool = True) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, quiet=not main_process)
        self.bar: Any = None
        self.task: Any = None
        self.total = 0

    def started(self, total_steps: int, resumed_from: int) -> None:
        self.total = total_steps
        if resumed_from:
            self.console.print(f"resumed at step {resumed_from} of {total_steps}")
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(), console=self.console,
            )  # fmt: skip
            self.bar.start()
            self.task = self.bar.add_task("train", total=total_steps, completed=resumed_from, info="")

    def stepped(self, step: int, loss: float | None, tokens_per_second: float | None) -> None:
        info = f"loss {loss:.4f}" if loss is not None else ""
        if tokens_per_second:
            info += f" · {tokens_per_second:.0f} tok/s"
        if self.bar is not None:
            self.bar.update(self.task, completed=step, info=info)
        elif self.total and (step == self.total or step % max(1, self.total // 10) == 0):
            self.console.print(f"step {step}/{self.total} {info}", highlight=False)

    def stage(self, text: str) -> None:
        self.close()
        self.console.print(text, highlight=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


@click.command("train")
@click.argument("data", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--method", required=True, help="whose answers to learn: a method of DATA's results (fusion, bon, ...)")
@click.option("--base", default="local:qwen2.5-coder-0.5b", show_default=True,
              help="local:NAME of the catalogue, local:PATH.gguf, a train output or a Hugging Face folder")  # fmt: skip
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--full", is_flag=True, help="full fine-tuning instead of LoRA")
@click.option("--lora-r", type=int, default=16, show_default=True)
@click.option("--lora-alpha", type=int, default=32, show_default=True)
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--max-steps", type=int, help="stop after this many optimizer steps (overrides --epochs)")
@click.option("--lr", type=float, help="learning rate  [default: 2e-4 with LoRA, 2e-5 with --full]")
@click.option("--batch-size", type=int, default=4, show_default=True, help="per device")
@click.option("--grad-accum", type=int, default=1, show_default=True)
@click.option("--max-length", type=int, default=1024, show_default=True, help="tokens per example (longer: cut)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--eval-fraction", type=float, default=0.1, show_default=True, help="held out; its loss is reported")
@click.option("--threads", type=int, default=1, show_default=True, help="CPU threads (one is often fastest on 2 cores)")
@click.option("--save-steps", type=int, default=50, show_default=True, help="checkpoint interval (resume point)")
@click.option("--include-flagged", is_flag=True, help="keep flagged (truncated, empty-fusion, ...) answers")
@click.option("--llama-cpp", metavar="DIR", help="a llama.cpp checkout whose convert_hf_to_gguf.py to use")
@click.option("--force", is_flag=True, help="replace a run with another configuration in the output folder")
@click.option("-v", "--verbose", count=True)
@friendly_errors
def train(data: tuple[str, ...], full: bool, verbose: int, **options: Any) -> None:
    """Fine-tune a student on the METHOD answers of DATA (generate outputs, JSONL or Parquet, or export
    files). Writes DIR/hf, DIR/model.gguf (use it as local:DIR), DIR/train.json and DIR/loss.png; the same
    command resumes an interrupted run."""
    from ..train import TrainConfig
    from ..train import train as train_student

    setup_logging(verbose)
    if not verbose:
        _quiet_libraries()
    env = environment()
    options["llama_cpp"] = options["llama_cpp"] or env.get("FUSION_OF_N_LLAMA_CPP")
    config = TrainConfig(data=data, lora=not full, **options)
    main_process = env.get("RANK", "0") == "0"
    progress = TrainProgress(main_process)
    try:
        manifest = train_student(config, cache_dir(env), progress)
    finally:
        progress.close()
    if not main_process:
        return
    final = manifest["loss"]["train"][-1][1] if manifest["loss"]["train"] else float("nan")
    evals = manifest["loss"]["eval"]
    eval_text = f", eval loss {evals[-1][1]:.4f}" if evals else ""
    click.echo(
        f"trained {manifest['examples']['train']} examples in {manifest['seconds']:.0f} s: train loss {final:.4f}"
        f"{eval_text}; use it as local:{config.output}",
        err=True,
    )


def _quiet_libraries() -> None:
    """The training stack's own progress bars and deprecation notes would bury our progress line."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    from datasets.utils.logging import disable_progress_bar as datasets_quiet
    from transformers.utils.logging import disable_progress_bar as transformers_quiet

    datasets_quiet()
    transformers_quiet()  # type: ignore[no-untyped-call]
