"""JSON out on the HTTP paths (proxy replies, upstream requests): orjson when it is installed
(``pip install 'fusion-of-n[fast]'``, about ten times faster here), else the standard library.

>>> dumps({"a": [1, None]})
b'{"a":[1,null]}'

Either way the bytes are compact JSON of the same value (orjson writes non-ASCII characters as UTF-8,
the standard library as ``\\u`` escapes; NaN and infinities, which JSON lacks, are null under orjson);
what orjson refuses (integers beyond 64 bits, non-string keys, lone surrogates) goes through
:func:`json.dumps`. Reading stays with :func:`json.loads`: orjson would read integers beyond 64 bits as
floats, and the time it saves on a small body is a microsecond.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["dumps"]

_orjson_dumps: Callable[[Any], bytes] | None
try:
    from orjson import dumps as _orjson_dumps
except ImportError:  # the optional "fast" extra
    _orjson_dumps = None


def dumps(value: Any) -> bytes:
    """``value`` as compact JSON bytes."""
    if _orjson_dumps is not None:
        try:
            return _orjson_dumps(value)
        except TypeError:  # orjson.JSONEncodeError: what it cannot encode, the standard library may
            pass
    return json.dumps(value, separators=(",", ":")).encode()
