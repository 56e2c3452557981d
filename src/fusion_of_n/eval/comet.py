"""COMET scoring for ``eval translation``: any local ``unbabel-comet`` checkpoint (XCOMET included), on CPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError, MissingDependency

__all__ = ["CometScorer", "load_comet"]

CometScorer = Callable[[list[dict[str, str]]], list[float]]
"""Segment scores for ``{"src", "mt", "ref"}`` samples, one per sample, in order."""


def load_comet(path: str, *, batch_size: int = 8) -> CometScorer:
    """A scorer backed by the ``unbabel-comet`` checkpoint at ``path`` (a model folder or its .ckpt), on CPU."""
    try:
        import comet
    except ImportError as exc:
        raise MissingDependency("COMET scoring needs the unbabel-comet package: pip install unbabel-comet") from exc
    checkpoint = Path(path)
    if checkpoint.is_dir():
        checkpoint = checkpoint / "checkpoints" / "model.ckpt"
    if not checkpoint.is_file():
        raise ConfigError(
            f"--comet-model {path}: no checkpoint at {checkpoint}; pass a COMET model folder (holding "
            "checkpoints/model.ckpt, as comet.download_model leaves it) or the .ckpt file itself"
        )
    model = comet.load_from_checkpoint(str(checkpoint))

    def score(samples: list[dict[str, str]]) -> list[float]:
        output = model.predict(samples, batch_size=batch_size, gpus=0, progress_bar=False)
        values = output.scores if hasattr(output, "scores") else output[0]
        return [float(v) for v in values]

    return score
