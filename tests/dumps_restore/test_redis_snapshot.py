"""redis.save against the real session Redis: a fresh RDB copied with a manifest that matches it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import redis
from invoke import Context
from invoke.exceptions import Exit

from tests.conftest import free_port
from tether import redis_snapshot
from tether.dump_manifest import manifest_path, verify
from tether.endpoints import write_native_outputs
from tether.errors import TetherError
from tether.native import redis as native_redis
from tether.native.binaries import redis_programs
from tether.native.sysuser import make_private_dir, service_user
from tether.redis_client import RedisAddress, connect
from tether.secrets import generate_password
from tether.tasks import redis as redis_tasks

KEY_DB = 7  # a database of its own on the shared server, so other tests' keys do not matter


def _fill(address: RedisAddress, count: int) -> None:
    with connect(RedisAddress(address.host, address.port, address.password, db=KEY_DB)) as client:
        client.flushdb()
        for number in range(count):
            client.set(f"key:{number}", f"värde {number} ✓")
        client.hset("hash", "field", "value")


def _write_outputs(address: RedisAddress, pg_server) -> None:
    postgres = {"host": "127.0.0.1", "port": pg_server.admin.port, "database": "postgres", "user": "postgres",
                "password": pg_server.admin.password}
    write_native_outputs({"backend": "native", "postgresDev": postgres, "postgresTest": postgres,
                          "redis": {"host": address.host, "port": address.port, "password": address.password}})


def _keys_in_rdb(rdb: Path) -> int:
    """Start a throwaway redis-server on the copied file and count the keys it loaded."""
    user = service_user()
    base = Path(tempfile.mkdtemp(prefix="tether-rdb-check-"))
    base.chmod(0o755)
    try:
        datadir = make_private_dir(base / "data", user)
        shutil.copyfile(rdb, datadir / "dump.rdb")
        if user:
            os.chown(datadir / "dump.rdb", user.uid, user.gid)
        port = free_port()
        server = native_redis.RedisServer(datadir=datadir, server_program=redis_programs()[0], port=port,
                                          password=generate_password(), log_file=datadir / "redis.log",
                                          run_as=user, appendonly=False)
        native_redis.start(server)
        try:
            with connect(RedisAddress("127.0.0.1", port, server.password, db=KEY_DB)) as client:
                return int(client.dbsize())
        finally:
            native_redis.stop(server)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_save_copies_a_fresh_rdb_whose_manifest_matches(redis_server, pg_server, isolated_project, capsys):
    address = redis_server.address
    _fill(address, 25)
    _write_outputs(address, pg_server)

    redis_tasks.save(Context(), json_=True)
    manifest = json.loads(capsys.readouterr().out)
    rdb = Path(manifest["path"])
    assert rdb.parent == isolated_project / "dumps" and rdb.name.startswith("redis-") and rdb.suffix == ".rdb"
    assert rdb.stat().st_mode & 0o777 == 0o600
    assert verify(rdb)["sha256"] == manifest["sha256"]
    assert manifest["keyspace"][f"db{KEY_DB}"] == 26
    assert manifest["keys"] == sum(manifest["keyspace"].values())
    assert manifest["redis_version"].startswith("7.")
    assert address.password not in manifest_path(rdb).read_text()
    assert _keys_in_rdb(rdb) == 26

    # A second save right away (same second as the first) must still wait for a save of its own.
    _fill(address, 3)
    second = redis_snapshot.save_redis_snapshot(address)
    assert second.manifest["lastsave"] > manifest["lastsave"]
    assert second.manifest["keyspace"][f"db{KEY_DB}"] == 4
    assert _keys_in_rdb(second.path) == 4


def test_save_refuses_a_redis_on_another_machine_without_connecting(isolated_project):
    remote = RedisAddress("203.0.113.9", 6379, "not-shown-anywhere")
    with pytest.raises(TetherError, match="not on this machine") as refused:
        redis_snapshot.save_redis_snapshot(remote, timeout=1)
    assert "not-shown-anywhere" not in refused.value.message


def test_save_task_accepts_only_the_dev_stack(isolated_project):
    with pytest.raises(Exit) as stopped:
        redis_tasks.save(Context(), db="prod")
    assert stopped.value.code == 2 and "--db dev" in str(stopped.value.message)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\ndb12:keys=40,expires=2,avg_ttl=5\r\n", {"db0": 3, "db12": 40}),
     ("# Keyspace\r\n", {})],
    ids=["two-dbs", "empty"],
)
def test_parse_keyspace(text, expected):
    from redis._parsers.helpers import parse_info

    assert redis_snapshot.parse_keyspace(parse_info(text)) == expected


def test_save_waits_out_an_earlier_background_save_and_then_takes_its_own(redis_server, isolated_project,
                                                                          monkeypatch):
    address = redis_server.address
    _fill(address, 60)
    refusals: list[str] = []
    bgsave = redis.Redis.bgsave

    def recording(self, *args, **kwargs):
        try:
            return bgsave(self, *args, **kwargs)
        except redis.ResponseError as error:
            refusals.append(str(error))
            raise

    with connect(address) as client:
        # Redis's own test knob: the save child sleeps this long per key (≥ 1.5 s here). The child keeps the
        # value it was forked with, so resetting it at once leaves only that earlier save slow.
        client.config_set("rdb-key-save-delay", "25000")
        try:
            client.bgsave()
        finally:
            client.config_set("rdb-key-save-delay", "0")
    with connect(RedisAddress(address.host, address.port, address.password, db=KEY_DB)) as keys:
        keys.set("written-after-the-earlier-save-began", "1")
    monkeypatch.setattr(redis.Redis, "bgsave", recording)
    result = redis_snapshot.save_redis_snapshot(address, timeout=30)
    monkeypatch.undo()

    assert any("already in progress" in message for message in refusals)
    assert result.manifest["keyspace"][f"db{KEY_DB}"] == 62
    assert _keys_in_rdb(result.path) == 62  # the earlier save could not have had the late key
