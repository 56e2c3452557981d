"""resolve_backend / OwnedBackend: a backend built from a spec is closed by its holder, one passed in is not."""

from __future__ import annotations

import pytest

from fusion_of_n.backends import ModelSpec, OwnedBackend, resolve_backend
from fusion_of_n.testing import FakeBackend


async def test_a_backend_built_from_a_spec_is_owned_and_closed_on_exit() -> None:
    held = resolve_backend("fake:echo", {})
    assert held.owned and isinstance(held.backend, FakeBackend)
    async with held as backend:
        assert backend is held.backend
    assert held.backend.closed


async def test_a_parsed_spec_is_built_and_owned_too() -> None:
    held = resolve_backend(ModelSpec.parse("fake:echo"))
    assert held.owned
    await held.aclose()
    assert held.backend.closed  # type: ignore[attr-defined]


async def test_a_backend_object_passed_in_stays_open() -> None:
    mine = FakeBackend()
    async with resolve_backend(mine) as backend:
        assert backend is mine
    await OwnedBackend(mine, owned=False).aclose()
    assert not mine.closed


async def test_an_owned_backend_is_closed_even_when_the_body_fails() -> None:
    held = resolve_backend("fake:echo", {})
    with pytest.raises(RuntimeError, match="boom"):
        async with held:
            raise RuntimeError("boom")
    assert held.backend.closed  # type: ignore[attr-defined]
