"""The one thing we read from a GGUF file without llama.cpp: the training context length in its header.

A GGUF file starts with the magic ``GGUF``, a version, the tensor count and the count of metadata
key/value pairs, then the pairs (a length-prefixed key, a value type, the value); all little-endian.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO

GGUF_MAGIC = b"GGUF"


def gguf_context_length(path: Path) -> int | None:
    """The training context length from a GGUF header (``<arch>.context_length``), None if absent.

    Reads only the metadata that precedes the key, so it costs microseconds even for large files.
    """
    with Path(path).open("rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            return None
        version, _tensors, n_kv = struct.unpack("<IQQ", fh.read(20))
        if version < 2:
            return None
        arch: str | None = None
        for _ in range(n_kv):
            key = _gguf_string(fh)
            (kind,) = struct.unpack("<I", fh.read(4))
            value = _gguf_value(fh, kind)
            if key == "general.architecture" and isinstance(value, str):
                arch = value
            elif arch is not None and key == f"{arch}.context_length" and isinstance(value, int):
                return value
    return None


_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def _gguf_string(fh: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", fh.read(8))
    return fh.read(length).decode("utf-8", errors="replace")


def _gguf_value(fh: BinaryIO, kind: int) -> object:
    if kind == 8:
        return _gguf_string(fh)
    if kind == 9:  # array: element type, count, elements (skipped, we only need scalars)
        elem, count = struct.unpack("<IQ", fh.read(12))
        if elem in _GGUF_SCALARS:
            fh.seek(struct.calcsize(_GGUF_SCALARS[elem]) * count, os.SEEK_CUR)
        else:
            for _ in range(count):
                _gguf_value(fh, elem)
        return None
    fmt = _GGUF_SCALARS.get(kind)
    if fmt is None:
        raise ValueError(f"unknown GGUF value type {kind}")
    return struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0]
