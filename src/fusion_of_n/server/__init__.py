"""The OpenAI-compatible proxy: any OpenAI client gets fused answers. See :func:`create_app`."""

from .app import create_app

__all__ = ["create_app"]
