"""The embedded backend (spec ``local:MODEL[#OPTIONS]``): GGUF models run in-process by llama.cpp.

One wing, each module on its own job; nothing here imports llama_cpp until a model loads:

``backend``    :class:`LocalBackend` and its spec options: generate, stream, structured output
``engine``     continuous batching: one decode loop per model serves every concurrent request
``hooks``      what the backend hands to llama.cpp: call arguments, logits processors, stream stop strings
``loader``     loaded models, one per file and load settings per process; :func:`clear_model_cache`
``catalogue``  the bundled models and how ``MODEL`` resolves to a verified file (:func:`resolve_model`)
``assemble``   chunks found in packages without importing them, assembled, sha256-checked, stamped
``gguf``       the training context length read from a GGUF header, without llama.cpp
"""

from .assemble import file_lock, sha256_file
from .backend import DEFAULT_N_CTX, LocalBackend
from .catalogue import (
    CATALOGUE,
    DEFAULT_MODEL,
    CatalogueEntry,
    ChunkedModel,
    ModelStatus,
    PackagedModel,
    check_model,
    list_models,
    resolve_model,
)
from .gguf import GGUF_MAGIC, gguf_context_length
from .loader import LoadSettings, clear_model_cache

__all__ = [
    "CATALOGUE",
    "DEFAULT_MODEL",
    "DEFAULT_N_CTX",
    "GGUF_MAGIC",
    "CatalogueEntry",
    "ChunkedModel",
    "LoadSettings",
    "LocalBackend",
    "ModelStatus",
    "PackagedModel",
    "check_model",
    "clear_model_cache",
    "file_lock",
    "gguf_context_length",
    "list_models",
    "resolve_model",
    "sha256_file",
]
