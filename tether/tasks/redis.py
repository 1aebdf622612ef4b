"""Tasks for Redis (collection ``redis``): save a snapshot of the dev Redis into dumps/."""

from __future__ import annotations

from invoke import Context, task

from tether.console import console
from tether.errors import ConfigError
from tether.tasks.boundary import domain_errors, print_json
from tether.tasks.dumps import byte_progress, human_size

# tether.endpoints and tether.redis_snapshot are imported when the task runs, so every `invoke` command starts faster.


@task(help={"db": "which stack's Redis (only dev has one)", "json": "print the manifest as JSON"})
@domain_errors
def save(c: Context, db: str = "dev", json_: bool = False) -> None:
    """Snapshot the dev Redis (BGSAVE) and copy its RDB file into dumps/ with a manifest."""
    from tether.endpoints import dev_endpoints
    from tether.redis_snapshot import save_redis_snapshot

    if db != "dev":
        raise ConfigError(f"Only the dev stack has a Redis to snapshot; --db {db!r} is not one. Use --db dev.")
    address = dev_endpoints().redis.address
    with byte_progress("Redis snapshot") as on_progress:
        result = save_redis_snapshot(address, db, on_progress=on_progress)
    if json_:
        print_json(result.summary())
        return
    manifest = result.manifest
    console().print(f"Saved Redis {manifest['redis_version']} ({manifest['source']}): {manifest['keys']:,} keys, "
                    f"{human_size(manifest['size_bytes'])} in {manifest['duration_seconds']:.1f}s → {result.path}")
