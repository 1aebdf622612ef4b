"""The contract between tether and a running app: the state file's format, ``.env``'s named URLs, the root.

tether writes ``.runtime/db-target.json`` (``invoke target.*``) and ``.env`` (``invoke env``); an app reads
them through ``tether.runtime`` or ``clients/node/tether-target.mjs``. Everything here is a pure function of
the texts and the environment it is given, so the writer (``tether.target``), the Python reader and the
tests share one definition. docs/app-integration.md is the prose version.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.errors import TetherError

# Raise only with a change a reader of the previous format would misread; add optional fields freely.
STATE_FORMAT = 1
RUNTIME_DIR = ".runtime"
STATE_FILE = "db-target.json"
ENV_FILE = ".env"
STATE_FILE_MODE = 0o600
TARGETS = ("local", "production")
DEFAULT_TARGET = "local"
# Written only by `invoke target.production`, after its confirmation: a hand-edited or legacy state that
# says production without it is refused by the readers.
PRODUCTION_GUARD = "target.production"
URL_VARIABLES = {"local": "DATABASE_URL_LOCAL", "production": "DATABASE_URL_PRODUCTION"}
ENV_TARGET_VARIABLE = "TETHER_DB_TARGET"  # the target .env was written for
ROOT_ENV = "TETHER_ROOT"
PROJECT_ROOT_ENV = "TETHER_PROJECT_ROOT"  # the name tether's own tasks honour; a reader accepts it second
RUNTIME_DIR_ENV = "TETHER_RUNTIME_DIR"
MANAGED_BEGIN = "# >>> tether managed block >>>"
APPLICATION_PREFIX = "tether-app:"


class TargetError(TetherError):
    """The active database cannot be told to this process; the message says why and what to do."""


class ProjectRootNotFound(TargetError):
    """Neither TETHER_ROOT nor a directory above the working directory is a tether project."""


class StateUnreadable(TargetError):
    """The state file is not what tether writes (damaged, or edited by hand)."""


class StateFormatTooNew(TargetError):
    """The state file was written by a newer tether whose format this reader does not know."""


class ProductionRefused(TargetError):
    """The state says production, but without the marker only ``invoke target.production`` writes."""


class DatabaseUrlMissing(TargetError):
    """``.env`` is missing, or lacks the active target's DATABASE_URL_<TARGET>."""


@dataclass(frozen=True)
class TargetState:
    """What ``.runtime/db-target.json`` holds. ``format`` 0 means a file written before the field existed."""

    target: str
    user: str | None = None
    when: str | None = None  # UTC, ISO 8601
    guard: str | None = None
    format: int = STATE_FORMAT

    @property
    def production_confirmed(self) -> bool:
        return self.target == "production" and self.guard == PRODUCTION_GUARD

    def as_dict(self) -> dict[str, Any]:
        return {"format": self.format, "target": self.target, "user": self.user, "when": self.when,
                "guard": self.guard}


def render_state(state: TargetState) -> str:
    """The state file's text (the writer replaces the file with it atomically, mode 0600)."""
    return json.dumps(state.as_dict(), indent=2) + "\n"


def parse_state(text: str, path: Path | str) -> TargetState:
    """Parse the state file; a newer format or anything tether does not write is an error naming ``path``."""
    damaged = (f"{path} is damaged (not the JSON tether writes). Run `invoke target.local` (or "
               "`invoke target.production`) to rewrite it.")
    try:
        data = json.loads(text)
    except ValueError:
        raise StateUnreadable(damaged) from None
    if not isinstance(data, dict):
        raise StateUnreadable(damaged)
    version = data.get("format", 0)
    if isinstance(version, float) and version.is_integer():
        version = int(version)  # 2.0 is 2, as JavaScript's JSON.parse reads it
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise StateUnreadable(damaged)
    if version > STATE_FORMAT:
        # Checked before anything else: a newer format may mean new targets or fields read differently.
        raise StateFormatTooNew(f"{path} has format {version}, written by a newer tether; this reader knows "
                                f"format {STATE_FORMAT} at most. Update tether (the Python package, or copy "
                                "the newer clients/node/tether-target.mjs into the app), then try again.")
    target = data.get("target")
    if target not in TARGETS:
        raise StateUnreadable(damaged)
    fields = {name: data.get(name) for name in ("user", "when", "guard")}
    if any(value is not None and not isinstance(value, str) for value in fields.values()):
        raise StateUnreadable(damaged)
    return TargetState(target, fields["user"], fields["when"], fields["guard"], version)


# ---------------------------------------------------------------------------------------------------------
# .env, read the way python-dotenv and dotenv for Node read what tether writes (the last assignment wins)

_BLANK_OR_COMMENT = re.compile(r"[ \t]*(?:#[^\r\n]*)?(?:\r\n|\n|\r)")
_KEY = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_.]*)[ \t]*=[ \t]*")
_SINGLE = re.compile(r"'((?:\\'|[^'])*)'")
_DOUBLE = re.compile(r'"((?:\\"|[^"])*)"')
_UNQUOTED = re.compile(r"[^\r\n]*")
_END_OF_LINE = re.compile(r"[ \t]*(?:#[^\r\n]*)?(?:\r\n|\n|\r|$)")
_REST_OF_LINE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r|$)")
_SINGLE_ESCAPES = re.compile(r"\\[\\']")
_DOUBLE_ESCAPES = re.compile(r"\\[\\'\"abfnrtv]")
_ESCAPES = {"\\\\": "\\", "\\'": "'", '\\"': '"', "\\a": "\a", "\\b": "\b", "\\f": "\f", "\\n": "\n",
            "\\r": "\r", "\\t": "\t", "\\v": "\v"}


def parse_dotenv(text: str) -> dict[str, str]:
    """The variables of a ``.env`` text: quotes and escapes as python-dotenv reads them, no ``${}`` expansion.

    A line that is not an assignment is skipped, as python-dotenv does (it only warns).
    """
    values: dict[str, str] = {}
    position = 0
    while position < len(text):
        blank = _BLANK_OR_COMMENT.match(text, position)
        if blank and blank.end() > position:
            position = blank.end()
            continue
        key = _KEY.match(text, position)
        if key is None:
            position = _skip_line(text, position)
            continue
        position = key.end()
        if (match := _SINGLE.match(text, position)) is not None:
            value = _SINGLE_ESCAPES.sub(lambda m: _ESCAPES[m.group(0)], match.group(1))
        elif (match := _DOUBLE.match(text, position)) is not None:
            value = _DOUBLE_ESCAPES.sub(lambda m: _ESCAPES[m.group(0)], match.group(1))
        else:
            match = _UNQUOTED.match(text, position)
            assert match is not None  # matches the empty string at worst
            value = re.sub(r"[ \t]+#.*", "", match.group(0)).rstrip()
        end = _END_OF_LINE.match(text, match.end())
        if end is None:  # text after a closing quote: not an assignment either reader accepts
            position = _skip_line(text, match.end())
            continue
        position = end.end()
        values[key.group(1)] = value
    return values


def _skip_line(text: str, position: int) -> int:
    match = _REST_OF_LINE.match(text, position)
    assert match is not None
    return max(match.end(), position + 1)


def target_url(values: Mapping[str, str], target: str, env_path: Path | str) -> str:
    """``DATABASE_URL_<TARGET>`` from ``.env``'s values, or an error saying how to write it."""
    name = URL_VARIABLES[target]
    url = values.get(name)
    if not url:
        raise DatabaseUrlMissing(f"{env_path} has no {name}. Run `invoke env` in the project to rewrite it "
                                 "(tether writes DATABASE_URL_LOCAL and DATABASE_URL_PRODUCTION there).")
    return url


def with_driver(url: str, driver: str | None) -> str:
    """``postgresql+<driver>://…`` for SQLAlchemy-style URLs; the plain URL when ``driver`` is None."""
    if not driver:
        return url
    _, separator, rest = url.partition("://")
    if not separator:
        raise DatabaseUrlMissing("The database URL in .env is not a URL (no `://`). Run `invoke env` to "
                                 "rewrite .env.")
    return f"postgresql+{driver}://{rest}"


# ---------------------------------------------------------------------------------------------------------
# Guards


def is_test_process(environ: Mapping[str, str]) -> bool:
    """True for a test run: ``NODE_ENV=test``, or the environment ``.env.test`` gives.

    ``.env.test`` is the only file tether writes whose DATABASE_URL equals its TEST_DATABASE_URL, so a
    process that loaded it carries that signature.
    """
    if environ.get("NODE_ENV") == "test":
        return True
    url = environ.get("DATABASE_URL")
    return bool(url) and url == environ.get("TEST_DATABASE_URL")


@dataclass(frozen=True)
class Decision:
    """The target this process uses, and why it differs from the state's when it does."""

    target: str
    held_back: str | None = None  # why a test process stays on local


def decide_target(state: TargetState, environ: Mapping[str, str], state_path: Path | str) -> Decision:
    """Apply the app-side guards to the state tether wrote."""
    if state.target != "production":
        return Decision(state.target)
    if is_test_process(environ):
        return Decision("local", "this is a test process (NODE_ENV=test, or the environment of .env.test), "
                                 "which never follows a switch to production")
    if not state.production_confirmed:
        raise ProductionRefused(f"{state_path} says production but was not written by `invoke "
                                "target.production` (it lacks that command's confirmation marker), so this app "
                                "refuses to connect there. Run `invoke target.production` to switch with the "
                                "confirmation, or `invoke target.local`.")
    return Decision("production")


# ---------------------------------------------------------------------------------------------------------
# Where the project is


def is_project_root(directory: Path) -> bool:
    """A directory tether manages: it has the state file, or a ``.env`` with tether's managed block."""
    if (directory / RUNTIME_DIR / STATE_FILE).is_file():
        return True
    try:
        with (directory / ENV_FILE).open(encoding="utf-8", errors="replace") as handle:
            return any(line.replace("\ufeff", "").strip() == MANAGED_BEGIN for line in handle)
    except OSError:
        return False


def find_root(environ: Mapping[str, str], cwd: Path) -> Path:
    """TETHER_ROOT (else TETHER_PROJECT_ROOT), else the nearest directory from ``cwd`` up that tether manages."""
    for name in (ROOT_ENV, PROJECT_ROOT_ENV):
        value = environ.get(name)
        if value:
            root = Path(value).expanduser().resolve()
            if not root.is_dir():
                raise ProjectRootNotFound(f"{name}={value} is not a directory. Point it at the tether project "
                                          "(the directory holding .env and .runtime/), or unset it.")
            return root
    start = cwd.resolve()
    for directory in (start, *start.parents):
        if is_project_root(directory):
            return directory
    raise ProjectRootNotFound(f"No tether project found from {start} upwards (a directory with "
                              f"{RUNTIME_DIR}/{STATE_FILE} or a .env written by `invoke env`). Run `invoke env` "
                              f"in the project, or set {ROOT_ENV} to its directory.")


def state_path(root: Path, environ: Mapping[str, str]) -> Path:
    """``<root>/.runtime/db-target.json``, or under TETHER_RUNTIME_DIR when tether was told to use another."""
    runtime = environ.get(RUNTIME_DIR_ENV)
    return (Path(runtime) if runtime else root / RUNTIME_DIR) / STATE_FILE


def application_name(pid: int) -> str:
    """The ``application_name`` the helpers give their connections; ``invoke target`` lists them."""
    return f"{APPLICATION_PREFIX}{pid}"


def parse_application_name(name: str | None) -> int | None:
    """The pid in ``tether-app:<pid>``, or None for any other application name."""
    if not name or not name.startswith(APPLICATION_PREFIX):
        return None
    digits = name[len(APPLICATION_PREFIX):]
    return int(digits) if digits.isdigit() else None
