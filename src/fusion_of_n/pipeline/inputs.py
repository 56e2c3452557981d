"""Read the rows of ``fusion-of-n generate``: a file, a saved dataset folder or a built-in source.

:func:`read_rows` streams :class:`~.rows.InputRow` and :class:`~.rows.RowError` values; a bad
row is reported (with the fix) and the run goes on. Accepted inputs (``ACCEPTED``):

- ``.jsonl`` / ``.json``: JSON Lines, one object per line (blank lines are ignored);
- ``.csv``: a header row, then one row per line (``csv.DictReader``); a ``messages`` cell holds JSON
  text; an empty cell counts as absent for ``id``, ``prompt``, ``messages`` and ``language``;
- ``.parquet``: read in record batches (needs pyarrow);
- a folder written by Hugging Face ``datasets``' ``save_to_disk`` (needs datasets);
- ``dataset=`` a built-in source (see :mod:`.sources`).

A row holds ``prompt`` (a non-empty string) or ``messages`` (a chat ending with a user turn), an
optional ``id`` (else the hash of the row, :func:`~.rows.stable_id`), an optional ``language``
(else detected from the last user text; may stay None) and any other columns, kept in ``meta``.
``line`` is the 1-based line of a JSON Lines file, the 1-based data row of a CSV file (the header
is not counted) or the 1-based row of the other kinds.

Duplicate ids are reported on their second and later occurrences; finding them keeps every id seen
in memory (about 150 bytes per row: ~1.5 GB for 10^7 rows).
"""

from __future__ import annotations

import csv
import datetime
import itertools
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import ConfigError, MissingDependency
from ..language import detect_language
from ..types import Message, message_text
from .rows import InputRow, RowError, stable_id
from .sources import SOURCE_NAMES, source_rows

log = logging.getLogger(__name__)

ACCEPTED = (
    "a .jsonl or .json file (JSON Lines), a .csv file, a .parquet file, a folder written by Hugging Face "
    f"datasets' save_to_disk, or --dataset with one of: {', '.join(SOURCE_NAMES)}"
)
DATA_EXTRA = "pip install 'fusion-of-n[data]'"
_BATCH_ROWS = 1024
_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark
_CSV_CLEARED = ("id", "prompt", "messages", "language")
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of bytes that are not UTF-8

Raw = tuple[int, Any]
"""(1-based line or row, the parsed row value or an :class:`_Unreadable`)."""


class _Unreadable:
    """A line that could not be parsed at all (its message names the fix)."""

    def __init__(self, message: str) -> None:
        self.message = message


def read_rows(
    path: str | None, *, dataset: str | None = None, limit: int | None = None, skip: int = 0
) -> Iterator[InputRow | RowError]:
    """The rows of ``path`` (or of the built-in source ``dataset``), streamed in order.

    Opening is eager (a missing file, an unknown kind or a missing package raises ConfigError /
    MissingDependency here); rows are read lazily. ``skip`` rows are passed over first (a held-out
    split: ``--skip 20 --limit 10`` reads rows 21-30); ``limit`` counts rows read after them, good or bad.
    """
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be 0 or more (got {limit})")
    if skip < 0:
        raise ConfigError(f"skip must be 0 or more (got {skip})")
    if path is not None and dataset is not None:
        raise ConfigError(f"give an input file or --dataset, not both (got {path!r} and {dataset!r})")
    raw: Iterator[Raw]
    if dataset is not None:
        raw, unit = enumerate(source_rows(dataset), start=1), "row"
    elif path is None:
        raise ConfigError(f"no input given: pass {ACCEPTED}")
    else:
        raw, unit = _open(path)
    return _checked(itertools.islice(raw, skip, None if limit is None else skip + limit), unit)


def _checked(raw: Iterable[Raw], unit: str) -> Iterator[InputRow | RowError]:
    first_line: dict[str, int] = {}
    for line, value in raw:
        if isinstance(value, _Unreadable):
            yield RowError(line, value.message)
            continue
        item = parse_row(value, line)
        if item.id is None:
            yield item
            continue
        first = first_line.setdefault(item.id, line)
        if first == line:
            yield item
        elif row_id_given(value):
            fix = "give each row a unique id or drop the repeat"
            yield RowError(line, f"duplicate id {item.id!r}: first seen on {unit} {first}; {fix}", item.id)
        else:
            fix = "rows without an id are identified by a hash of their content; drop the repeat"
            yield RowError(line, f"duplicate row: same content as {unit} {first}; {fix}", item.id)


def _open(path: str) -> tuple[Iterator[Raw], str]:
    if os.path.isdir(path):
        return _dataset_folder(path), "row"
    if not os.path.exists(path):
        raise ConfigError(f"input {path!r} does not exist; pass {ACCEPTED}")
    kind = path.lower().rsplit(".", 1)[-1] if "." in os.path.basename(path) else ""
    if kind in ("jsonl", "json"):
        if _is_json_array(path):
            fix = f"convert it with: jq -c '.[]' {path} > rows.jsonl"
            raise ConfigError(f"{path!r} holds one JSON array, not JSON Lines (one object per line); {fix}")
        return _json_lines(path), "line"
    if kind == "csv":
        return _csv_rows(path), "line"
    if kind == "parquet":
        return _parquet_rows(path), "row"
    raise ConfigError(
        f"cannot read {path!r}: unknown kind {('.' + kind) if kind else '(no extension)'}; pass {ACCEPTED}"
    )


def _is_json_array(path: str) -> bool:
    """Whether the file opens like one (pretty-printed or single-line) JSON array, not JSON Lines."""
    with open(path, "rb") as handle:
        start = handle.read(4096).removeprefix(_BOM).lstrip()
    first_line, newline, _ = start.partition(b"\n")
    return start.startswith(b"[") and (not newline or first_line.strip() == b"[")


def _json_lines(path: str) -> Iterator[Raw]:
    with open(path, "rb") as handle:
        for line, raw in enumerate(handle, start=1):
            if line == 1:
                raw = raw.removeprefix(_BOM)
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                yield line, _Unreadable(f"line {line} is not UTF-8 text; re-encode the file as UTF-8")
                continue
            try:
                value = json.loads(text)
            except ValueError as exc:
                problem = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
                value = _Unreadable(f"line {line} is not valid JSON ({problem}); write one JSON object per line")
            yield line, value


def _csv_rows(path: str) -> Iterator[Raw]:
    # surrogateescape: a byte that is not UTF-8 spoils only its own row (found below), not the rest
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        reader = iter(csv.DictReader(handle))
        for line in itertools.count(1):
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                fix = "fix its quoting, or use JSON Lines or Parquet for very long texts"
                yield line, _Unreadable(f"CSV data row {line} cannot be read ({exc}); {fix}")
                continue
            if None in row:
                extra = len(row[None])
                fix = "a field holding a comma needs double quotes"
                yield line, _Unreadable(f"CSV data row {line} has {extra} more field(s) than the header; {fix}")
            elif any(_NOT_UTF8.search(cell) for cell in row.values() if isinstance(cell, str)):
                yield line, _Unreadable(f"CSV data row {line} is not UTF-8 text; re-encode the file as UTF-8")
            else:
                yield line, {k: v for k, v in row.items() if not (k in _CSV_CLEARED and (v is None or v == ""))}


def _parquet_rows(path: str) -> Iterator[Raw]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependency(f"reading Parquet needs pyarrow: {DATA_EXTRA}") from exc
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ConfigError(f"{path!r} is not a readable Parquet file ({exc}); pass {ACCEPTED}") from exc
    return _numbered(batch.to_pylist() for batch in parquet.iter_batches(batch_size=_BATCH_ROWS))


def _dataset_folder(path: str) -> Iterator[Raw]:
    is_dataset = os.path.isfile(os.path.join(path, "state.json"))
    is_dict = os.path.isfile(os.path.join(path, "dataset_dict.json"))
    if not (is_dataset or is_dict):
        raise ConfigError(f"folder {path!r} was not written by datasets' save_to_disk; pass {ACCEPTED}")
    try:
        import datasets
    except ImportError as exc:
        raise MissingDependency(f"reading a saved Hugging Face dataset needs datasets: {DATA_EXTRA}") from exc
    loaded = datasets.load_from_disk(path)
    if isinstance(loaded, datasets.DatasetDict):
        splits = sorted(loaded)
        if len(splits) != 1:
            choices = ", ".join(os.path.join(path, split) for split in splits)
            raise ConfigError(f"{path!r} holds the splits {', '.join(splits)}; pass one folder of: {choices}")
        log.info("%s: reading its only split %r", path, splits[0])
        loaded = loaded[splits[0]]
    arrow = loaded.with_format("arrow")
    return _numbered(table.to_pylist() for table in arrow.iter(batch_size=_BATCH_ROWS))


def _numbered(batches: Iterator[list[dict[str, Any]]]) -> Iterator[Raw]:
    return enumerate(itertools.chain.from_iterable(batches), start=1)


# --- one row ---------------------------------------------------------------------------------------

ROLES = ("system", "developer", "user", "assistant", "tool")
RESERVED = ("id", "prompt", "messages", "language")
_DETECT_CHARS = 1000  # language detection reads the start of the text: enough, and fast


def parse_row(value: Any, line: int) -> InputRow | RowError:
    """One input row -> an :class:`InputRow`, or a :class:`RowError` naming the fix.

    Duplicate ids are not checked here (that needs the whole stream: :func:`read_rows` does it).
    """
    if not isinstance(value, dict):
        kind = _json_kind(value)
        hint = "; if the file is one JSON array, convert it with jq -c '.[]'" if isinstance(value, list) else ""
        return RowError(line, f'row is a JSON {kind}, not an object; write {{"prompt": "..."}} per row{hint}')
    row_id = _row_id(value)
    if not isinstance(row_id, str):
        return RowError(line, row_id.message)
    body = _body(value)
    if isinstance(body, _Unreadable):
        return RowError(line, body.message, row_id)
    prompt, messages = body
    language = value.get("language")
    if language is None or language == "":
        text = prompt if prompt is not None else _last_user_text(messages or ())
        language = detect_language(text[:_DETECT_CHARS])
    elif not isinstance(language, str):
        return RowError(
            line, f"language must be a string such as 'de' or 'German' (got {_json_kind(language)})", row_id
        )
    meta = {key: _jsonable(item) for key, item in value.items() if key not in RESERVED}
    return InputRow(row_id, line, prompt, messages, language, meta)


def row_id_given(value: Any) -> bool:
    """Whether a raw row names its own id (else its id is the hash of its content)."""
    return isinstance(value, dict) and value.get("id") not in (None, "")


def _row_id(value: dict[str, Any]) -> str | _Unreadable:
    given = value.get("id")
    if given is None or given == "":
        return stable_id(value)
    if isinstance(given, str):
        return given
    if isinstance(given, int) and not isinstance(given, bool):
        return str(given)
    if isinstance(given, float) and given.is_integer():  # an int column with gaps, as pandas writes it
        return str(int(given))
    return _Unreadable(f"id must be a string or an integer (got {_json_kind(given)} {given!r}); fix or drop it")


def _body(value: dict[str, Any]) -> tuple[str | None, tuple[Message, ...] | None] | _Unreadable:
    prompt, messages = value.get("prompt"), value.get("messages")
    has_prompt = prompt is not None and prompt != ""
    if has_prompt and messages is not None:
        return _Unreadable("row has both prompt and messages; keep one (messages for a chat, prompt for one user turn)")
    if messages is not None:
        checked = _messages(messages)
        return checked if isinstance(checked, _Unreadable) else (None, checked)
    if prompt == "":
        return _Unreadable("prompt is empty; write the user's text in prompt or drop the row")
    if prompt is None:
        columns = ", ".join(sorted(value)[:8]) or "none"
        fix = "name the column holding the user's text 'prompt' (or give a 'messages' chat)"
        return _Unreadable(f"row has no prompt or messages (its columns: {columns}); {fix}")
    if not isinstance(prompt, str):
        return _Unreadable(f"prompt must be a string (got {_json_kind(prompt)}); quote it or use messages")
    if not prompt.strip():
        return _Unreadable("prompt is blank (only whitespace); write the user's text in prompt or drop the row")
    return prompt, None


def _messages(value: Any) -> tuple[Message, ...] | _Unreadable:
    shape = 'a non-empty list of {"role": ..., "content": ...} objects ending with a user turn'
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return _Unreadable(f"messages is text that is not valid JSON; write {shape}")
    if not isinstance(value, list) or not value:
        return _Unreadable(f"messages must be {shape} (got {_json_kind(value) if value else 'an empty list'})")
    checked: list[Message] = []
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            return _Unreadable(f"messages[{i}] is a JSON {_json_kind(message)}, not an object; write {shape}")
        message = {key: item for key, item in message.items() if item is not None}  # Arrow fills absent keys
        problem = _message_problem(message)
        if problem:
            return _Unreadable(f"messages[{i}] {problem}")
        checked.append(message)
    last = checked[-1]
    if last["role"] != "user":
        fix = "end the chat with the user turn to answer (move a final reply out of messages)"
        return _Unreadable(f"the last message is from {last['role']!r}; {fix}")
    if not last["content"] or (isinstance(last["content"], str) and not last["content"].strip()):
        return _Unreadable("the last user message is empty; write the user's text or drop the row")
    return tuple(checked)


def _message_problem(message: dict[str, Any]) -> str | None:
    role, content = message.get("role"), message.get("content")
    if role is None and "from" in message and "value" in message:
        return 'is in ShareGPT form {"from", "value"}; use {"role", "content"} (human -> user, gpt -> assistant)'
    if role not in ROLES:
        return f"role must be one of {', '.join(ROLES)} (got {role!r})"
    if isinstance(content, str):
        return None
    if isinstance(content, list) and all(isinstance(p, dict) and isinstance(p.get("type"), str) for p in content):
        return None
    return 'content must be a string or a list of parts like {"type": "text", "text": "..."}'


def _last_user_text(messages: tuple[Message, ...]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def _json_kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _jsonable(value: Any) -> Any:
    """A meta value that JSON can write: dates as ISO text, NaN as null, any other type as its str()."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)
