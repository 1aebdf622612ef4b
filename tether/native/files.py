"""Writing a generated file so that a reader only ever sees the old content or the new, never half of either."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tether.errors import TetherError
from tether.native.sysuser import ServiceUser


def atomic_write(path: Path, text: str, mode: int = 0o600, owner: ServiceUser | None = None) -> None:
    """Replace ``path`` with ``text``: a temporary file in the same directory, fsync, then ``os.replace``.

    Another process starting a server at the same moment reads either the old file or the new one: a file
    rewritten in place can be read empty, and an empty postgresql.conf means port 5432.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise TetherError(f"Cannot write {path}: {error.strerror or error}. Nothing was changed.") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if owner is not None:
                os.fchown(handle.fileno(), owner.uid, owner.gid)
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise TetherError(f"Cannot write {path}: {error.strerror or error}. It was left as it was.") from None
        raise
    # The rename is durable only once the directory entry is on disk too.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
