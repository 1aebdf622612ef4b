"""Reading the active target in a running app: one ``stat`` per call, the files re-read only when they change.

The state file is stat'ed on every call; when its identity (inode, size, times) differs from the one last
read, the state and ``.env`` are read again. ``.env`` alone (``invoke env`` rewriting a password or a port)
is stat'ed at most once a second, so its changes are followed too without a second stat on every call.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tether.runtime.contract import (
    DEFAULT_TARGET,
    ENV_FILE,
    ENV_TARGET_VARIABLE,
    DatabaseUrlMissing,
    TargetError,
    TargetState,
    decide_target,
    find_root,
    parse_dotenv,
    parse_state,
    state_path,
    target_url,
    with_driver,
)

ENV_RECHECK_SECONDS = 1.0
ENV_PENDING = float("-inf")  # .env disagrees with the state: stat it at every call until it agrees
log = logging.getLogger("tether.runtime")

FileKey = tuple[int, int, int, int, int] | None  # device, inode, size, mtime, ctime (ns); None: no file


def file_key(result: os.stat_result | None) -> FileKey:
    if result is None:
        return None
    return (result.st_dev, result.st_ino, result.st_size, result.st_mtime_ns, result.st_ctime_ns)


def stat_key(path: str | Path) -> FileKey:
    try:
        return file_key(os.stat(path))
    except FileNotFoundError:
        return None


def read_with_key(path: Path) -> tuple[str | None, FileKey]:
    """The text of ``path`` and the identity of exactly that text (``fstat`` on the open file)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read(), file_key(os.fstat(handle.fileno()))
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as error:
        raise TargetError(f"{path} cannot be read ({error}). Check its owner and permissions (tether writes it "
                          "mode 0600, readable by the user who ran `invoke`).") from None


@dataclass(frozen=True)
class ActiveDatabase:
    """The database this process should use now."""

    target: str  # the target this process uses: "local" or "production"
    url: str
    state: TargetState  # what tether wrote (its target differs from ``target`` when held back)
    held_back: str | None = None  # why this process stays on local although the state says production


@dataclass(frozen=True)
class _Snapshot:
    state_key: FileKey
    env_key: FileKey
    env_checked: float
    result: ActiveDatabase | None
    error: tuple[type[TargetError], str] | None

    def answer(self) -> ActiveDatabase:
        if self.error is not None:
            kind, message = self.error
            raise kind(message)  # a new exception each time: re-raising one object grows its traceback
        assert self.result is not None
        return self.result


class TargetReader:
    """Follows the active target of one project; thread-safe, cheap enough to call before every query."""

    def __init__(self, root: Path | str | None = None, environ: Mapping[str, str] | None = None,
                 cwd: Path | str | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._cwd = Path(cwd) if cwd is not None else None
        self._root = Path(root).resolve() if root is not None else None
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()
        self._paths: tuple[str, str] | None = None  # state file, .env: fixed once the root is known

    @property
    def root(self) -> Path:
        """The project root (found once, at the first call, from TETHER_ROOT or by walking up)."""
        if self._root is None:
            self._root = find_root(self._environ, self._cwd or Path.cwd())
        return self._root

    @property
    def state_path(self) -> Path:
        return state_path(self.root, self._environ)

    @property
    def env_path(self) -> Path:
        return self.root / ENV_FILE

    def resolve(self) -> ActiveDatabase:
        """The active database; raises a ``TargetError`` subclass when the files do not allow one."""
        if self._paths is None:
            self._paths = (str(self.state_path), str(self.env_path))
        state_file, env_file = self._paths
        key = stat_key(state_file)  # the one stat of a call that finds nothing changed
        snapshot = self._snapshot
        if snapshot is not None and snapshot.state_key == key:
            now = time.monotonic()
            if now - snapshot.env_checked < ENV_RECHECK_SECONDS:
                return snapshot.answer()
            if stat_key(env_file) == snapshot.env_key:
                if snapshot.env_checked != ENV_PENDING:
                    self._snapshot = _Snapshot(snapshot.state_key, snapshot.env_key, now, snapshot.result,
                                               snapshot.error)
                return snapshot.answer()
        with self._lock:  # one reload at a time; the others wait for it rather than read the files too
            snapshot = self._snapshot
            if snapshot is None or snapshot.state_key != stat_key(state_file) or (
                    time.monotonic() - snapshot.env_checked >= ENV_RECHECK_SECONDS
                    and stat_key(env_file) != snapshot.env_key):
                snapshot = self._reload(Path(state_file), snapshot)
                self._snapshot = snapshot
        return snapshot.answer()

    def database_url(self, driver: str | None = None) -> str:
        """The active target's URL; ``driver="psycopg"`` gives ``postgresql+psycopg://…`` for SQLAlchemy."""
        return with_driver(self.resolve().url, driver)

    def active_target(self) -> str:
        return self.resolve().target

    def _reload(self, state_file: Path, previous: _Snapshot | None) -> _Snapshot:
        checked = time.monotonic()
        env_text, env_key = None, None
        try:
            state_text, state_key = read_with_key(state_file)
        except TargetError as error:
            return _Snapshot(stat_key(state_file), None, checked, None, (type(error), error.message))
        try:
            env_text, env_key = read_with_key(self.env_path)
            state = TargetState(DEFAULT_TARGET) if state_text is None else parse_state(state_text, state_file)
            decision = decide_target(state, self._environ, state_file)
            if env_text is None:
                raise DatabaseUrlMissing(f"{self.env_path} does not exist. Run `invoke env` in the project to "
                                         "write it.")
            values = parse_dotenv(env_text)
            before = previous.result if previous is not None else None
            if before is not None and values.get(ENV_TARGET_VARIABLE, state.target) != state.target:
                # A switch writes the state, then .env: until .env agrees (milliseconds later, or after
                # `invoke env` repairs a crash in between) keep the answer given so far, and look at .env
                # again at every call rather than once a second.
                return _Snapshot(state_key, env_key, ENV_PENDING, before, None)
            url = target_url(values, decision.target, self.env_path)
        except TargetError as error:
            log.warning("tether: %s", error.message)
            return _Snapshot(state_key, env_key, checked, None, (type(error), error.message))
        result = ActiveDatabase(decision.target, url, state, decision.held_back)
        if before is None or before.target != result.target or before.state.target != state.target:
            if result.held_back:
                log.warning("tether: the state says %s; staying on %s: %s", state.target, result.target,
                            result.held_back)
            elif before is not None:
                log.info("tether: database target %s → %s", before.target, result.target)
        return _Snapshot(state_key, env_key, checked, result, None)


_default_reader: TargetReader | None = None
_default_lock = threading.Lock()


def default_reader() -> TargetReader:
    """The process-wide reader (root from TETHER_ROOT or the working directory, at its first use)."""
    global _default_reader
    reader = _default_reader
    if reader is None:
        with _default_lock:
            if _default_reader is None:
                _default_reader = TargetReader()
            reader = _default_reader
    return reader


def database_url(driver: str | None = None) -> str:
    """The URL of the database this process should use now (follows ``invoke target.*`` without a restart)."""
    return default_reader().database_url(driver)


def active_target() -> str:
    """``"local"`` or ``"production"``: the target this process uses now."""
    return default_reader().active_target()
