"""The ``train`` extra: what it needs, the one-line error when it is missing, and the versions in use."""

from __future__ import annotations

import importlib.metadata
import importlib.util

from ..errors import MissingDependency

__all__ = ["INSTALL_HINT", "TRAINING_PACKAGES", "package_versions", "require_training"]

TRAINING_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "gguf")
"""Distributions (and modules) ``fusion-of-n train`` imports; pinned in pyproject's ``train`` extra."""
INSTALL_HINT = "pip install 'fusion-of-n[train]'  (on a CPU-only machine: pip install torch==2.13.0 first)"


def require_training() -> None:
    """MissingDependency naming the pip command when any training package is absent (nothing is imported)."""
    missing = [name for name in TRAINING_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependency(f"fusion-of-n train needs {', '.join(missing)}; install the extra: {INSTALL_HINT}")


def package_versions() -> dict[str, str]:
    """The installed versions of the training stack and of fusion-of-n (for the manifest)."""
    versions = {}
    for name in (*TRAINING_PACKAGES, "fusion-of-n"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
