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
from typing import TYPE_CHECKING, Any

from tether import dump_manifest as manifests
from tether.errors import TetherError
from tether.locality import is_local_host
from tether.paths import dumps_dir
from tether.redis_client import RedisAddress, RedisError, connect

if TYPE_CHECKING:
    import redis

ProgressCallback = Callable[[int], None]
SNAPSHOT_LABEL = "redis"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class SnapshotResult:
    path: Path
    manifest: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {"path": str(self.path), **self.manifest}


def parse_keyspace(info: dict[str, Any]) -> dict[str, int]:
    """redis-py's ``INFO keyspace`` ({"db0": {"keys": 3, ...}}) → {"db0": 3}."""
    counts: dict[str, int] = {}
    for key, value in info.items():
        if key.startswith("db") and key[2:].isdigit() and isinstance(value, dict):
            counts[key] = int(value.get("keys", 0))
    return counts


def _lastsave(client: redis.Redis) -> int:
    """LASTSAVE as Unix seconds (redis-py hands it back as a local datetime)."""
    return int(client.lastsave().timestamp())


def _wait_for_next_second(client: redis.Redis, lastsave: int) -> None:
    """LASTSAVE counts whole seconds: start only once the server's clock is past it, so our save shows."""
    while True:
        seconds, micros = client.time()
        if seconds > lastsave:
            return
        time.sleep(max(0.01, (lastsave + 1 - seconds) - micros / 1e6 + 0.01))


def _wait_until_idle(client: redis.Redis, where: str, deadline: float) -> None:
    while client.info("persistence").get("rdb_bgsave_in_progress") == 1:
        if time.monotonic() > deadline:
            raise RedisError(f"{where} was still busy with an earlier background save when we gave up waiting. "
                             "Try again when it has finished.")
        time.sleep(0.1)


def request_snapshot(client: redis.Redis, where: str, timeout: float) -> tuple[int, dict[str, int], int]:
    """BGSAVE and wait until LASTSAVE moves; returns (lastsave, keyspace, dbsize) as of the snapshot."""
    from redis.exceptions import ResponseError

    deadline = time.monotonic() + timeout
    while True:
        before = _lastsave(client)
        _wait_for_next_second(client, before)
        keyspace = parse_keyspace(client.info("keyspace"))
        dbsize = int(client.dbsize())
        try:
            # SCHEDULE: during an AOF rewrite, save right after it instead of failing.
            client.bgsave(schedule=True)
            break
        except ResponseError as error:
            if "already in progress" not in str(error):
                raise
            # That save began before we asked, so it may miss recent writes: let it finish, then save ours.
            _wait_until_idle(client, where, deadline)
    while time.monotonic() < deadline:
        lastsave = _lastsave(client)
        if lastsave > before:
            return lastsave, keyspace, dbsize
        persistence = client.info("persistence")
        if persistence.get("rdb_bgsave_in_progress") == 0 and persistence.get("rdb_last_bgsave_status") == "err":
            raise RedisError(f"{where} failed to write its snapshot (BGSAVE). Its log says why; a full disk or an "
                             "unwritable `dir` are the usual causes.")
        time.sleep(0.05)
    raise RedisError(f"{where} did not finish its snapshot within {timeout:.0f}s. A large dataset needs a longer "
                     "timeout.")


def _rdb_location(client: redis.Redis, where: str) -> Path:
    from redis.exceptions import ResponseError

    try:
        directory = client.config_get("dir").get("dir")
        filename = client.config_get("dbfilename").get("dbfilename")
    except ResponseError as error:
        raise RedisError(f"Cannot find where {where} keeps its RDB file: {error} (CONFIG GET is disabled on "
                         "managed Redis services; this command is for the local dev Redis).") from None
    if not directory or not filename:
        raise RedisError(f"{where} did not say where it keeps its RDB file (CONFIG GET dir / dbfilename).")
    return Path(str(directory)) / str(filename)


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
    where = f"Redis at {address.masked_url()}"
    with connect(address, timeout=max(10.0, timeout)) as client:
        version = str(client.info("server").get("redis_version", "unknown"))
        lastsave, keyspace, dbsize = request_snapshot(client, where, timeout)
        source = _rdb_location(client, where)
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
