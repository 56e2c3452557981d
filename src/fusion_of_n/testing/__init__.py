"""Fakes shipped with the library, for your tests as much as ours.

- :class:`FakeBackend`: an in-process backend answering from a script.
- :class:`FakeOpenAIServer`: an OpenAI-compatible HTTP server on 127.0.0.1 driven by the same scripts.
- :class:`FaultPlan`: a seeded mix of upstream failures for that server (429, 5xx, stalls, malformed
  bodies and streams, cut connections).
"""

from .fake import FakeBackend, echo
from .faults import FaultPlan
from .script import HTTPFault, Reply, Script, count_tokens
from .server import FakeOpenAIServer

__all__ = ["FakeBackend", "FakeOpenAIServer", "FaultPlan", "HTTPFault", "Reply", "Script", "count_tokens", "echo"]
