"""A refused or failed `invoke up` (native backend) leaves no empty data directories behind, and deletes no data."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tether import paths
from tether.errors import TetherError
from tether.native import stack
from tether.native.sysuser import service_user


def _write_stack_file(root: Path, dev: int, test: int, redis: int) -> None:
    (root / "stacks" / "dev").mkdir(parents=True, exist_ok=True)
    (root / "stacks" / "dev" / "Pulumi.dev.yaml").write_text(
        f"config:\n  tether-dev:devPort: {dev}\n  tether-dev:testPort: {test}\n  tether-dev:redisPort: {redis}\n")


@pytest.fixture
def taken_port() -> Iterator[int]:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    yield blocker.getsockname()[1]
    blocker.close()


@pytest.mark.parametrize("service", ["dev", "test", "redis"])
def test_taken_port_creates_no_data_root(isolated_project: Path, monkeypatch: pytest.MonkeyPatch,
                                         taken_port: int, service: str) -> None:
    # The default location: /var/lib/tether/<project id>/ when root, .runtime/native/data otherwise.
    monkeypatch.delenv("TETHER_NATIVE_DATA", raising=False)
    ports = {"dev": free_port(), "test": free_port(), "redis": free_port(), service: taken_port}
    _write_stack_file(isolated_project, **ports)
    layout = stack.native_layout(service_user())
    assert not layout.data_root.exists()
    with pytest.raises(TetherError, match=f"Port {taken_port}"):
        stack.up()
    assert not os.path.lexists(layout.data_root)
    assert not os.path.lexists(layout.state_dir / "data")


def test_taken_port_leaves_existing_data_alone(isolated_project: Path, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path, taken_port: int) -> None:
    data_root = tmp_path / "native"
    monkeypatch.setenv("TETHER_NATIVE_DATA", str(data_root))
    kept = data_root / "redis"
    kept.mkdir(parents=True)
    (kept / "dump.rdb").write_bytes(b"REDIS0011")
    empty_but_old = data_root / "logs"
    empty_but_old.mkdir()
    _write_stack_file(isolated_project, free_port(), free_port(), taken_port)
    with pytest.raises(TetherError, match=f"Port {taken_port}"):
        stack.up()
    assert (kept / "dump.rdb").read_bytes() == b"REDIS0011"
    assert empty_but_old.is_dir()  # empty, but not this run's to remove


def test_failure_after_creating_removes_only_what_this_run_left_empty(isolated_project: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    data_root = tmp_path / "native"
    monkeypatch.setenv("TETHER_NATIVE_DATA", str(data_root))
    _write_stack_file(isolated_project, free_port(), free_port(), free_port())
    settings = stack.dev_stack_settings()
    layout = stack.native_layout(None)
    with pytest.raises(RuntimeError, match="server failed"), stack._removing_new_empty_dirs(layout, settings, None):
        stack._prepare_data_root(layout, None)
        layout.datadir("postgres-dev").mkdir()
        (layout.log_dir / "postgres-dev.log").write_text("FATAL: why it failed\n")
        raise RuntimeError("server failed")
    assert (layout.log_dir / "postgres-dev.log").exists()  # the log explaining the failure stays, so its parents do
    assert not layout.datadir("postgres-dev").exists()
    assert not layout.socket_dir.exists()
    assert (layout.state_dir / "data").resolve() == data_root.resolve()  # the link still points at kept data

    with pytest.raises(RuntimeError), stack._removing_new_empty_dirs(layout, settings, None):
        layout.datadir("redis").mkdir()
        raise RuntimeError("again")
    assert not layout.datadir("redis").exists()
    assert (layout.log_dir / "postgres-dev.log").exists()


def test_a_new_clone_at_the_same_path_gets_its_own_data_directory(isolated_project: Path) -> None:
    # As root the servers live under /var/lib/tether/<name>; the name is remembered in the clone's .runtime.
    state_dir = isolated_project / ".runtime" / "native"
    first = stack._clone_data_name(state_dir)
    assert stack._clone_data_name(state_dir) == first
    # Deleted and cloned again at the same path: the old passwords are gone, so the old servers must not be used.
    shutil.rmtree(state_dir)
    assert stack._clone_data_name(state_dir) != first


def test_a_clone_with_passwords_but_no_remembered_name_keeps_its_path_name(isolated_project: Path) -> None:
    state_dir = isolated_project / ".runtime" / "native"
    state_dir.mkdir(parents=True)
    (state_dir / "secrets.json").write_text("{}")  # made by a version that named the directory after the path
    expected = hashlib.sha256(str(paths.project_root()).encode()).hexdigest()[:12]
    assert stack._clone_data_name(state_dir) == expected
    assert (state_dir / "data-id").read_text().strip() == expected
