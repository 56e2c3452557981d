"""From files inside installed packages to one verified model file, without running any package code.

Packages are never imported: a package's folder is found by the import system's finders
(``importlib.util.find_spec`` of a top-level name executes nothing) and a file is read from a known path
inside it, so no code in a model package runs, before or after the hash check.

Assembly happens once per cache folder: the parts are streamed in order into a temporary file in the
same folder while hashing, the digest is checked, the file is fsynced and moved into place with
``os.replace`` (readers see either nothing or the whole file). An ``fcntl`` lock on ``<file>.lock`` keeps
two processes from assembling at once. After a successful check a stamp ``<file>.verified.json``
(for a file used in place: a stamp path the caller picks, in the cache) records size, mtime_ns and
sha256; later resolutions trust the file while the stamp matches its current size and mtime and re-hash
it otherwise (a changed, replaced or touched file is re-verified, and re-assembled from the parts if it
no longer matches).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from ...errors import ModelIntegrityError

log = logging.getLogger(__name__)

_BLOCK = 1 << 20


def reinstall_command(packages: Sequence[str]) -> str:
    return "pip install --no-deps --force-reinstall " + " ".join(packages)


def package_dirs(module: str) -> list[Path]:
    """The folders of the top-level package ``module``, without executing any of its code.

    ``find_spec`` of a top-level name only asks the finders where the package is; for a dotted name it
    would import (run) the parent packages first, so dotted names are refused.
    """
    if "." in module:
        raise ValueError(f"model package {module!r} must be a top-level name (finding a dotted one imports its parent)")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return []
    if spec is None or spec.submodule_search_locations is None:
        return []
    return [Path(folder) for folder in spec.submodule_search_locations]


def package_installed(module: str) -> bool:
    """Whether the top-level package ``module`` is installed, found without importing it."""
    return bool(package_dirs(module))


def package_file(module: str, relative: str) -> Path | None:
    """``relative`` inside the package ``module`` (the first of its folders that has it; else in the
    first folder, for the error message); None when the package is not installed. Nothing is imported."""
    folders = package_dirs(module)
    if not folders:
        return None
    for folder in folders:
        if (folder / relative).is_file():
            return folder / relative
    return folders[0] / relative


def assembled(
    target: Path, sha256: str, parts: Callable[[], list[Path]], *, name: str, packages: Sequence[str]
) -> Path:
    """``target`` once it matches ``sha256``: trusted by its stamp, re-hashed, or assembled from ``parts()``
    (called only when needed) under a lock. ``name`` and ``packages`` make the error messages."""
    if stamp_matches(target, sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f"{target.name}.lock"):
        # Another process may have finished while we waited for the lock.
        if stamp_matches(target, sha256):
            return target
        if target.is_file():
            if sha256_file(target) == sha256:
                write_stamp(target, sha256)
                return target
            log.warning("%s does not match its sha256; assembling it again from the parts", target)
            target.unlink()
        assemble_parts(parts(), target, sha256, name=name, packages=packages)
    return target


def assemble_parts(parts: Sequence[Path], target: Path, sha256: str, *, name: str, packages: Sequence[str]) -> None:
    """Concatenate ``parts`` into ``target`` atomically, refusing a result that does not match ``sha256``."""
    started = time.perf_counter()
    log.info("assembling %s from %d parts into %s", name, len(parts), target)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o644)  # mkstemp makes 0600; a shared cache must stay readable
            for part in parts:
                with part.open("rb") as src:
                    _copy_hashing(src, out, digest)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise ModelIntegrityError(
                f"model {name!r} assembled from {len(parts)} parts has sha256 {digest.hexdigest()}, "
                f"expected {sha256}; reinstall the exact pins with: {reinstall_command(packages)}"
            )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    write_stamp(target, sha256)
    log.info("assembled %s (%d bytes) in %.1f s", target, target.stat().st_size, time.perf_counter() - started)


def verify_in_place(path: Path, sha256: str, stamp: Path, *, name: str, package: str) -> None:
    """Check a file used in place against ``sha256``, trusting (and else writing) a matching ``stamp``."""
    if stamp_matches(path, sha256, stamp):
        return
    digest = sha256_file(path)
    if digest != sha256:
        raise ModelIntegrityError(
            f"model {name!r} file {path} has sha256 {digest}, expected {sha256}; reinstall the "
            f"exact pin with: {reinstall_command([package])}"
        )
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        write_stamp(path, sha256, stamp)
    except OSError as exc:  # a read-only cache: verified now, verified again next time
        log.debug("could not record the verification of %s in %s: %s", path, stamp, exc)


def _copy_hashing(src: BinaryIO, out: BinaryIO, digest: hashlib._Hash) -> None:
    while block := src.read(_BLOCK):
        digest.update(block)
        out.write(block)


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks (model files; train data files)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified.json")


def stamp_matches(target: Path, sha256: str, stamp_path: Path | None = None) -> bool:
    """Whether the stamp (default ``<target>.verified.json``) vouches for ``target`` as it is now."""
    try:
        stamp = json.loads((stamp_path or _stamp_path(target)).read_text())
        stat = target.stat()
    except (OSError, ValueError):
        return False
    return isinstance(stamp, dict) and stamp == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}


def write_stamp(target: Path, sha256: str, stamp_path: Path | None = None) -> None:
    """Record that ``target``, as it is now, has ``sha256`` (atomically)."""
    stat = target.stat()
    stamp = stamp_path or _stamp_path(target)
    fd, tmp = tempfile.mkstemp(dir=stamp.parent, prefix=f".{stamp.name}.", suffix=".tmp")  # unique: no lock needed
    try:
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o644)  # a shared cache stays readable
            fh.write(json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}))
        os.replace(tmp, stamp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``fcntl`` lock on ``path`` (created if missing) between processes."""
    with path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
