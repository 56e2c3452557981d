"""A train output directory: its manifest ``train.json``, the configuration check, and ``loss.png``.

``DIR/train.json`` (``"kind": "fusion-of-n train"``, version 1) is written when training starts
(``"status": "running"``), refreshed at every checkpoint, and completed at the end::

    {"kind": "fusion-of-n train", "version": 1, "status": "running" | "complete",
     "fingerprint": "<sha256 of the configuration and the data>",
     "base": "local:qwen2.5-coder-0.5b", "base_path": "<the Hugging Face folder trained from>",
     "method": "fusion", "data": [{"path", "sha256", "format": "generate" | "export"}],
     "examples": {"train", "eval", "excluded"}, "exclusions": {"<reason>": count},
     "hyperparameters": {...every option that changes the result...},
     "versions": {"torch", "transformers", "trl", "peft", "accelerate", "datasets", "gguf", "fusion-of-n"},
     "device": "cpu" | "cuda", "seconds": <training time over every run>, "tokens": <tokens trained on>,
     "loss": {"train": [[step, loss], ...], "eval": [[step, loss], ...]},
     "outputs": {"hf": "hf", "gguf": "model.gguf", "plot": "loss.png"}}

The same command on the same DIR resumes (the fingerprint matches and the status is running) or does
nothing (complete). Another configuration is refused unless ``force``, which removes only the files
listed in :data:`OWNED`; a DIR holding anything else without a manifest is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..students import TRAIN_KIND, TRAIN_MANIFEST

__all__ = ["KIND", "MANIFEST", "OWNED", "fingerprint", "loss_curves", "plot_loss", "prepare", "write_manifest"]

KIND = TRAIN_KIND
MANIFEST = TRAIN_MANIFEST
OWNED = (MANIFEST, "checkpoints", "hf", "model.gguf", "loss.png", ".model.gguf.tmp", ".hf.tmp")


def fingerprint(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ConfigError(f"{folder / MANIFEST} is not valid JSON ({exc}); remove it or pick another -o") from None
    return data if isinstance(data, dict) else None


def prepare(folder: Path, print_: str, *, force: bool) -> tuple[str, dict[str, Any] | None]:
    """What to do with ``folder`` for a run whose fingerprint is ``print_``: ("fresh" | "resume" |
    "complete", the manifest found). Refuses another configuration unless ``force``."""
    manifest = read_manifest(folder)
    if manifest is None:
        others = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        if others:
            raise ConfigError(
                f"{folder} is not empty and is not a train output (no {MANIFEST}; holds {', '.join(others[:3])}); "
                "choose a new or empty folder with -o"
            )
        return "fresh", None
    if manifest.get("kind") != KIND:
        raise ConfigError(f"{folder / MANIFEST} is not a fusion-of-n train manifest; choose another folder with -o")
    if manifest.get("fingerprint") == print_ and not force:
        return ("complete" if manifest.get("status") == "complete" else "resume"), manifest
    if manifest.get("fingerprint") != print_ and not force:
        raise ConfigError(
            f"{folder} holds a training run with another configuration or data (base {manifest.get('base')!r}, "
            f"method {manifest.get('method')!r}); pass --force to replace it, or choose another folder with -o"
        )
    for name in OWNED:
        target = folder / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    return "fresh", None


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MANIFEST)


def loss_curves(log_history: Sequence[Mapping[str, Any]]) -> dict[str, list[list[float]]]:
    """``{"train": [[step, loss]...], "eval": [[step, eval_loss]...]}`` from a trainer's log history."""
    train = [[entry["step"], entry["loss"]] for entry in log_history if "loss" in entry and "step" in entry]
    evals = [[entry["step"], entry["eval_loss"]] for entry in log_history if "eval_loss" in entry and "step" in entry]
    return {"train": train, "eval": evals}


def plot_loss(manifest: Mapping[str, Any], target: Path) -> Path:
    """``loss.png``: train loss (line) and eval loss (dashed, markers) against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = manifest.get("loss") or {}
    figure, axes = plt.subplots(figsize=(7, 4), dpi=110)
    for key, linestyle, marker in (("train", "-", ""), ("eval", "--", "o")):
        points = curves.get(key) or []
        if points:
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            axes.plot(xs, ys, linestyle=linestyle, marker=marker or None, label=f"{key} loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss (completion tokens)")
    axes.set_title(f"student on {manifest.get('method')} data, base {manifest.get('base')}", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(target)
    plt.close(figure)
    return target
