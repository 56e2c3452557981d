"""Property-based fuzzing of the request body: bad input never gets a 5xx."""

from __future__ import annotations

from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusion_of_n.config import PipelineSettings
from fusion_of_n.server import create_app
from fusion_of_n.server.runner import BackgroundServer
from fusion_of_n.testing import FakeOpenAIServer

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELDS = [
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "stop",
    "n",
    "stream",
    "stream_options",
    "fusion_of_n",
    "tools",
    "response_format",
    "logprobs",
    "user",
]
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "system", "assistant", "tool", "bogus"]) | json_values,
            "content": st.text(max_size=30) | json_values,
        }
    ),
    max_size=3,
)
extension = st.fixed_dictionaries(
    {},
    optional={
        "n": json_values | st.integers(0, 70),
        "method": st.sampled_from(["fusion", "first", "vote", "x"]),
        "fusor": json_values,
        "return_candidates": json_values,
    },
)
near_valid = st.fixed_dictionaries(
    {"model": st.sampled_from(["fusion-of-n", "pick", "other"]) | json_values, "messages": messages | json_values},
    optional={name: json_values for name in FIELDS[2:]} | {"fusion_of_n": extension},
)
bodies = near_valid | json_values


def test_fuzzed_bodies_never_get_a_5xx() -> None:
    with FakeOpenAIServer(["ok"]) as upstream:
        presets = {
            "fusion-of-n": PipelineSettings.of(models=[f"openai:m1@{upstream.url}"], n=2, method="vote"),
            "pick": PipelineSettings.of(models=[f"openai:m1@{upstream.url}"], n=1, method="first"),
        }
        with BackgroundServer(lambda: create_app(presets, env={})) as proxy, httpx.Client(timeout=30) as http:

            @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
            @given(bodies)
            def check(body: Any) -> None:
                response = http.post(proxy.url + "/chat/completions", json=body)
                assert response.status_code < 500, (body, response.text)
                if response.status_code >= 400:
                    assert set(response.json()["error"]) == {"message", "type", "param", "code"}

            check()
