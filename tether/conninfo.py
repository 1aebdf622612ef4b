"""Where a database lives: one value type, its URL forms, its libpq environment, and whether it is local."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from tether.errors import ConfigError
from tether.secrets import mask_url

LOCAL_HOST_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
POSTGRES_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class DatabaseAddress:
    """A PostgreSQL database: host, port, name, role and password (kept out of ``repr``)."""

    host: str
    port: int
    database: str
    user: str
    password: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        return f"DatabaseAddress({self.masked_url()})"

    def url(self, scheme: str = "postgresql") -> str:
        """The URL form, with user and password percent-encoded so any character round-trips."""
        userinfo = quote(self.user, safe="")
        if self.password is not None:
            userinfo += ":" + quote(self.password, safe="")
        query_items = list(self.options)
        if self.host.startswith("/"):
            # A unix socket directory goes in the query string; the authority keeps only the user.
            netloc = f"{userinfo}@"
            query_items = [("host", self.host), ("port", str(self.port)), *query_items]
        else:
            host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
            netloc = f"{userinfo}@{host}:{self.port}"
        query = "?" + urlencode(query_items, quote_via=quote, safe="/") if query_items else ""
        return f"{scheme}://{netloc}/{quote(self.database, safe='')}{query}"

    def masked_url(self, scheme: str = "postgresql") -> str:
        return mask_url(self.url(scheme))

    def conninfo(self, **extra: str) -> str:
        """A libpq keyword/value string for psycopg (built by psycopg, so quoting is right)."""
        from psycopg.conninfo import make_conninfo

        params: dict[str, str | int] = {
            "host": self.host, "port": self.port, "dbname": self.database, "user": self.user,
        }
        if self.password is not None:
            params["password"] = self.password
        params.update(dict(self.options))
        params.update(extra)
        return make_conninfo("", **params)

    def libpq_env(self) -> dict[str, str]:
        """PG* variables for a subprocess: the password travels here, never in argv."""
        env = {"PGHOST": self.host, "PGPORT": str(self.port), "PGDATABASE": self.database, "PGUSER": self.user}
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        option_env = {"sslmode": "PGSSLMODE", "application_name": "PGAPPNAME", "connect_timeout": "PGCONNECT_TIMEOUT"}
        for key, value in self.options:
            if key in option_env:
                env[option_env[key]] = value
        return env

    def with_database(self, database: str) -> DatabaseAddress:
        return replace(self, database=database)

    def with_credentials(self, user: str, password: str | None) -> DatabaseAddress:
        return replace(self, user=user, password=password)

    @property
    def is_local(self) -> bool:
        """A server on this machine, and not production behind a local Cloud SQL proxy port."""
        from tether.locality import is_local_database

        return is_local_database(self)


def is_local_host(host: str) -> bool:
    """True for unix sockets, loopback addresses and localhost names: the only places we write freely."""
    if not host or host.startswith("/"):
        return True
    if host.lower() in LOCAL_HOST_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_database_url(url: str, default_user: str = "postgres") -> DatabaseAddress:
    """Parse ``postgresql://user:pass@host:port/db?opts`` (percent-decoding every part)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ConfigError(
            f"{mask_url(url)!r} is not a valid PostgreSQL URL ({error}). "
            "Use the form postgresql://USER:PASSWORD@HOST:PORT/DATABASE."
        ) from error
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in POSTGRES_SCHEMES:
        raise ConfigError(
            f"{mask_url(url)!r} is not a PostgreSQL URL: it must start with postgresql://. "
            "Use the form postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or one of the names dev, test, prod."
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    host = unquote(parts.hostname or "") if parts.hostname else options.pop("host", "localhost")
    options.pop("host", None)
    if "port" in options:
        port = int(options.pop("port"))
    database = unquote(parts.path.lstrip("/")) or options.pop("dbname", "")
    user = unquote(parts.username) if parts.username else options.pop("user", default_user)
    password = unquote(parts.password) if parts.password is not None else options.pop("password", None)
    if not database:
        raise ConfigError(f"{mask_url(url)!r} names no database: add /DATABASE after the host and port.")
    return DatabaseAddress(
        host=host, port=port or 5432, database=database, user=user, password=password,
        options=tuple(sorted(options.items())),
    )
