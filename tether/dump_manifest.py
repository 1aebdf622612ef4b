"""Manifests beside dumps and snapshots: sizes and checksums written atomically, then checked before any use.

A dump ``dumps/dev-20250101T120000Z.dump`` has its manifest in ``dumps/dev-20250101T120000Z.dump.json``.
The manifest is written last, so an artifact without one is an interrupted run and is never restored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tether.errors import TetherError
from tether.processes import pid_exists

MANIFEST_VERSION = 1
MANIFEST_SUFFIX = ".json"
_CHUNK = 1 << 20
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.partial$")


class DumpIntegrityError(TetherError):
    """A dump's manifest is missing or unreadable, or the dump no longer matches it."""

    exit_code = 4


def manifest_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + MANIFEST_SUFFIX)


def utc_stamp(moment: datetime) -> str:
    """The timestamp in artifact names: ``20250101T120000Z`` (sorts like time, safe in every file system)."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def safe_label(text: str) -> str:
    """A database name or spec reduced to characters that are safe in a file name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._-")
    return cleaned or "database"


def unique_artifact(directory: Path, label: str, moment: datetime, extension: str) -> Path:
    """``<label>-<stamp><extension>``, with ``-2``, ``-3``... when two runs land in the same second."""
    stem = f"{label}-{utc_stamp(moment)}"
    candidate = directory / f"{stem}{extension}"
    counter = 2
    while candidate.exists() or manifest_path(candidate).exists():
        candidate = directory / f"{stem}-{counter}{extension}"
        counter += 1
    return candidate


def partial_path(final: Path) -> Path:
    """Where an artifact is written before the rename that publishes it (hidden, tagged with our pid)."""
    return final.with_name(f".{final.name}.{os.getpid()}.partial")


def remove_artifact(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_partials(directory: Path) -> list[str]:
    """Remove half-written artifacts whose writing process is gone; returns their names."""
    removed: list[str] = []
    for entry in directory.iterdir():
        match = _PARTIAL.match(entry.name)
        if match and not pid_exists(int(match["pid"])):
            remove_artifact(entry)
            removed.append(entry.name)
    return removed


def _files_of(root: Path) -> Iterator[tuple[str, Path]]:
    """Every regular file under ``root`` as (relative POSIX name, path), sorted by name."""
    found = [(path.relative_to(root).as_posix(), path) for path in root.rglob("*") if path.is_file()]
    yield from sorted(found)


def size_of(path: Path) -> int:
    """Bytes in a file, or in every file of a directory (0 while it does not exist yet)."""
    try:
        if path.is_dir():
            return sum(file.stat().st_size for _, file in _files_of(path))
        return path.stat().st_size
    except FileNotFoundError:
        # A directory dump's files appear and grow while we count them.
        return 0


def sha256_of(path: Path) -> str:
    """The file's sha256; for a directory, one sha256 over each sorted file's name, size and contents."""
    digest = hashlib.sha256()
    if not path.is_dir():
        _feed(digest, path)
        return digest.hexdigest()
    for name, file in _files_of(path):
        # Name and size delimit each file, so moving bytes between files changes the checksum.
        digest.update(name.encode() + b"\0" + str(file.stat().st_size).encode() + b"\0")
        _feed(digest, file)
    return digest.hexdigest()


def _feed(digest: Any, file: Path) -> None:
    with file.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)


def restrict(path: Path) -> None:
    """Dumps hold production data: readable by their owner only."""
    if path.is_dir():
        path.chmod(0o700)
        for _, file in _files_of(path):
            file.chmod(0o600)
    else:
        path.chmod(0o600)


def write_manifest(artifact: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write ``artifact``'s manifest atomically (temporary file, then rename); returns what was written."""
    target = manifest_path(artifact)
    temporary = partial_path(target)
    data = {"manifest_version": MANIFEST_VERSION, "file": artifact.name, **manifest}
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    temporary.chmod(0o600)
    os.replace(temporary, target)
    return data


def read_manifest(artifact: Path) -> dict[str, Any]:
    """The manifest of ``artifact``; a missing or unreadable one is a ``DumpIntegrityError``."""
    path = manifest_path(artifact)
    if not path.exists():
        raise DumpIntegrityError(
            f"{artifact.name} has no manifest ({path.name}), so its integrity cannot be checked: it may be the "
            "leftover of an interrupted dump or a file copied from elsewhere. Refusing to use it. Make a new dump "
            "with `invoke db.dump`.")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DumpIntegrityError(f"The manifest {path.name} is unreadable ({error}). Refusing to use "
                                 f"{artifact.name}; make a new dump with `invoke db.dump`.") from None
    if not isinstance(data, dict) or not isinstance(data.get("sha256"), str):
        raise DumpIntegrityError(f"The manifest {path.name} has no sha256 checksum. Refusing to use {artifact.name}; "
                                 "make a new dump with `invoke db.dump`.")
    return data


def verify(artifact: Path) -> dict[str, Any]:
    """Check ``artifact`` against its manifest (size, then sha256); returns the manifest."""
    manifest = read_manifest(artifact)
    if not artifact.exists():
        raise DumpIntegrityError(f"{artifact.name} is listed in its manifest but the file itself is missing.")
    size = size_of(artifact)
    expected_size = manifest.get("size_bytes")
    if expected_size is not None and size != expected_size:
        raise DumpIntegrityError(
            f"{artifact.name} is {size} bytes but its manifest says {expected_size}: the file was truncated or "
            "changed after it was written. Refusing to use it; make a new dump.")
    actual = sha256_of(artifact)
    if actual != manifest["sha256"]:
        raise DumpIntegrityError(
            f"{artifact.name} does not match its manifest's checksum (sha256 {actual[:12]}… instead of "
            f"{manifest['sha256'][:12]}…): the file is corrupted or was changed after it was written. "
            "Refusing to use it; make a new dump.")
    return manifest


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
