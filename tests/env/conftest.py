"""Fixtures for the env-file and target tests: a dev stack's outputs pointing at the real test servers.

Also two independent readers of .env files: one written here after python-dotenv's grammar (quotes,
escapes, ``${VAR}`` expansion) and one that really runs ``set -a; . FILE`` in bash or dash.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tether.conninfo import DatabaseAddress
from tether.endpoints import write_native_outputs

REPO_ROOT = Path(__file__).resolve().parents[2]
ROLE_PASSWORD = "Init:p@ss/w%rd#1?&x y"

# ---------------------------------------------------------------------------------------------------------
# A python-dotenv style reader (our own, to check the files against the grammar apps use)

_BLANK_OR_COMMENT = re.compile(r"[ \t]*(?:#[^\r\n]*)?(?:\r\n|\n|\r)")
_KEY = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_.]*)[ \t]*=[ \t]*")
_SINGLE = re.compile(r"'((?:\\'|[^'])*)'")
_DOUBLE = re.compile(r'"((?:\\"|[^"])*)"')
_UNQUOTED = re.compile(r"[^\r\n]*")
_END_OF_LINE = re.compile(r"[ \t]*(?:#[^\r\n]*)?(?:\r\n|\n|\r|$)")
_SINGLE_ESCAPES = re.compile(r"\\[\\']")
_DOUBLE_ESCAPES = re.compile(r"\\[\\'\"abfnrtv]")
_ESCAPES = {"\\\\": "\\", "\\'": "'", '\\"': '"', "\\a": "\a", "\\b": "\b", "\\f": "\f", "\\n": "\n",
            "\\r": "\r", "\\t": "\t", "\\v": "\v"}
_EXPANSION = re.compile(r"\$\{([^}:]*)(?::-([^}]*))?\}")


def parse_dotenv(text: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Values as python-dotenv's ``dotenv_values`` would return them (later lines win, ${VAR} expanded)."""
    environ = {} if environ is None else environ
    values: dict[str, str] = {}
    position = 0
    while position < len(text):
        blank = _BLANK_OR_COMMENT.match(text, position)
        if blank and blank.end() > position:
            position = blank.end()
            continue
        key = _KEY.match(text, position)
        if not key:
            raise ValueError(f"unparsable line at offset {position}: {text[position:position + 40]!r}")
        position = key.end()
        if (match := _SINGLE.match(text, position)) is not None:
            value = _SINGLE_ESCAPES.sub(lambda m: _ESCAPES[m.group(0)], match.group(1))
        elif (match := _DOUBLE.match(text, position)) is not None:
            value = _DOUBLE_ESCAPES.sub(lambda m: _ESCAPES[m.group(0)], match.group(1))
        else:
            match = _UNQUOTED.match(text, position)
            assert match is not None
            value = re.sub(r"\s+#.*", "", match.group(0)).rstrip()
        position = match.end()
        end = _END_OF_LINE.match(text, position)
        if end is None:
            raise ValueError(f"trailing text after the value of {key.group(1)}")
        position = end.end()
        values[key.group(1)] = expand(value, {**environ, **values})
    return values


def expand(value: str, scope: dict[str, str]) -> str:
    """python-dotenv's ``${NAME}`` and ``${NAME:-default}`` expansion."""
    return _EXPANSION.sub(lambda m: scope.get(m.group(1)) or (m.group(2) or ""), value)


def source_with_shell(path: Path, shell: str = "bash") -> dict[str, str]:
    """The variables a shell exports after ``set -a; . FILE`` (in an otherwise empty environment)."""
    script = 'set -a; . "$1"; set +a; exec env -0'
    result = subprocess.run([shell, "-c", script, shell, str(path)], env={"PATH": os.environ["PATH"]},
                            capture_output=True, check=True)
    pairs = (item.split("=", 1) for item in result.stdout.decode().split("\0") if "=" in item)
    return {key: value for key, value in pairs if key not in {"PATH", "PWD", "SHLVL", "_", "OLDPWD"}}


def read_with_python_dotenv(path: Path) -> dict[str, str | None]:
    """The values python-dotenv (the real package, as apps call it) reads from ``path``."""
    from dotenv import dotenv_values

    return dict(dotenv_values(path))


@pytest.fixture(scope="session")
def node_dotenv(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], dict[str, str]]:
    """A reader that runs Node's dotenv (``npm install dotenv`` into a temporary directory) on a file."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed: apt-get install nodejs npm"
    prefix = tmp_path_factory.mktemp("node-dotenv")
    subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(prefix), "dotenv"],
                   check=True, capture_output=True, timeout=300)
    script = ("const fs = require('fs'); const dotenv = require(process.argv[2]);"
              "process.stdout.write(JSON.stringify(dotenv.parse(fs.readFileSync(process.argv[1]))));")

    def read(path: Path) -> dict[str, str]:
        result = subprocess.run([node, "-e", script, str(path), str(prefix / "node_modules" / "dotenv")],
                                capture_output=True, check=True, timeout=60)
        return dict(json.loads(result.stdout))

    return read


def closed_port() -> int:
    """A local port nothing listens on (bound once by the kernel, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------------------
# The dev stack, pointing at the real servers


@dataclass
class StackDatabases:
    """A role with a password full of URL and shell metacharacters, and its dev, test and prod databases."""

    admin: DatabaseAddress
    role: str
    dev: str
    test: str
    prod: str

    def set_password(self, password: str) -> None:
        with psycopg.connect(self.admin.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(self.role), sql.Literal(password)))

    def address(self, database: str, password: str) -> DatabaseAddress:
        return DatabaseAddress(self.admin.host, self.admin.port, database, self.role, password)


@pytest.fixture(scope="session")
def stack_databases(pg_server: Any) -> Iterator[StackDatabases]:
    suffix = uuid.uuid4().hex[:8]
    role = f"env_app_{suffix}"
    with psycopg.connect(pg_server.admin.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role),
                                                                        sql.Literal(ROLE_PASSWORD)))
    names = [pg_server.create_database(f"env_{kind}_{suffix}").database for kind in ("dev", "test", "prod")]
    yield StackDatabases(pg_server.admin, role, *names)
    for name in names:
        pg_server.drop_database(name)
    with psycopg.connect(pg_server.admin.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@dataclass
class EnvProject:
    """An isolated project root whose dev stack outputs and prod stack config point at the test servers."""

    root: Path
    databases: StackDatabases
    redis: Any
    password: str
    monkeypatch: pytest.MonkeyPatch
    backend: str = "native"

    def write_outputs(self, password: str | None = None, *, redis_port: int | None = None,
                      backend: str | None = None) -> None:
        self.password = self.password if password is None else password
        self.backend = backend or self.backend
        db = self.databases

        def postgres(database: str, internal_host: str) -> dict[str, Any]:
            return {"host": db.admin.host, "port": db.admin.port, "database": database, "user": db.role,
                    "password": self.password, "internalHost": internal_host, "internalPort": 5432}

        write_native_outputs({
            "backend": self.backend,
            "postgresDev": postgres(db.dev, "postgres-dev"),
            "postgresTest": postgres(db.test, "postgres-test"),
            "redis": {"host": self.redis.address.host, "port": redis_port or self.redis.address.port,
                      "password": self.redis.address.password, "internalHost": "redis", "internalPort": 6379},
        })

    def write_prod_stack(self, *, proxy_port: int | None = None, gcp_project: str = "acme-prod") -> None:
        port = self.databases.admin.port if proxy_port is None else proxy_port
        path = self.root / "stacks" / "prod" / "Pulumi.prod.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("config:\n"
                        f"  tether-prod:gcpProject: {gcp_project}\n"
                        "  tether-prod:region: europe-west1\n"
                        "  tether-prod:instanceName: app-postgres-prod\n"
                        f"  tether-prod:databaseName: {self.databases.prod}\n"
                        f"  tether-prod:appUser: {self.databases.role}\n"
                        f"  tether-prod:proxyPort: {port}\n")

    def use_password(self, password: str) -> None:
        """The role's real password, everywhere: server, dev stack outputs and the exported prod password."""
        self.databases.set_password(password)
        self.write_outputs(password)
        self.monkeypatch.setenv("TETHER_PROD_PASSWORD", password)

    def snapshot(self) -> dict[str, tuple[bytes, int]]:
        """Every file under the root (contents and mode), to prove that something wrote nothing."""
        return {str(path.relative_to(self.root)): (path.read_bytes(), path.stat().st_mode)
                for path in sorted(self.root.rglob("*")) if path.is_file()}


@pytest.fixture
def env_project(isolated_project: Path, stack_databases: StackDatabases, redis_server: Any,
                monkeypatch: pytest.MonkeyPatch) -> EnvProject:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("TETHER_PROD_PASSWORD", raising=False)
    shutil.copy(REPO_ROOT / ".gitignore", isolated_project / ".gitignore")
    project = EnvProject(isolated_project, stack_databases, redis_server, ROLE_PASSWORD, monkeypatch)
    project.use_password(ROLE_PASSWORD)
    project.write_prod_stack()
    return project
