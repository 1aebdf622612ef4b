"""Fixtures for the proxy tests: the stand-in proxy wired in, and no proxy left running afterwards."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tether.proxy import process_alive, proxy_files, stop_proxy

STAND_IN = Path(__file__).with_name("fake_cloud_sql_proxy.py")


@dataclass
class FakeProxy:
    binary: Path
    target_port: int
    monkeypatch: pytest.MonkeyPatch

    def mode(self, mode: str) -> None:
        self.monkeypatch.setenv("FAKE_PROXY_MODE", mode)


def write_executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def fake_proxy(isolated_project: Path, pg_server, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProxy]:
    """The stand-in, named like the v2 binary, forwarding to the session's PostgreSQL server."""
    # A wrapper rather than the script itself: git need not keep an executable bit, and exec keeps one pid.
    binary = write_executable(tmp_path / "bin" / "cloud-sql-proxy",
                              f'#!/bin/sh\nexec "{sys.executable}" "{STAND_IN}" "$@"\n')
    monkeypatch.setenv("TETHER_PROXY_BINARY", str(binary))
    monkeypatch.setenv("FAKE_PROXY_TARGET_PORT", str(pg_server.admin.port))
    monkeypatch.setenv("FAKE_PROXY_MODE", "ok")
    yield FakeProxy(binary, pg_server.admin.port, monkeypatch)
    stop_proxy(grace=0.5)


def proxy_processes(marker: str) -> list[int]:
    """Pids of live processes whose command line contains ``marker`` (to prove none is left behind)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and process_alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def state_files_exist() -> bool:
    files = proxy_files()
    return files.pid_file.exists() or files.state_file.exists()
