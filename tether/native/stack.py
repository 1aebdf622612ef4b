"""The dev stack as local processes: the same services, ports, users and databases as the Docker stack.

State lives in ``.runtime/native/`` (outputs and passwords, mode 0600). Server data lives in
``.runtime/native/data`` or, when we are root and the servers run as an unprivileged user, in
``/var/lib/tether/<project-id>/`` (a clone under /root is not reachable for that user).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.dev.settings import DevSettings, PostgresService, load_dev_settings
from tether.errors import ConfigError, TetherError
from tether.native import postgres as native_pg
from tether.native import redis as native_redis
from tether.native.binaries import redis_programs, server_bindir
from tether.native.files import atomic_write
from tether.native.ports import port_is_free, port_owner
from tether.native.sysuser import ServiceUser, make_private_dir, service_user
from tether.paths import project_root, runtime_dir, stacks_dir
from tether.secrets import generate_password

Progress = Callable[[str], None]

# The dev servers favour a laptop's resources over a production server's; durability stays on.
DEV_SERVER_SETTINGS = {"max_connections": "100", "shared_buffers": "128MB"}


@dataclass(frozen=True)
class NativeLayout:
    state_dir: Path  # root-owned: outputs, secrets
    data_root: Path  # owned by the service user when we are root

    @property
    def secrets_file(self) -> Path:
        return self.state_dir / "secrets.json"

    @property
    def socket_dir(self) -> Path:
        return self.data_root / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_root / "logs"

    def datadir(self, service: str) -> Path:
        return self.data_root / service


@dataclass(frozen=True)
class ServiceState:
    service: str
    kind: str
    port: int
    pid: int | None
    running: bool
    data_dir: str
    data_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def dev_stack_settings() -> DevSettings:
    """The dev stack's shape from stacks/dev/Pulumi.dev.yaml; a bad file is a ConfigError naming it and the key."""
    import yaml

    path = stacks_dir() / "dev" / "Pulumi.dev.yaml"
    try:
        return load_dev_settings(path)
    except ValueError as error:  # load_dev_settings names the file, the key and the fix
        raise ConfigError(str(error)) from None
    except (yaml.YAMLError, OSError) as error:  # in case the reader ever lets one through unexplained
        reason = " ".join(str(error).split())
        raise ConfigError(f"{path} cannot be read ({reason}). Fix it (stacks/dev/Pulumi.yaml documents every "
                          "key) and run the command again.") from None


def native_layout(user: ServiceUser | None) -> NativeLayout:
    state_dir = runtime_dir() / "native"
    override = os.environ.get("TETHER_NATIVE_DATA")
    if override:
        data_root = Path(override)
    elif user is not None:
        data_root = Path("/var/lib/tether") / _clone_data_name(state_dir)
    else:
        data_root = state_dir / "data"
    return NativeLayout(state_dir, data_root)


def _clone_data_name(state_dir: Path) -> str:
    """This clone's directory name under /var/lib/tether, remembered in .runtime/native/data-id.

    Random rather than derived from the clone's path: a clone deleted and made again at the same path has new
    passwords (they lived in the old clone's .runtime), so it must not pick up the old clone's servers. A clone
    that already has its passwords but no remembered name keeps the path-derived name it has always used.
    """
    remembered = state_dir / "data-id"
    try:
        name = remembered.read_text().strip()
        if name.isalnum():
            return name
    except FileNotFoundError:
        pass
    if (state_dir / "secrets.json").exists():
        name = hashlib.sha256(str(project_root()).encode()).hexdigest()[:12]
    else:
        name = os.urandom(6).hex()
    state_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(remembered, name + "\n", mode=0o644)  # never a half-written name: it says where the data lives
    return name


def load_or_create_secrets(layout: NativeLayout, settings: DevSettings) -> dict[str, str]:
    """The native services' passwords, generated once and kept in a 0600 file across down/up."""
    names = [settings.dev.name, settings.test.name, settings.redis.name]
    secrets: dict[str, str] = {}
    if layout.secrets_file.exists():
        try:
            secrets = json.loads(layout.secrets_file.read_text())
            if not isinstance(secrets, dict):
                raise ValueError("not an object")
        except (OSError, ValueError) as error:
            # Never regenerate over it: the existing servers were created with these passwords.
            raise ConfigError(
                f"{layout.secrets_file} is unreadable ({type(error).__name__}), and it holds the passwords the "
                "native servers were created with, so it is not replaced. Restore it from a backup, or start "
                "afresh with `invoke down --purge` (which deletes the dev data)."
            ) from None
    if all(name in secrets for name in names):
        return secrets
    for name in names:
        secrets.setdefault(name, generate_password())
    # Atomically: a half-written file would be "unreadable" above, and refused forever after.
    atomic_write(layout.secrets_file, json.dumps(secrets, indent=2), mode=0o600)
    return secrets


def _prepare_data_root(layout: NativeLayout, user: ServiceUser | None) -> None:
    if user is not None and not os.environ.get("TETHER_NATIVE_DATA"):
        Path("/var/lib/tether").mkdir(parents=True, exist_ok=True, mode=0o755)
    make_private_dir(layout.data_root, user, 0o755)
    make_private_dir(layout.socket_dir, user, 0o755)
    make_private_dir(layout.log_dir, user, 0o755)
    link = layout.state_dir / "data"
    if layout.data_root != link and not link.exists():
        layout.state_dir.mkdir(parents=True, exist_ok=True)
        link.symlink_to(layout.data_root)


def postgres_server(layout: NativeLayout, settings: DevSettings, service: PostgresService,
                    user: ServiceUser | None) -> native_pg.PostgresServer:
    return native_pg.PostgresServer(
        datadir=layout.datadir(service.name), bindir=server_bindir(settings.postgres_version),
        port=service.host_port, socket_dir=layout.socket_dir / service.name,
        log_file=layout.log_dir / f"{service.name}.log", run_as=user, listen_address=settings.bind_address,
        settings=DEV_SERVER_SETTINGS,
    )


def redis_server(layout: NativeLayout, settings: DevSettings, password: str,
                 user: ServiceUser | None) -> native_redis.RedisServer:
    program, _ = redis_programs()
    return native_redis.RedisServer(
        datadir=layout.datadir(settings.redis.name), server_program=program, port=settings.redis.host_port,
        password=password, log_file=layout.log_dir / "redis.log", run_as=user,
        bind_address=settings.bind_address, appendonly=settings.redis.appendonly,
    )


def _refuse_taken_port(service: str, port: int, host: str) -> None:
    if port_is_free(port, host):
        return
    owner = port_owner(port)
    # A server of this project whose .runtime was deleted (or a clone at another path) keeps its port: name
    # its directory, so that the user can tell it apart from an unrelated process and stop the right one.
    stop = (f"Stop that process (`kill -INT {owner.pid}` shuts PostgreSQL and Redis down cleanly)" if owner
            else "Stop that process")
    raise TetherError(
        f"Port {port} for {service} is already taken by {owner.describe() if owner else 'another process'}, so "
        f"{service} cannot start. {stop}, or give {service} another port in stacks/dev/Pulumi.dev.yaml (for "
        "example `tether-dev:devPort`, `testPort` or `redisPort`), then run `invoke up` again."
    )


def _ensure_postgres(server: native_pg.PostgresServer, service: PostgresService, password: str,
                     major: int, progress: Progress) -> str:
    """Create (first time) and start one PostgreSQL server; returns what it did."""
    native_pg.check_cluster_version(server.datadir, major)
    if native_pg.running_pid(server) is not None:
        return "running"
    _refuse_taken_port(service.name, server.port, server.listen_address)
    created = native_pg.cluster_major(server.datadir) is None
    if created:
        progress(f"creating {service.name} (PostgreSQL {major}) in {server.datadir}")
        if server.datadir.exists():
            shutil.rmtree(server.datadir)  # an initdb that never finished: nothing worth keeping
        make_private_dir(server.datadir, server.run_as, 0o700)
        native_pg.init_cluster(server, service.user, password)
    elif native_pg.remove_stale_pid_file(server):
        progress(f"{service.name} had stopped without cleaning up (crash or kill); restarting it")
    progress(f"starting {service.name} on port {server.port}")
    native_pg.start(server)
    if created:
        _create_database(server, service, password)
    return "created" if created else "started"


def _create_database(server: native_pg.PostgresServer, service: PostgresService, password: str) -> None:
    import psycopg
    from psycopg import sql

    from tether.conninfo import DatabaseAddress

    admin = DatabaseAddress(server.listen_address, server.port, "postgres", service.user, password)
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (service.database,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(service.database), sql.Identifier(service.user)))


def _ensure_redis(server: native_redis.RedisServer, progress: Progress) -> str:
    if native_redis.running_pid(server) is not None:
        return "running"
    _refuse_taken_port("redis", server.port, server.bind_address)
    make_private_dir(server.datadir, server.run_as, 0o700)
    progress(f"starting redis on port {server.port}")
    native_redis.start(server)
    return "started"


def native_outputs(settings: DevSettings, secrets: dict[str, str]) -> dict[str, Any]:
    """The same outputs the Docker stack exports, so every task reads one shape."""

    def postgres(service: PostgresService) -> dict[str, Any]:
        return {"host": settings.bind_address, "port": service.host_port, "database": service.database,
                "user": service.user, "password": secrets[service.name],
                "internalHost": service.name, "internalPort": service.internal_port}

    return {
        "backend": "native",
        "postgresDev": postgres(settings.dev),
        "postgresTest": postgres(settings.test),
        "redis": {"host": settings.bind_address, "port": settings.redis.host_port,
                  "password": secrets[settings.redis.name], "internalHost": settings.redis.name,
                  "internalPort": settings.redis.internal_port},
    }


def up(progress: Progress = lambda _message: None) -> dict[str, str]:
    """Start every native service that is not running (creating it the first time); returns what each did."""
    from tether.endpoints import write_native_outputs

    settings = dev_stack_settings()
    user = service_user()
    layout = native_layout(user)
    secrets = load_or_create_secrets(layout, settings)
    postgres = [(service, postgres_server(layout, settings, service, user)) for service in settings.postgres_services]
    redis = redis_server(layout, settings, secrets[settings.redis.name], user)
    # Everything that can refuse without touching the disk goes first, so a refused `up` leaves nothing behind.
    for service, server in postgres:
        native_pg.check_cluster_version(server.datadir, settings.postgres_version)
        if native_pg.running_pid(server) is None:
            _refuse_taken_port(service.name, server.port, server.listen_address)
    if native_redis.running_pid(redis) is None:
        _refuse_taken_port(settings.redis.name, redis.port, redis.bind_address)
    actions: dict[str, str] = {}
    with _removing_new_empty_dirs(layout, settings, user), _stopping_on_failure(postgres, redis, progress):
        _prepare_data_root(layout, user)
        for service, server in postgres:
            actions[service.name] = _ensure_postgres(server, service, secrets[service.name],
                                                     settings.postgres_version, progress)
        actions[settings.redis.name] = _ensure_redis(redis, progress)
        write_native_outputs(native_outputs(settings, secrets))
    return actions


@contextmanager
def _stopping_on_failure(postgres: list[tuple[PostgresService, native_pg.PostgresServer]],
                         redis: native_redis.RedisServer, progress: Progress) -> Iterator[None]:
    """On failure, stop the servers this run started, so a failed ``up`` leaves nothing half started.

    Servers that were already running before this ``up`` keep running: they were not ours to stop.
    """
    postgres_before = {service.name for service, server in postgres if native_pg.running_pid(server) is not None}
    redis_before = native_redis.running_pid(redis) is not None
    try:
        yield
    except BaseException:
        for service, server in postgres:
            if service.name not in postgres_before and native_pg.running_pid(server) is not None:
                progress(f"stopping {service.name} again: `up` failed")
                with suppress(Exception):
                    native_pg.stop(server)
        if not redis_before and native_redis.running_pid(redis) is not None:
            progress("stopping redis again: `up` failed")
            with suppress(Exception):
                native_redis.stop(redis)
        raise


def _data_dirs(layout: NativeLayout, settings: DevSettings, user: ServiceUser | None) -> list[Path]:
    """Every directory ``up`` may create for data, parents before children."""
    dirs = []
    if user is not None and not os.environ.get("TETHER_NATIVE_DATA"):
        dirs.append(Path("/var/lib/tether"))
    dirs += [layout.data_root, layout.socket_dir, layout.log_dir]
    for name in (settings.dev.name, settings.test.name, settings.redis.name):
        dirs += [layout.datadir(name), layout.socket_dir / name]
    return dirs


@contextmanager
def _removing_new_empty_dirs(layout: NativeLayout, settings: DevSettings, user: ServiceUser | None) -> Iterator[None]:
    """On failure, remove the data directories this run created that are still empty, and their link.

    Only empty directories go (``rmdir`` refuses anything else), so no data is ever deleted; a log that
    explains the failure keeps its directory.
    """
    created = [path for path in _data_dirs(layout, settings, user) if not os.path.lexists(path)]
    link = layout.state_dir / "data"
    link_is_new = not os.path.lexists(link)
    try:
        yield
    except BaseException:
        for path in reversed(created):
            with suppress(OSError):
                path.rmdir()
        if link_is_new and link.is_symlink() and not link.exists():
            link.unlink()
        raise


def down(progress: Progress = lambda _message: None) -> dict[str, str]:
    """Stop every native service gracefully; returns what each did."""
    settings = dev_stack_settings()
    user = service_user()
    layout = native_layout(user)
    actions: dict[str, str] = {}
    for service in settings.postgres_services:
        server = postgres_server(layout, settings, service, user)
        progress(f"stopping {service.name}")
        actions[service.name] = "stopped" if native_pg.stop(server) else "not running"
    secrets = load_or_create_secrets(layout, settings) if layout.secrets_file.exists() else {}
    redis = redis_server(layout, settings, secrets.get(settings.redis.name, ""), user)
    progress("stopping redis")
    actions[settings.redis.name] = "stopped" if native_redis.stop(redis) else "not running"
    return actions


def purge() -> Path:
    """Delete the native stack's data and state (servers must be stopped first)."""
    user = service_user()
    layout = native_layout(user)
    shutil.rmtree(layout.data_root, ignore_errors=True)
    shutil.rmtree(layout.state_dir, ignore_errors=True)
    return layout.data_root


def _size_of(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def status() -> list[ServiceState]:
    """Each native service: port, pid, whether it runs, where its data is and how big it is."""
    settings = dev_stack_settings()
    user = service_user()
    layout = native_layout(user)
    states: list[ServiceState] = []
    for service in settings.postgres_services:
        server = postgres_server(layout, settings, service, user)
        pid = native_pg.running_pid(server)
        states.append(ServiceState(service.name, "postgres", service.host_port, pid, pid is not None,
                                   str(server.datadir), _size_of(server.datadir)))
    redis_dir = layout.datadir(settings.redis.name)
    redis_pid_file = redis_dir / "redis.pid"
    redis = native_redis.RedisServer(redis_dir, Path("redis-server"), settings.redis.host_port, "",
                                      layout.log_dir / "redis.log", user)
    pid = native_redis.running_pid(redis) if redis_pid_file.exists() else None
    states.append(ServiceState(settings.redis.name, "redis", settings.redis.host_port, pid, pid is not None,
                               str(redis_dir), _size_of(redis_dir)))
    return states
