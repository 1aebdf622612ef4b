"""Passwords of the application's login roles: where they come from, and setting them without leaking them."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.conninfo import DatabaseAddress
from tether.errors import ConfigError
from tether.paths import runtime_dir
from tether.secrets import generate_password

if TYPE_CHECKING:
    import psycopg

# The login roles sql/0001_roles.sql creates; a role missing from the database is skipped.
LOGIN_ROLES = ("api_user", "readonly")


def password_env_var(role: str) -> str:
    """``api_user`` → ``TETHER_API_USER_PASSWORD``."""
    return "TETHER_" + re.sub(r"[^A-Za-z0-9]", "_", role).upper() + "_PASSWORD"


def role_passwords_file() -> Path:
    return runtime_dir() / "role-passwords.json"


def _read_passwords_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"The local role passwords file {path} is unreadable ({error}). Delete it and run "
                          "`invoke db.init` again: new passwords are generated and set.") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(f"The local role passwords file {path} is not a JSON object of role → password. Delete "
                          "it and run `invoke db.init` again: new passwords are generated and set.")
    return {str(role): value for role, value in data.items()}


def _write_passwords_file(path: Path, passwords: Mapping[str, str]) -> None:
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(dict(passwords), handle, indent=2, sort_keys=True)
    os.replace(temporary, path)


def local_role_passwords(roles: Iterable[str] = LOGIN_ROLES) -> dict[str, str]:
    """Stable passwords for local databases: read from .runtime/role-passwords.json (0600), generated once."""
    path = role_passwords_file()
    stored = _read_passwords_file(path)
    missing = [role for role in roles if not stored.get(role)]
    if missing:
        stored.update({role: generate_password() for role in missing})
        _write_passwords_file(path, stored)
    return {role: stored[role] for role in roles}


def resolve_role_passwords(roles: Sequence[str], *, local: bool, explicit: Mapping[str, str] | None = None,
                           environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each role's password: ``explicit``, else TETHER_<ROLE>_PASSWORD, else (local only) a stored one.

    A role left out of the result keeps whatever password it has: a shared database's passwords belong to
    whoever manages them (a secret store, the prod stack), never to a generator on a laptop.
    """
    environ = os.environ if environ is None else environ
    chosen: dict[str, str] = {}
    for role in roles:
        value = (explicit or {}).get(role) or environ.get(password_env_var(role))
        if value:
            chosen[role] = value
    missing = [role for role in roles if role not in chosen]
    if local and missing:
        chosen.update(local_role_passwords(missing))
    return chosen


def existing_roles(conn: psycopg.Connection[Any], roles: Sequence[str]) -> list[str]:
    rows = conn.execute("SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY(%s)", (list(roles),)).fetchall()
    found = {str(row[0]) for row in rows}
    return [role for role in roles if role in found]


def set_role_password(conn: psycopg.Connection[Any], role: str, password: str) -> None:
    """ALTER ROLE ... PASSWORD with a SCRAM verifier computed here, so the server (and its statement log,
    if it keeps one) never sees the password itself, only what psql's \\password would send."""
    from psycopg import sql

    # libpq asks the server for password_encryption (scram-sha-256 by default) and hashes locally.
    verifier = conn.pgconn.encrypt_password(password.encode("utf-8"), role.encode("utf-8")).decode("ascii")
    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier)))


def apply_role_passwords(conn: psycopg.Connection[Any], address: DatabaseAddress,
                         explicit: Mapping[str, str] | None = None,
                         roles: Sequence[str] = LOGIN_ROLES) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Set the passwords of the login roles that exist; returns (roles set, roles left unchanged)."""
    present = existing_roles(conn, roles)
    passwords = resolve_role_passwords(present, local=address.is_local, explicit=explicit)
    for role in present:
        if role in passwords:
            set_role_password(conn, role, passwords[role])
    done = tuple(role for role in present if role in passwords)
    return done, tuple(role for role in roles if role not in done)
