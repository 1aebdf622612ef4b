"""The app's environment files: which variables each holds, how values are quoted, and the managed block.

Rendering is pure (``render_env_files``). Writing keeps every line a person added outside the block
``# >>> tether managed block >>>`` … ``# <<< tether managed block <<<`` and replaces the file atomically with
mode 0600. Values are quoted so that python-dotenv style parsers and ``set -a; . .env`` read the same thing.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from infra.prod.settings import ProdSettings, load_prod_settings
from tether.conninfo import DatabaseAddress
from tether.endpoints import DevEndpoints, dev_endpoints
from tether.errors import ConfigError
from tether.native.files import atomic_write as write_atomically
from tether.paths import project_root, stacks_dir
from tether.redis_client import RedisAddress

MANAGED_BEGIN = "# >>> tether managed block >>>"
MANAGED_END = "# <<< tether managed block <<<"
FILE_MODE = 0o600
DEFAULT_DRIVERS: tuple[str, ...] = ("asyncpg", "psycopg")
PROD_PASSWORD_ENV = "TETHER_PROD_PASSWORD"  # noqa: S105 - the variable's name, not a password
TARGETS = ("local", "production")
# Tests share the dev Redis server; database 1 keeps a test's FLUSHDB away from the dev data in database 0.
TEST_REDIS_DB = 1
CLOUD_SQL_SOCKET_PORT = 5432

LOCAL_FILE = ".env.local"
TEST_FILE = ".env.test"
PRODUCTION_FILE = ".env.production"
ACTIVE_FILE = ".env"
DOCKER_FILE = ".env.docker"

_DRIVER = re.compile(r"^[a-z][a-z0-9_]*$")
_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
# python-dotenv expands ${NAME} inside every quoting style, so such a value cannot be written literally.
_DOTENV_EXPANSION = re.compile(r"\$\{[^}]*\}")


@dataclass(frozen=True)
class EnvSources:
    """Everything the env files are made from: the dev stack's endpoints and the prod stack's settings."""

    dev: DevEndpoints
    prod: ProdSettings
    prod_password: str | None

    @property
    def local(self) -> DatabaseAddress:
        return self.dev.dev.address

    @property
    def test(self) -> DatabaseAddress:
        return self.dev.test.address

    @property
    def production(self) -> DatabaseAddress:
        """Production through the Cloud SQL proxy on this machine."""
        return DatabaseAddress("127.0.0.1", self.prod.proxy_port, self.prod.database, self.prod.app_user,
                               self.prod_password)

    @property
    def production_socket(self) -> DatabaseAddress:
        """Production through the Cloud SQL unix socket that App Engine and Cloud Run mount."""
        return DatabaseAddress(self.prod.socket_dir, CLOUD_SQL_SOCKET_PORT, self.prod.database, self.prod.app_user,
                               self.prod_password)

    def target_address(self, target: str) -> DatabaseAddress:
        return self.production if target == "production" else self.local


@dataclass(frozen=True)
class EnvFile:
    """One file's managed content: its variables in order and the notes written above them."""

    name: str
    purpose: str
    variables: tuple[tuple[str, str], ...]
    notes: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.variables)

    def block(self) -> str:
        """The managed block, markers included, ending with a newline."""
        lines = [MANAGED_BEGIN, f"# {self.purpose}",
                 "# Written by `invoke env` and `invoke target`: edit outside this block, not inside it."]
        lines += [f"# {note}" for note in self.notes]
        lines += [f"{name}={quote_value(f'{name} in {self.name}', value)}" for name, value in self.variables]
        lines.append(MANAGED_END)
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------
# Quoting


def quote_value(name: str, value: str) -> str:
    """``value`` in the one form that bash/dash (``set -a; . FILE``), python-dotenv and Node's dotenv all read back
    as ``value``; a value no form keeps intact is refused, naming ``name`` (never the value).

    Single quotes are literal for a shell and for Node; python-dotenv also reads them literally except for the
    escapes ``\\\\`` and ``\\'``, and a trailing backslash would escape its closing quote. Double quotes serve a
    value with a single quote, provided it has nothing a shell expands or unescapes there (``$``, a backquote,
    a backslash) and no double quote (Node's dotenv does not unescape ``\\"``). python-dotenv expands ``${...}``
    in every form, so that is refused too.
    """
    problem = _unwritable_reason(value)
    if problem is None:
        if "'" not in value:
            return f"'{value}'"
        return f'"{value}"'
    raise ConfigError(f"The value of {name} {problem}, and no .env quoting makes bash, python-dotenv and Node's "
                      "dotenv read that alike (they would hand the app different values). Change that password (or "
                      "value) so it avoids that combination, then run the command again.")


def _unwritable_reason(value: str) -> str | None:
    """Why ``value`` has no form every reader agrees on, or None when it has one (see ``quote_value``)."""
    if any(char in value for char in ("\n", "\r", "\0")):
        return "contains a line break or NUL"
    if _DOTENV_EXPANSION.search(value):
        return "contains `${...}`, which python-dotenv expands"
    if "'" not in value:
        if "\\\\" in value:
            return "contains two backslashes in a row"
        if value.endswith("\\"):
            return "ends with a backslash"
        return None
    clashing = [char for char in ('"', "\\", "$", "`") if char in value]
    if clashing:
        shown = " or ".join(f"`{char}`" for char in clashing)
        return f"contains a single quote together with {shown}"
    return None


def unquote_value(raw: str) -> str:
    """The inverse of ``quote_value`` for the lines this module writes."""
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r'\\([\\"])', r"\1", raw[1:-1])
    return raw


# ---------------------------------------------------------------------------------------------------------
# Rendering (pure)


def parse_drivers(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Driver variants from a comma-separated string or a list; ``None`` means the defaults."""
    if value is None:
        return DEFAULT_DRIVERS
    items = value.split(",") if isinstance(value, str) else [str(item) for item in value]
    drivers: list[str] = []
    for item in (item.strip().lower() for item in items):
        if not item:
            continue
        if not _DRIVER.match(item):
            raise ConfigError(f"{item!r} is not a driver name: use names such as asyncpg or psycopg (letters, "
                              "digits, underscores), comma-separated, in --drivers or the env.drivers config key.")
        if item not in drivers:
            drivers.append(item)
    return tuple(drivers)


def database_variables(name: str, address: DatabaseAddress, drivers: Sequence[str]) -> list[tuple[str, str]]:
    """``NAME`` as a plain URL, then ``NAME_<DRIVER>`` as ``postgresql+<driver>://`` for each driver."""
    variables = [(name, address.url())]
    variables += [(f"{name}_{driver.upper()}", address.url(f"postgresql+{driver}")) for driver in drivers]
    return variables


def libpq_variables(address: DatabaseAddress) -> list[tuple[str, str]]:
    """PGHOST … PGPASSWORD (always present, empty when unknown) and any PG* option the address carries."""
    env = address.libpq_env()
    env.setdefault("PGPASSWORD", "")
    order = ["PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD"]
    return [(key, env[key]) for key in order] + sorted((k, v) for k, v in env.items() if k not in order)


def redis_url(address: RedisAddress, db: int = 0) -> str:
    return RedisAddress(address.host, address.port, address.password, db).url()


def production_notes(sources: EnvSources) -> list[str]:
    notes = [f"Production goes through the Cloud SQL proxy on 127.0.0.1:{sources.prod.proxy_port} "
             "(`invoke proxy.start`); on App Engine / Cloud Run use DATABASE_URL_SOCKET."]
    if not sources.prod_password:
        notes.append(f"PGPASSWORD is empty: {PROD_PASSWORD_ENV} was not set. Export it and run `invoke env` again.")
    if not sources.prod.gcp_project:
        notes.append("gcpProject is not set in stacks/prod/Pulumi.prod.yaml: INSTANCE_CONNECTION_NAME holds "
                     "the placeholder PROJECT.")
    return notes


def render_local(sources: EnvSources, drivers: Sequence[str]) -> EnvFile:
    variables = [
        *database_variables("DATABASE_URL", sources.local, drivers),
        ("DATABASE_URL_LOCAL", sources.local.url()),
        *database_variables("TEST_DATABASE_URL", sources.test, drivers),
        ("REDIS_URL", redis_url(sources.dev.redis.address)),
        *libpq_variables(sources.local),
    ]
    return EnvFile(LOCAL_FILE, "Development: the dev stack's dev database and Redis.", tuple(variables))


def render_test(sources: EnvSources, drivers: Sequence[str]) -> EnvFile:
    # No production URL here: nothing a test run loads can reach production.
    variables = [
        *database_variables("DATABASE_URL", sources.test, drivers),
        *database_variables("TEST_DATABASE_URL", sources.test, drivers),
        ("REDIS_URL", redis_url(sources.dev.redis.address, TEST_REDIS_DB)),
        *libpq_variables(sources.test),
    ]
    return EnvFile(TEST_FILE, f"Tests: the dev stack's test database; Redis database {TEST_REDIS_DB}.",
                   tuple(variables))


def render_production(sources: EnvSources, drivers: Sequence[str]) -> EnvFile:
    variables = [
        *database_variables("DATABASE_URL", sources.production, drivers),
        ("DATABASE_URL_PRODUCTION", sources.production.url()),
        *database_variables("DATABASE_URL_SOCKET", sources.production_socket, drivers),
        ("INSTANCE_CONNECTION_NAME", sources.prod.connection_name),
        *libpq_variables(sources.production),
    ]
    return EnvFile(PRODUCTION_FILE, "Production (Cloud SQL): through the proxy and through the unix socket.",
                   tuple(variables), tuple(production_notes(sources)))


def render_active(sources: EnvSources, target: str, drivers: Sequence[str]) -> EnvFile:
    """``.env``: DATABASE_URL and PG* follow the active target; the named URLs are always there."""
    if target not in TARGETS:
        raise ConfigError(f"Unknown database target {target!r}: use local or production.")
    address = sources.target_address(target)
    variables = [
        ("TETHER_DB_TARGET", target),
        *database_variables("DATABASE_URL", address, drivers),
        ("DATABASE_URL_LOCAL", sources.local.url()),
        ("DATABASE_URL_PRODUCTION", sources.production.url()),
        *database_variables("TEST_DATABASE_URL", sources.test, drivers),
        ("REDIS_URL", redis_url(sources.dev.redis.address)),
        *libpq_variables(address),
    ]
    notes = [note for note in production_notes(sources) if "PGPASSWORD" in note] if target == "production" else []
    purpose = f"The active database target: {target}. Switch with `invoke target.local` or `invoke target.production`."
    return EnvFile(ACTIVE_FILE, purpose, tuple(variables), tuple(notes))


def render_docker(sources: EnvSources, drivers: Sequence[str]) -> EnvFile:
    """``.env.docker``: the same names with in-network hosts and ports, for containers on the dev network."""
    dev, test, redis = sources.dev.dev, sources.dev.test, sources.dev.redis
    local = DatabaseAddress(dev.internal_host, dev.internal_port, dev.address.database, dev.address.user,
                            dev.address.password, dev.address.options)
    test_address = DatabaseAddress(test.internal_host, test.internal_port, test.address.database, test.address.user,
                                   test.address.password, test.address.options)
    redis_address = RedisAddress(redis.internal_host, redis.internal_port, redis.address.password)
    variables = [
        ("RUNNING_IN_DOCKER", "1"),
        *database_variables("DATABASE_URL", local, drivers),
        ("DATABASE_URL_LOCAL", local.url()),
        *database_variables("TEST_DATABASE_URL", test_address, drivers),
        ("REDIS_URL", redis_url(redis_address)),
        *libpq_variables(local),
    ]
    return EnvFile(DOCKER_FILE, "Containers on the dev stack's Docker network (compose `env_file: .env.docker`).",
                   tuple(variables))


def render_env_files(sources: EnvSources, target: str, drivers: Sequence[str]) -> list[EnvFile]:
    """Every env file for ``target``; ``.env.docker`` only when the dev stack runs on Docker."""
    files = [render_local(sources, drivers), render_test(sources, drivers), render_production(sources, drivers),
             render_active(sources, target, drivers)]
    if sources.dev.backend == "docker":
        files.append(render_docker(sources, drivers))
    for env_file in files:
        env_file.block()  # refuse unquotable values before anything is written
    return files


# ---------------------------------------------------------------------------------------------------------
# The managed block inside a file


@dataclass(frozen=True)
class SplitText:
    before: str
    block: str | None
    after: str


def split_managed(text: str, path: Path | str) -> SplitText:
    """Cut ``text`` around its managed block; a damaged block is an error that changes nothing."""
    lines = text.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.strip() == MANAGED_BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == MANAGED_END]
    if not begins and not ends:
        return SplitText("", None, text)
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise ConfigError(f"{path} has a damaged tether managed block ({len(begins)} start and {len(ends)} end "
                          f"markers). Delete the lines from `{MANAGED_BEGIN}` to `{MANAGED_END}` (and any stray "
                          "marker), keep your own lines, and run `invoke env` again. Nothing was changed.")
    start, end = begins[0], ends[0]
    return SplitText("".join(lines[:start]), "".join(lines[start:end + 1]), "".join(lines[end + 1:]))


def merge_managed(existing: str | None, block: str, path: Path | str) -> str:
    """``existing`` with its managed block replaced by ``block``; a file without one gets it on top."""
    if not existing:
        return block
    parts = split_managed(existing, path)
    if parts.block is None:
        # On top, so a line the person wrote below still wins in dotenv and in a shell (the last one counts).
        return block + existing
    return parts.before + block + parts.after


def managed_values(text: str, path: Path | str) -> dict[str, str]:
    """The variables inside the managed block of ``text`` (as this module wrote them)."""
    block = split_managed(text, path).block or ""
    values: dict[str, str] = {}
    for line in block.splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        name, _, raw = line.partition("=")
        values[name] = unquote_value(raw)
    return values


def assigned_names(text: str) -> list[str]:
    """Variable names assigned in ``text`` (dotenv or shell form), in order."""
    names = []
    for line in text.splitlines():
        match = _ASSIGNMENT.match(line)
        if match:
            names.append(match.group(1))
    return names


# ---------------------------------------------------------------------------------------------------------
# Files on disk


def atomic_write(path: Path, text: str, mode: int = FILE_MODE) -> None:
    """Replace ``path`` with ``text`` atomically (temporary file, fsync, rename), mode 0600 by default."""
    write_atomically(path, text, mode)


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} cannot be read ({error}). Fix its permissions or move it away, then run "
                          "`invoke env` again.") from None


def file_mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return None


@dataclass
class FileStatus:
    """What happened to (or what is wrong with) one env file."""

    name: str
    path: Path
    status: str  # write: created, updated, unchanged; check: ok, missing, stale, damaged, insecure
    ignored: bool | None = None
    overridden: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in {"created", "updated", "unchanged", "ok"}

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "status": self.status, "git_ignored": self.ignored,
                "overridden_outside_block": self.overridden}


def write_env_file(path: Path, env_file: EnvFile) -> FileStatus:
    """Write ``env_file``'s block into ``path``, keeping the person's lines; untouched when already current."""
    existing = read_text(path)
    merged = merge_managed(existing, env_file.block(), path)
    if existing == merged and file_mode(path) == FILE_MODE:
        status = "unchanged"
    else:
        atomic_write(path, merged)
        status = "created" if existing is None else "updated"
    return FileStatus(env_file.name, path, status, overridden=overridden_names(merged, env_file, path))


def inspect_env_file(path: Path, env_file: EnvFile) -> FileStatus:
    """Compare ``path`` with what ``write_env_file`` would write, changing nothing."""
    existing = read_text(path)
    if existing is None:
        return FileStatus(env_file.name, path, "missing")
    try:
        current = split_managed(existing, path).block
    except ConfigError:
        return FileStatus(env_file.name, path, "damaged")
    if current != env_file.block():
        return FileStatus(env_file.name, path, "stale")
    status = "ok" if file_mode(path) == FILE_MODE else "insecure"
    return FileStatus(env_file.name, path, status, overridden=overridden_names(existing, env_file, path))


def overridden_names(text: str, env_file: EnvFile, path: Path) -> list[str]:
    """Managed names that a line below the block assigns again (that line wins when the file is loaded)."""
    after = split_managed(text, path).after
    managed = set(env_file.names())
    return sorted({name for name in assigned_names(after) if name in managed})


# ---------------------------------------------------------------------------------------------------------
# git-ignore check


def gitignore_matches(gitignore: str, relative_path: str) -> bool:
    """Whether a root ``.gitignore`` ignores the file ``relative_path`` (last matching pattern wins)."""
    ignored = False
    name = relative_path.rsplit("/", 1)[-1]
    for raw in gitignore.splitlines():
        pattern = raw.rstrip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern[1:] if negate else pattern
        if pattern.endswith("/"):
            continue  # directories only; these are files
        if "/" in pattern.rstrip("/"):
            matched = fnmatchcase(relative_path, pattern.lstrip("/"))
        else:
            matched = fnmatchcase(name, pattern)
        if matched:
            ignored = not negate
    return ignored


def git_ignored(root: Path, names: Sequence[str]) -> set[str]:
    """Which of ``names`` git ignores: git itself in a work tree (tracked files are not ignored), else .gitignore."""
    try:
        result = subprocess.run(["git", "-C", str(root), "check-ignore", "--", *names],
                                capture_output=True, text=True, timeout=10, check=False)
        if result.returncode in (0, 1):  # 0: some ignored, 1: none; anything else: not a repository
            return {line.strip() for line in result.stdout.splitlines() if line.strip()}
    except (OSError, subprocess.TimeoutExpired):
        pass
    gitignore = read_text(root / ".gitignore") or ""
    return {name for name in names if gitignore_matches(gitignore, name)}


# ---------------------------------------------------------------------------------------------------------
# Operations


def load_sources() -> EnvSources:
    """Read the dev stack's outputs, the prod stack's settings and the production password (if exported)."""
    try:
        dev = dev_endpoints()
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"The dev stack's outputs are incomplete or malformed ({type(error).__name__}: "
                          f"{error}). Run `invoke up` to rewrite them, then `invoke env`.") from None
    prod_file = stacks_dir() / "prod" / "Pulumi.prod.yaml"
    try:
        prod = load_prod_settings(prod_file)
    except Exception as error:  # YAML or OS error: say which file, whatever the cause
        raise ConfigError(f"{prod_file} cannot be read ({type(error).__name__}: {error}). Fix it (see "
                          "stacks/prod/Pulumi.yaml for the keys) and run `invoke env` again.") from None
    return EnvSources(dev, prod, os.environ.get(PROD_PASSWORD_ENV) or kept_production_password())


def kept_production_password(root: Path | None = None) -> str | None:
    """The production password the env files already hold, for a run without ``TETHER_PROD_PASSWORD``.

    ``invoke up`` rewrites the env files from a shell that seldom has the production password exported; without
    this, ``.env`` pointed at production would lose its password. ``.env.production`` is read first, then ``.env``
    when it points at production. A damaged file holds nothing we trust.
    """
    root = root or project_root()
    for name in (PRODUCTION_FILE, ACTIVE_FILE):
        path = root / name
        try:
            text = read_text(path)
            values = managed_values(text, path) if text else {}
        except ConfigError:
            continue
        if name == ACTIVE_FILE and values.get("TETHER_DB_TARGET") != "production":
            continue
        if values.get("PGPASSWORD"):
            return values["PGPASSWORD"]
    return None


@dataclass
class EnvReport:
    """The outcome of ``invoke env`` (or ``--check``): one status per file, warnings and notes."""

    target: str
    check: bool
    files: list[FileStatus]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(item.ok for item in self.files)

    @property
    def problems(self) -> list[FileStatus]:
        return [item for item in self.files if not item.ok]

    def written(self) -> list[Path]:
        return [item.path for item in self.files if item.status in {"created", "updated"}]

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "check": self.check, "ok": self.ok,
                "files": [item.as_dict() for item in self.files], "warnings": self.warnings, "notes": self.notes}


def env_report(sources: EnvSources, target: str, drivers: Sequence[str], *, check: bool,
               root: Path | None = None) -> EnvReport:
    """Write (or with ``check`` only compare) every env file under ``root`` for ``target``."""
    root = root or project_root()
    files = render_env_files(sources, target, drivers)
    statuses = [(inspect_env_file if check else write_env_file)(root / item.name, item) for item in files]
    report = EnvReport(target, check, statuses)
    ignored = git_ignored(root, [item.name for item in statuses])
    for item in statuses:
        item.ignored = item.name in ignored
        if not item.ignored:
            report.warnings.append(f"{item.name} is not ignored by git (or is tracked): it holds passwords. Add "
                                   "`.env` and `.env.*` to .gitignore (and `git rm --cached` it if tracked).")
        if item.overridden:
            report.warnings.append(f"{item.name}: your lines below the managed block set "
                                   f"{', '.join(item.overridden)}, which override the managed values.")
    for env_file in files:
        report.notes.extend(note for note in env_file.notes if note not in report.notes)
    if sources.prod_password and not os.environ.get(PROD_PASSWORD_ENV):
        report.notes.append(f"{PROD_PASSWORD_ENV} is not set: the production password already in "
                            f"{PRODUCTION_FILE} (or .env) was kept.")
    return report
