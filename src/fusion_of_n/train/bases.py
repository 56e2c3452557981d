"""The base model of a student as a Hugging Face folder.

``BASE`` is one of:

- ``local:NAME``: a model of the runtime catalogue (:mod:`fusion_of_n.backends.local.catalogue`; e.g.
  ``local:qwen2.5-coder-0.5b``). Its verified GGUF is dequantized by transformers into a Hugging Face
  folder once, under ``CACHE/hf/<file stem>-<size>/``, and reused (an ``fcntl`` lock keeps two
  processes, e.g. the ranks of ``accelerate launch``, from converting at once; the folder appears
  whole or not at all);
- ``local:PATH.gguf``: any GGUF file, the same way;
- ``local:DIR`` or ``DIR`` where DIR is a ``fusion-of-n train`` output: its merged ``hf/`` folder;
- a Hugging Face model folder path (it holds ``config.json``), used as it is.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..backends.local import CATALOGUE, file_lock, resolve_model
from ..errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["base_folder"]


def base_folder(base: str, cache_dir: Path) -> Path:
    """The Hugging Face folder for ``base`` (module docstring), converting a GGUF once if needed."""
    text = base.removeprefix("local:")
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        if (path / "hf" / "config.json").is_file():
            return path / "hf"
        raise ConfigError(
            f"base {base!r} is a folder without config.json (nor a train output's hf/config.json); "
            "pass a Hugging Face model folder, a .gguf file or one of " + _names()
        )
    if base.startswith("local:") and (text in CATALOGUE or text.endswith(".gguf")):
        return _dequantized(resolve_model(text, cache_dir), cache_dir)
    raise ConfigError(
        f"base {base!r} not found; use one of {_names()}, local:PATH.gguf, a train output folder "
        "or a Hugging Face model folder (with config.json)"
    )


def _names() -> str:
    return ", ".join(f"local:{name}" for name in CATALOGUE)


def _dequantized(gguf: Path, cache_dir: Path) -> Path:
    target = cache_dir / "hf" / f"{gguf.stem}-{gguf.stat().st_size}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f"{target.name}.lock"):
        if (target / "config.json").is_file():
            return target
        _convert(gguf, target)
    return target


def _convert(gguf: Path, target: Path) -> None:
    from .deps import require_training

    require_training()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    log.info("dequantizing %s into a Hugging Face folder %s (once)", gguf, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A model loaded from GGUF carries its quantizer; save_pretrained refuses it until it is cleared.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
        os.replace(scratch, target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    log.info("dequantized %s in %.1f s", gguf.name, time.perf_counter() - started)
