"""Redis snapshots: ask the server for a fresh RDB file (BGSAVE) and copy it into dumps/ with a manifest.

The copy is read from the server's own data directory, so this works for a Redis on this machine
(the native dev stack); as root we can read it even though the server runs as another user.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tether import dump_manifest as manifests
from tether.conninfo import is_local_host
from tether.errors import TetherError
from tether.paths import dumps_dir
from tether.redis_client import RedisAddress, RedisConnection, RedisError

ProgressCallback = Callable[[int], None]
SNAPSHOT_LABEL = "redis"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class SnapshotResult:
    path: Path
    manifest: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {"path": str(self.path), **self.manifest}


def parse_info(text: str) -> dict[str, str]:
    """``INFO`` text → {field: value}, section headers and blank lines skipped."""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def parse_keyspace(info: dict[str, str]) -> dict[str, int]:
    """``db0:keys=3,expires=0,avg_ttl=0`` → {"db0": 3}."""
    counts: dict[str, int] = {}
    for key, value in info.items():
        if key.startswith("db") and key[2:].isdigit():
            fields = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
            counts[key] = int(fields.get("keys", 0))
    return counts


def _integer(conn: RedisConnection, *command: str) -> int:
    reply = conn.command(*command)
    if not isinstance(reply, int | str):
        raise RedisError(f"Redis at {conn.address.masked_url()} answered {command[0]} with {reply!r}, not a number.")
    return int(reply)


def _info(conn: RedisConnection, section: str) -> dict[str, str]:
    return parse_info(str(conn.command("INFO", section)))


def _wait_for_next_second(conn: RedisConnection, lastsave: int) -> None:
    """LASTSAVE counts whole seconds: start only once the server's clock is past it, so our save shows."""
    while True:
        reply = conn.command("TIME")
        if not isinstance(reply, list) or len(reply) != 2:
            raise RedisError(f"Redis at {conn.address.masked_url()} answered TIME with {reply!r}.")
        seconds, micros = int(reply[0]), int(reply[1])
        if seconds > lastsave:
            return
        time.sleep(max(0.01, (lastsave + 1 - seconds) - micros / 1e6 + 0.01))


def _wait_until_idle(conn: RedisConnection, deadline: float) -> None:
    while _info(conn, "persistence").get("rdb_bgsave_in_progress") == "1":
        if time.monotonic() > deadline:
            raise RedisError(f"Redis at {conn.address.masked_url()} was still busy with an earlier background save "
                             "when we gave up waiting. Try again when it has finished.")
        time.sleep(0.1)


def request_snapshot(conn: RedisConnection, timeout: float) -> tuple[int, dict[str, int], int]:
    """BGSAVE and wait until LASTSAVE moves; returns (lastsave, keyspace, dbsize) as of the snapshot."""
    deadline = time.monotonic() + timeout
    while True:
        before = _integer(conn, "LASTSAVE")
        _wait_for_next_second(conn, before)
        keyspace = parse_keyspace(_info(conn, "keyspace"))
        dbsize = _integer(conn, "DBSIZE")
        try:
            # SCHEDULE: during an AOF rewrite, save right after it instead of failing.
            reply = str(conn.command("BGSAVE", "SCHEDULE"))
            break
        except RedisError as error:
            if "already in progress" not in error.message:
                raise
            # That save began before we asked, so it may miss recent writes: let it finish, then save ours.
            _wait_until_idle(conn, deadline)
    started = "started" in reply.lower()
    while time.monotonic() < deadline:
        lastsave = _integer(conn, "LASTSAVE")
        if lastsave > before:
            return lastsave, keyspace, dbsize
        persistence = _info(conn, "persistence")
        if started and persistence.get("rdb_bgsave_in_progress") == "0" \
                and persistence.get("rdb_last_bgsave_status") == "err":
            raise RedisError(f"Redis at {conn.address.masked_url()} failed to write its snapshot (BGSAVE). Its log "
                             "says why; a full disk or an unwritable `dir` are the usual causes.")
        time.sleep(0.05)
    raise RedisError(f"Redis at {conn.address.masked_url()} did not finish its snapshot within {timeout:.0f}s. "
                     "A large dataset needs a longer timeout.")


def _rdb_location(conn: RedisConnection) -> Path:
    try:
        directory = conn.command("CONFIG", "GET", "dir")
        filename = conn.command("CONFIG", "GET", "dbfilename")
    except RedisError as error:
        raise RedisError(f"Cannot find where Redis keeps its RDB file: {error.message} (CONFIG GET is disabled on "
                         "managed Redis services; this command is for the local dev Redis).") from None
    if not (isinstance(directory, list) and len(directory) == 2 and isinstance(filename, list) and len(filename) == 2):
        raise RedisError("Redis did not say where it keeps its RDB file (CONFIG GET dir / dbfilename).")
    return Path(str(directory[1])) / str(filename[1])


def copy_with_checksum(source: Path, destination: Path, on_progress: ProgressCallback | None = None) -> tuple[int, str]:
    """Copy ``source`` to ``destination`` (mode 0600); returns (size, sha256) of what was copied."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with source.open("rb") as reader, os.fdopen(fd, "wb") as writer:
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            if on_progress is not None:
                on_progress(size)
    return size, digest.hexdigest()


def save_redis_snapshot(address: RedisAddress, database: str = "dev", *, timeout: float = 120.0,
                        directory: Path | None = None, on_progress: ProgressCallback | None = None) -> SnapshotResult:
    """Have Redis write a fresh snapshot and copy it to ``dumps/redis-<UTC stamp>.rdb`` with a manifest."""
    if not is_local_host(address.host):
        raise TetherError(f"Redis at {address.masked_url()} is not on this machine: a snapshot is copied from the "
                          "server's own data directory, which is only readable for a local Redis. Use the hosting "
                          "service's export instead.")
    directory = directory or dumps_dir()
    manifests.clean_partials(directory)
    created = datetime.now(UTC)
    started = time.monotonic()
    with RedisConnection(address, timeout=max(10.0, timeout)) as conn:
        version = _info(conn, "server").get("redis_version", "unknown")
        lastsave, keyspace, dbsize = request_snapshot(conn, timeout)
        source = _rdb_location(conn)
    final = manifests.unique_artifact(directory, SNAPSHOT_LABEL, created, ".rdb")
    partial = manifests.partial_path(final)
    try:
        size, checksum = copy_with_checksum(source, partial, on_progress)
        os.replace(partial, final)
    except (FileNotFoundError, PermissionError) as error:
        manifests.remove_artifact(partial)
        raise TetherError(
            f"Redis wrote its snapshot to {source}, but that file is not readable here ({error.strerror}). This "
            "works for the native dev stack's Redis; when Redis runs in a container or on another machine, copy "
            f"the file out of it (e.g. `docker cp <container>:{source} dumps/`).") from None
    except BaseException:
        manifests.remove_artifact(partial)
        raise
    manifest = {
        "kind": "redis",
        "database": database,
        "source": address.masked_url(),
        "created": manifests.utc_iso(created),
        "duration_seconds": round(time.monotonic() - started, 3),
        "format": "rdb",
        "size_bytes": size,
        "sha256": checksum,
        "redis_version": version,
        "lastsave": lastsave,
        "keys": sum(keyspace.values()),
        "keyspace": keyspace,
        "dbsize": dbsize,
        "rdb_source": str(source),
    }
    manifest = manifests.write_manifest(final, manifest)
    return SnapshotResult(final, manifest)
