"""Shared fixtures. Nothing here reaches beyond 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def golden():
    """Compare text with tests/golden/NAME; UPDATE_GOLDEN=1 rewrites the file instead."""

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if os.environ.get("UPDATE_GOLDEN"):
            path.write_text(text, encoding="utf-8")
        assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1 to create it"
        assert text == path.read_text(encoding="utf-8")

    return check
