"""Which app processes hold connections to which target, from ``pg_stat_activity`` (for ``invoke target``).

The helpers name their connections ``tether-app:<pid>``; each target's database is asked for the sessions
with such a name, through the same ``.env`` URLs the apps use. Used by the task layer, not by apps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.runtime.contract import (
    APPLICATION_PREFIX,
    TARGETS,
    URL_VARIABLES,
    parse_application_name,
    parse_dotenv,
)

CONNECT_TIMEOUT_SECONDS = 3
_SESSIONS_SQL = """
    SELECT application_name, count(*), count(*) FILTER (WHERE state IS DISTINCT FROM 'idle')
    FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name LIKE %s
    GROUP BY application_name
"""


@dataclass(frozen=True)
class AppConnections:
    """One app process's connections to one target."""

    target: str
    pid: int
    connections: int
    busy: int  # not idle: running a query or inside a transaction
    command: str | None  # the process's command line when it runs on this machine

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "pid": self.pid, "connections": self.connections, "busy": self.busy,
                "command": self.command}


@dataclass(frozen=True)
class ConnectedApps:
    apps: list[AppConnections]
    unreachable: dict[str, str]  # target -> why it could not be asked (masked)

    def as_dict(self) -> dict[str, Any]:
        return {"apps": [app.as_dict() for app in self.apps], "unreachable": self.unreachable}


def command_of(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    words = [word.decode(errors="replace") for word in raw.split(b"\0") if word]
    return " ".join(words)[:120] or None


def sessions_on(target: str, url: str) -> list[AppConnections]:
    """The ``tether-app:*`` sessions on ``url``'s database (raises psycopg.Error when it cannot be asked)."""
    import psycopg

    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS, autocommit=True,
                         application_name="tether-target-show") as connection:
        rows = connection.execute(_SESSIONS_SQL, (APPLICATION_PREFIX + "%",)).fetchall()
    apps = []
    for name, count, busy in rows:
        pid = parse_application_name(name)
        if pid is not None:
            apps.append(AppConnections(target, pid, int(count), int(busy), command_of(pid)))
    return sorted(apps, key=lambda app: app.pid)


def connected_apps(env_path: Path) -> ConnectedApps:
    """Ask each target named in ``env_path`` (``DATABASE_URL_LOCAL``/``_PRODUCTION``) which apps are connected."""
    import psycopg

    from tether.secrets import mask_text

    try:
        values = parse_dotenv(env_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        values = {}
    apps: list[AppConnections] = []
    unreachable: dict[str, str] = {}
    for target in TARGETS:
        url = values.get(URL_VARIABLES[target])
        if not url:
            unreachable[target] = f"no {URL_VARIABLES[target]} in {env_path.name}"
            continue
        try:
            apps += sessions_on(target, url)
        except psycopg.Error as error:
            reason = " ".join(str(error).split())
            unreachable[target] = mask_text(reason, known_secrets=_passwords_in(url))
    return ConnectedApps(apps, unreachable)


def _passwords_in(url: str) -> list[str]:
    from urllib.parse import unquote, urlsplit

    password = urlsplit(url).password
    return [password, unquote(password)] if password else []
