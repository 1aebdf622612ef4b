"""The one lock around everything that changes the dev stack, the env files or the database target.

Two `invoke up` at once (or `up` beside `down`, `env`, `target.*`) would start the same servers twice and rewrite
the same files together. Each such command holds ``.runtime/stack.lock`` (``flock``) while it works; the next one
waits, saying which command and pid it waits for, and gives up with a clear message after a timeout. The kernel
drops the lock when its holder exits, however it exits (``kill -9`` included), so a crash never leaves it behind.
The holder's command and pid are written into the lock file itself, for the waiting message only.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tether.errors import TetherError
from tether.paths import runtime_dir

LOCK_TIMEOUT_ENV = "TETHER_LOCK_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 600.0  # a cold `up` takes seconds; a first one with initdb well under a minute
_POLL_SECONDS = 0.1

# Held locks of this process, by path: a command that holds the lock may call another that takes it (up writes
# the env files), and flock on a second descriptor would wait for ourselves.
_held: dict[Path, int] = {}


class StackBusy(TetherError):
    """Another command held the dev stack lock for longer than the timeout."""

    exit_code = 75  # EX_TEMPFAIL: try again later


@dataclass(frozen=True)
class Holder:
    command: str
    pid: int | None

    def describe(self) -> str:
        return f"`{self.command}` (pid {self.pid})" if self.pid else f"`{self.command}`"


def lock_path() -> Path:
    return runtime_dir() / "stack.lock"


def lock_timeout() -> float:
    """``TETHER_LOCK_TIMEOUT`` seconds, else the default; a bad value is an error, not a silent default."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise TetherError(f"{LOCK_TIMEOUT_ENV} must be a number of seconds (0 or more), not {raw!r}. Fix or unset "
                          "it and run the command again.")
    return value


def read_holder(path: Path) -> Holder:
    """Who holds (or last held) the lock, as written in the lock file; unknown when it cannot be read."""
    try:
        data = json.loads(path.read_text())
        return Holder(str(data["command"]), int(data["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return Holder("invoke", None)


def _write_holder(fd: int, command: str) -> None:
    record = json.dumps({"command": command, "pid": os.getpid()}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, record + b"\n", 0)


def _say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


@contextmanager
def stack_lock(command: str, *, timeout: float | None = None,
               notify: Callable[[str], None] = _say) -> Iterator[None]:
    """Hold the dev stack lock for ``command`` (e.g. ``invoke up``); waits for another holder, then fails clearly."""
    path = lock_path()
    if _held.get(path):
        _held[path] += 1
        try:
            yield
        finally:
            _held[path] -= 1
        return
    limit = lock_timeout() if timeout is None else timeout
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _acquire(fd, path, limit, notify)
        _write_holder(fd, command)
        _held[path] = 1
        try:
            yield
        finally:
            _held.pop(path, None)
    finally:
        os.close(fd)  # closing the descriptor releases the lock, after an error too


def _acquire(fd: int, path: Path, timeout: float, notify: Callable[[str], None]) -> None:
    if _try_lock(fd):
        return
    holder = read_holder(path)
    notify(f"· waiting for another {holder.describe()} to finish with the dev stack (at most {timeout:g} s)")
    deadline = time.monotonic() + timeout
    while not _try_lock(fd):
        if time.monotonic() >= deadline:
            holder = read_holder(path)
            stop = f" If it is stuck, stop it (`kill {holder.pid}`): a stopped holder releases the lock at once." \
                if holder.pid else ""
            raise StackBusy(f"Another {holder.describe()} has been changing the dev stack for over {timeout:g} s "
                            f"(lock {path}), so this command did not start.{stop} Then run it again, or set "
                            f"{LOCK_TIMEOUT_ENV} to wait longer.")
        time.sleep(_POLL_SECONDS)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
