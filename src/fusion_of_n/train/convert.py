"""A trained Hugging Face folder -> one GGUF file (q8_0) that ``local:`` loads, by llama.cpp's converter.

The converter is llama.cpp's own ``convert_hf_to_gguf.py`` (with its ``conversion/`` package and the
matching ``gguf-py``). It is not part of the llama-cpp-python wheel, so it is taken from the
llama-cpp-python source distribution of the installed version, fetched once with
``pip download --no-binary llama-cpp-python`` and unpacked (those three entries only) into
``CACHE/tools/llama.cpp-VERSION/``. ``make install-dev`` does this at install time
(``python -m fusion_of_n.train --fetch-converter``), so training needs no network; a llama.cpp
checkout of your own can be named instead (``--llama-cpp DIR``, or ``FUSION_OF_N_LLAMA_CPP``).

The converter runs in a subprocess with this interpreter; it writes to a temporary file that is moved
into place only when it succeeded, so ``model.gguf`` is whole or absent.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..errors import ConfigError, MissingDependency

log = logging.getLogger(__name__)

__all__ = ["converter_dir", "fetch_converter", "hf_to_gguf"]

SCRIPT = "convert_hf_to_gguf.py"
_MEMBERS = (SCRIPT, "conversion/", "gguf-py/", "LICENSE")
_DEFAULT_VERSION = "0.3.36"  # the pinned llama-cpp-python of the `local` extra


def llama_cpp_version() -> str:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return _DEFAULT_VERSION


def cached_converter(cache_dir: Path) -> Path:
    return Path(cache_dir) / "tools" / f"llama.cpp-{llama_cpp_version()}"


def converter_dir(cache_dir: Path, explicit: str | Path | None = None) -> Path:
    """The folder holding ``convert_hf_to_gguf.py``: ``explicit`` when given, else the cached copy;
    MissingDependency naming the fetch command when neither is there."""
    if explicit:
        folder = Path(explicit).expanduser()
        if not (folder / SCRIPT).is_file():
            raise ConfigError(f"{folder} has no {SCRIPT}; pass the root of a llama.cpp checkout with --llama-cpp")
        return folder
    folder = cached_converter(cache_dir)
    if (folder / SCRIPT).is_file():
        return folder
    raise MissingDependency(
        f"llama.cpp's GGUF converter is not in {folder}; fetch it once with: "
        f"{Path(sys.executable).name} -m fusion_of_n.train --fetch-converter (needs PyPI), "
        "or pass a llama.cpp checkout with --llama-cpp DIR"
    )


def fetch_converter(cache_dir: Path) -> Path:
    """Download the llama-cpp-python sdist of the installed version and unpack the converter into the cache."""
    folder = cached_converter(cache_dir)
    if (folder / SCRIPT).is_file():
        return folder
    version = llama_cpp_version()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        # --no-binary for this one package: with :all:, pip built its build requirements from source too (~25 s)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-python", "-q",
                   "-d", scratch, f"llama-cpp-python=={version}"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        archives = list(Path(scratch).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise MissingDependency(
                f"could not download the llama-cpp-python {version} source for its GGUF converter "
                f"({_tail(done.stderr)}); pass a llama.cpp checkout with --llama-cpp DIR"
            )
        unpacked = Path(scratch) / "unpacked"
        prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        with tarfile.open(archives[0]) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(tuple(prefix + e for e in _MEMBERS))]
            if not any(m.name == prefix + SCRIPT for m in members):
                raise MissingDependency(f"the llama-cpp-python {version} source has no {SCRIPT}")
            archive.extractall(unpacked, members=members, filter="data")
        os.replace(unpacked / prefix, folder)
    log.info("unpacked llama.cpp's GGUF converter into %s", folder)
    return folder


def hf_to_gguf(hf_dir: Path, target: Path, converter: Path, *, outtype: str = "q8_0") -> Path:
    """Convert ``hf_dir`` into ``target`` (atomically); a failure is a ConfigError with the converter's
    last lines. The converter puts its own ``gguf-py`` first on its path, so it matches the script."""
    scratch = target.with_name(f".{target.name}.tmp")
    command = [sys.executable, str(converter / SCRIPT), str(hf_dir), "--outtype", outtype, "--outfile", str(scratch)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not scratch.is_file():
        scratch.unlink(missing_ok=True)
        raise ConfigError(f"llama.cpp's converter failed on {hf_dir}: {_tail(done.stderr or done.stdout)}")
    os.replace(scratch, target)
    return target


def _tail(text: str, lines: int = 3) -> str:
    kept = [line for line in (text or "").strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or "no output"
