"""Trained students: train output folders as models, and the registry of them in the cache.

A ``fusion-of-n train`` output folder ``DIR`` holds ``train.json`` (kind ``fusion-of-n train``) and,
once finished, ``model.gguf``; ``local:DIR`` loads the latter (:func:`student_gguf`).

Trained students are remembered in the cache: ``register_student`` writes one small JSON file per
output folder, ``<cache>/students/<sha256(abs path)[:16]>.json`` holding ``{"path": "<abs DIR>"}``
(written atomically with ``os.replace``; registering the same folder twice changes nothing).
``list_students`` reads those entries (pruning the ones whose folder is gone) plus every ``train.json``
found under the folders it is asked to search, and reports each student's manifest and GGUF.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["STUDENT_GGUF", "TRAIN_KIND", "TRAIN_MANIFEST", "StudentStatus", "list_students", "register_student",
           "student_gguf"]  # fmt: skip

TRAIN_KIND = "fusion-of-n train"
TRAIN_MANIFEST = "train.json"
STUDENT_GGUF = "model.gguf"
_MANIFEST_MAX_BYTES = 1 << 20  # a manifest is small; a bigger train.json is somebody's data set


@dataclass(frozen=True)
class StudentStatus:
    """One ``fusion-of-n train`` output folder as ``fusion-of-n models`` shows it."""

    path: Path  # the output folder, absolute
    spec: str  # local:<path>, ready for --model / --fusor
    base: str
    method: str
    status: str  # "complete" once finished; "running" while training
    examples: int  # training examples
    gguf: bool  # model.gguf is there
    size: int | None  # bytes of model.gguf


def student_gguf(folder: Path) -> Path:
    """``folder/model.gguf`` of a train output; ConfigError quoting the manifest's status when it is missing."""
    gguf = folder / STUDENT_GGUF
    if gguf.is_file():
        return gguf
    try:
        manifest = _read_manifest(folder / TRAIN_MANIFEST)
    except ConfigError as exc:
        raise ConfigError(
            f"{folder} has no {STUDENT_GGUF} and {exc}; pass a `fusion-of-n train` output folder or a .gguf file"
        ) from None
    if manifest is None:
        raise ConfigError(
            f"{folder} has no {STUDENT_GGUF} and no {TRAIN_MANIFEST}; pass the folder `fusion-of-n train -o DIR` "
            "wrote, or a .gguf file"
        )
    raise ConfigError(
        f"{folder} has no {STUDENT_GGUF}; is it a `fusion-of-n train` output that finished? "
        f"({TRAIN_MANIFEST} status: {manifest.get('status', 'unknown')})"
    )


def _read_manifest(path: Path) -> dict[str, Any] | None:
    """The train manifest at ``path``; None if absent or some other file called train.json; ConfigError if broken."""
    try:
        if path.stat().st_size > _MANIFEST_MAX_BYTES:
            return None
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is unreadable ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != TRAIN_KIND:
        return None
    return manifest


def _student_status(folder: Path, manifest: Mapping[str, Any]) -> StudentStatus:
    examples = manifest.get("examples")
    train = examples.get("train") if isinstance(examples, dict) else None
    gguf = folder / STUDENT_GGUF
    try:
        size: int | None = gguf.stat().st_size
    except OSError:
        size = None
    return StudentStatus(
        path=folder,
        spec=f"local:{folder}",
        base=str(manifest.get("base", "?")),
        method=str(manifest.get("method", "?")),
        status=str(manifest.get("status", "unknown")),
        examples=train if isinstance(train, int) else 0,
        gguf=size is not None,
        size=size,
    )


def _registry_entry(cache_dir: Path, folder: Path) -> Path:
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    return Path(cache_dir) / "students" / f"{digest}.json"


def register_student(cache_dir: Path, out_dir: Path) -> None:
    """Remember the train output folder ``out_dir`` in ``cache_dir/students``; idempotent."""
    folder = Path(out_dir).expanduser().resolve()
    if _read_manifest(folder / TRAIN_MANIFEST) is None:
        raise ConfigError(
            f"{folder} has no {TRAIN_MANIFEST} of kind {TRAIN_KIND!r}; "
            "register the folder `fusion-of-n train -o DIR` wrote"
        )
    entry = _registry_entry(cache_dir, folder)
    text = json.dumps({"path": str(folder)}) + "\n"
    with contextlib.suppress(OSError):
        if entry.read_text(encoding="utf-8") == text:
            return
    entry.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=entry.parent, prefix=f".{entry.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o644)
            out.write(text)
        os.replace(tmp_name, entry)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def list_students(cache_dir: Path, search: Sequence[Path] = ()) -> list[StudentStatus]:
    """Registered students whose folder still exists, plus every train output under ``search``, by path."""
    found: dict[Path, StudentStatus] = {}
    for folder in [*_registered(Path(cache_dir)), *_searched(search)]:
        if folder in found:
            continue
        try:
            manifest = _read_manifest(folder / TRAIN_MANIFEST)
        except ConfigError as exc:
            log.warning("skipping student %s: %s", folder, exc)
            continue
        if manifest is None:
            log.debug("skipping %s: no %s of kind %r", folder, TRAIN_MANIFEST, TRAIN_KIND)
            continue
        found[folder] = _student_status(folder, manifest)
    return [found[path] for path in sorted(found)]


def _registered(cache_dir: Path) -> list[Path]:
    folders: list[Path] = []
    for entry in sorted((cache_dir / "students").glob("*.json")):
        try:
            folder = Path(json.loads(entry.read_text(encoding="utf-8"))["path"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("skipping unreadable student registry entry %s (%s); delete it", entry, exc)
            continue
        if not folder.is_dir():
            log.info("forgetting student %s: the folder is gone", folder)
            with contextlib.suppress(OSError):
                entry.unlink()
            continue
        folders.append(folder.resolve())
    return folders


def _searched(search: Sequence[Path]) -> list[Path]:
    folders: list[Path] = []
    for root in search:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise ConfigError(f"student search folder {root} is not a folder; pass one that holds train outputs")
        folders.extend(manifest.parent.resolve() for manifest in sorted(root.rglob(TRAIN_MANIFEST)))
    return folders
