"""The active database target (local or production): its state file, its lock, its audit log and the switch.

State lives in ``.runtime/db-target.json``; ``.env``'s DATABASE_URL and PG* follow it. A switch takes the lock
``.runtime/db-target.lock``, tests the new target with ``SELECT 1``, writes the state file atomically, then
``.env`` atomically, then appends one JSON line to ``.runtime/db-target-audit.log``.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import re
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tether.conninfo import DatabaseAddress
from tether.console import confirm
from tether.envfiles import (
    ACTIVE_FILE,
    DEFAULT_DRIVERS,
    PROD_PASSWORD_ENV,
    TARGETS,
    FileStatus,
    atomic_write,
    load_sources,
    managed_values,
    merge_managed,
    read_text,
    render_active,
    write_env_file,
)
from tether.errors import ConfigError, TetherError
from tether.paths import project_root, runtime_dir
from tether.runtime.contract import (
    PRODUCTION_GUARD,
    STATE_FILE_MODE,
    StateFormatTooNew,
    StateUnreadable,
    TargetState,
    parse_state,
    render_state,
)
from tether.secrets import mask_text, mask_url

DEFAULT_TARGET = "local"
PROBE_TIMEOUT_SECONDS = 5
LOCK_TIMEOUT_SECONDS = 60.0
_LOCK_POLL_SECONDS = 0.05


class TargetUnreachable(TetherError):
    """The new target did not answer ``SELECT 1``; the old target stays active."""


def target_file() -> Path:
    return runtime_dir() / "db-target.json"


def lock_file() -> Path:
    return runtime_dir() / "db-target.lock"


def audit_file() -> Path:
    return runtime_dir() / "db-target-audit.log"


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return f"uid {os.getuid()}"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_target(*, strict: bool = True) -> TargetState:
    """The persisted target (``local`` when never switched); ``strict=False`` reads damage as ``unknown``."""
    path = target_file()
    text = read_text(path)
    if text is None:
        return TargetState(DEFAULT_TARGET)
    try:
        return parse_state(text, path)  # the format apps read too (tether.runtime.contract)
    except (StateUnreadable, StateFormatTooNew) as error:
        if not strict:
            return TargetState("unknown")
        raise ConfigError(error.message) from None


@contextmanager
def target_lock(timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold ``.runtime/db-target.lock`` (flock): one switch or env rewrite at a time, across processes."""
    path = lock_file()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TetherError(f"Another `invoke target` or `invoke env` has held {path} for over "
                                      f"{timeout:g} s. Wait for it to finish and try again.") from None
                time.sleep(_LOCK_POLL_SECONDS)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock, even after an error


def one_paragraph(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def probe_database(address: DatabaseAddress, timeout: int = PROBE_TIMEOUT_SECONDS) -> None:
    """``SELECT 1`` on ``address``; raises ``TargetUnreachable`` with a masked reason."""
    import psycopg

    try:
        with psycopg.connect(address.conninfo(connect_timeout=str(timeout)), autocommit=True) as connection:
            connection.execute("SELECT 1").fetchone()
    except psycopg.Error as error:
        reason = mask_text(one_paragraph(str(error)), known_secrets=[address.password])
        raise TargetUnreachable(f"{address.masked_url()} did not answer SELECT 1: {reason}") from None


def append_audit(entry: dict[str, Any]) -> None:
    """One JSON line per switch, appended and synced (the file is only ever appended to)."""
    fd = os.open(audit_file(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_audit() -> list[dict[str, Any]]:
    text = read_text(audit_file()) or ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class SwitchResult:
    previous: TargetState
    current: TargetState
    database_url: str  # masked
    env: FileStatus

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.previous.target, "to": self.current.target, "user": self.current.user,
                "when": self.current.when, "database_url": self.database_url, "env_file": self.env.as_dict()}


def unreachable_hint(target: str, password_known: bool) -> str:
    if target != "production":
        return "Start the dev stack (`invoke up`), then try again."
    if password_known:
        return f"Start the Cloud SQL proxy (`invoke proxy.start`) and check {PROD_PASSWORD_ENV}, then try again."
    return f"Start the Cloud SQL proxy (`invoke proxy.start`) and export {PROD_PASSWORD_ENV}, then try again."


def switch_target(to: str, *, yes: bool = False, drivers: Sequence[str] | None = None) -> SwitchResult:
    """Point ``.env`` at ``to`` after it answers ``SELECT 1``; production asks first (``yes`` answers)."""
    if to not in TARGETS:
        raise ConfigError(f"Unknown database target {to!r}: use local or production.")
    if to == "production":
        # Asked before anything is read or connected, so CI refuses at once and clearly.
        confirm("Point the application's .env at the PRODUCTION database?", yes=yes)
    sources = load_sources()
    address = sources.target_address(to)
    env_file = render_active(sources, to, DEFAULT_DRIVERS if drivers is None else tuple(drivers))
    env_path = project_root() / ACTIVE_FILE
    with target_lock():
        previous = read_target(strict=False)
        # An unquotable password or a damaged block in .env fails here, before anything changes.
        merge_managed(read_text(env_path), env_file.block(), env_path)
        try:
            probe_database(address)
        except TargetUnreachable as error:
            hint = unreachable_hint(to, address.password is not None)
            raise TargetUnreachable(f"Cannot switch to {to}: {error.message} The active target stays "
                                    f"{previous.target}. {hint}") from None
        # The production marker tells running apps (tether.runtime) this switch passed the confirmation.
        current = TargetState(to, current_user(), utc_now(), PRODUCTION_GUARD if to == "production" else None)
        # State first, .env second: a crash in between leaves .env on the old target, which `invoke target`
        # reports and `invoke env` repairs; each file is whole at every instant.
        atomic_write(target_file(), render_state(current), STATE_FILE_MODE)
        env_status = write_env_file(env_path, env_file)
        append_audit({"time": current.when, "user": current.user, "host": socket.gethostname(),
                      "from": previous.target, "to": to})
    return SwitchResult(previous, current, address.masked_url(), env_status)


@dataclass(frozen=True)
class TargetView:
    """What ``invoke target`` shows: the persisted target and what ``.env`` says."""

    state: TargetState
    env_path: Path
    env_target: str | None
    database_url: str | None  # masked

    @property
    def in_sync(self) -> bool:
        return self.env_target == self.state.target

    def as_dict(self) -> dict[str, Any]:
        return {**self.state.as_dict(), "env_file": str(self.env_path), "env_target": self.env_target,
                "database_url": self.database_url, "in_sync": self.in_sync}


def describe_target() -> TargetView:
    """The active target and whether ``.env`` agrees with it (it may not after a crash or a hand edit)."""
    state = read_target()
    env_path = project_root() / ACTIVE_FILE
    text = read_text(env_path)
    values = managed_values(text, env_path) if text else {}
    url = values.get("DATABASE_URL")
    return TargetView(state, env_path, values.get("TETHER_DB_TARGET"), mask_url(url) if url else None)
