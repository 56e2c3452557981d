"""Backends: where candidates come from. See :mod:`fusion_of_n.backends.base`."""

from .base import Backend, ModelSpec, create_backend, providers, register_backend

__all__ = ["Backend", "ModelSpec", "create_backend", "providers", "register_backend"]
