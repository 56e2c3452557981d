"""Backends: where candidates come from. See :mod:`fusion_of_n.backends.base`."""

from .base import Backend, ModelSpec, OwnedBackend, create_backend, providers, register_backend, resolve_backend

__all__ = [
    "Backend",
    "ModelSpec",
    "OwnedBackend",
    "create_backend",
    "providers",
    "register_backend",
    "resolve_backend",
]
