"""Server-Sent Events: an incremental decoder for the ``text/event-stream`` bodies of streamed responses.

>>> decoder = SSEDecoder()
>>> decoder.feed(b'data: {"a": 1}\\n\\ndata: [DO')
['{"a": 1}']
>>> decoder.feed(b"NE]\\n\\n")
['[DONE]']
"""

from __future__ import annotations


class SSEDecoder:
    """Incremental Server-Sent Events decoder: feed it bytes as they arrive, get each event's data.

    Lines end in LF, CRLF or CR; ``data:`` lines of one event are joined with newlines; comments
    (``: keep-alive``) and other fields (``event:``, ``id:``, ``retry:``) are ignored; an event ends
    at a blank line. Events and even UTF-8 characters may be split across chunks.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._after_cr = False  # the last chunk ended in CR: a leading LF in the next one belongs to it
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        """The data of every event completed by ``chunk``."""
        if not chunk:
            return []
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        lines = (self._buffer + chunk).splitlines(keepends=True)
        self._buffer = lines.pop() if lines and not lines[-1].endswith((b"\n", b"\r")) else b""
        self._after_cr = bool(lines) and lines[-1].endswith(b"\r") and not self._buffer
        events = (self._line(line.rstrip(b"\r\n")) for line in lines)
        return [event for event in events if event is not None]

    def close(self) -> list[str]:
        """The data of the event still open when the body ended without its blank line, if any."""
        rest, self._buffer = self._buffer, b""
        events = (self._line(rest), self._line(b""))
        return [event for event in events if event is not None]

    def _line(self, raw: bytes) -> str | None:
        if not raw:
            data, self._data = self._data, []
            return "\n".join(data) if data else None
        field, _, value = raw.decode("utf-8", "replace").partition(":")
        if field == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None
