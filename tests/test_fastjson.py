"""fastjson.dumps: the same JSON value with orjson (the fast extra) and without it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fusion_of_n import fastjson

VALUES: list[Any] = [
    {"model": "m", "messages": [{"role": "user", "content": 'Grüße, 世界 \n\t"quoted" \\ \u2028'}], "n": 3},
    {"temperature": 0.7, "top_p": 1e-7, "seed": -(2**63), "stop": ["\n\n"], "stream": False, "x": None},
    [1, 2.5, True, None, "", [], {}],
]
AWKWARD: list[Any] = [
    {"seed": 2**70},  # beyond 64 bits: orjson refuses it
    {1: "a non-string key"},
    {"text": "a lone surrogate \ud800"},
]


@pytest.fixture(params=["orjson", "standard library"])
def library(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "standard library":
        monkeypatch.setattr(fastjson, "_orjson_dumps", None)
    elif fastjson._orjson_dumps is None:
        pytest.skip("orjson is not installed (pip install 'fusion-of-n[fast]')")
    return str(request.param)


@pytest.mark.parametrize("value", VALUES + AWKWARD)
def test_dumps_writes_compact_json_of_the_same_value(library: str, value: Any) -> None:
    written = fastjson.dumps(value)
    assert isinstance(written, bytes)
    assert json.loads(written) == json.loads(json.dumps(value))


def test_dumps_is_compact(library: str) -> None:
    assert fastjson.dumps({"a": [1, 2], "b": {"c": None}}) == b'{"a":[1,2],"b":{"c":null}}'
