"""Where a database lives: one value type, its URL forms, its libpq environment, and whether it is local."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import quote, unquote, urlencode, urlsplit

from tether.errors import ConfigError
from tether.locality import is_local_server
from tether.secrets import mask_url

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
        return is_local_server(self.host, self.port)


def libpq_reason(error: BaseException, password: str | None = None) -> str:
    """libpq's whole reason for a failed connection, as one line, with the password masked.

    libpq writes one line per address tried plus hints ("Connection refused" / "Is the server running on that
    host…?"); keeping only the first or last line drops either the cause or the other addresses.
    """
    from tether.secrets import mask_text

    text = " ".join(str(error).split()) or type(error).__name__
    return mask_text(text, [password])


URL_FORM_HINT = (
    "Write it in the form postgresql://USER@HOST:PORT/DATABASE with the password after USER and a colon, "
    "percent-encoded (@ as %40, / as %2F, : as %3A, # as %23, ? as %3F, % as %25, space as %20)."
)
# Options that make libpq connect somewhere other than the host and port we check for locality.
REDIRECTING_OPTIONS = frozenset({"hostaddr", "service"})


def parse_database_url(url: str, default_user: str = "postgres") -> DatabaseAddress:
    """Parse ``postgresql://user:pass@host:port/db?opts`` (percent-decoding every part).

    Errors never quote the URL or the parser's message: when parsing fails, the password is exactly
    the part most likely to have been taken for a host, port or path.
    """
    scheme = _scheme_of(url)
    if scheme is not None and scheme.split("+", 1)[0].lower() not in POSTGRES_SCHEMES:
        raise ConfigError(
            f"The database URL starts with {scheme}://, not postgresql://. {URL_FORM_HINT} "
            "Or use one of the names dev, test, prod."
        )
    try:
        parts = urlsplit(url)
        netloc_port = parts.port
    except ValueError:
        raise ConfigError(
            f"The {_shown(scheme)} database URL could not be parsed (its port is not a number from 1 to 65535, "
            f"or its host is malformed). {URL_FORM_HINT}"
        ) from None
    if scheme is None:
        raise ConfigError(f"The database URL has no scheme: it must start with postgresql://. {URL_FORM_HINT}")
    if "@" in parts.path or "@" in parts.query or "#" in url:
        # A raw @ or # after the host almost always comes from a password with an unencoded / ? or #.
        raise ConfigError(
            f"The {_shown(scheme)} database URL has an @ or # after its host part, so it could not be split "
            f"into user, password, host and database. {URL_FORM_HINT}"
        )
    options = _query_options(parts.query)
    redirecting = sorted(REDIRECTING_OPTIONS & options.keys())
    if redirecting:
        raise ConfigError(
            f"The database URL sets {', '.join(redirecting)}, which would connect somewhere other than its host "
            "and port (and bypass the checks that protect non-local databases). Put the server in the host part."
        )
    host = _host_of(parts.netloc) or options.pop("host", "") or "localhost"
    options.pop("host", None)
    port = _port(options.pop("port")) if "port" in options else netloc_port
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"The database URL's port must be a number from 1 to 65535. {URL_FORM_HINT}")
    database = unquote(parts.path.lstrip("/")) or options.pop("dbname", "")
    options.pop("dbname", None)
    user = unquote(parts.username) if parts.username else options.pop("user", default_user)
    options.pop("user", None)
    password = unquote(parts.password) if parts.password is not None else options.pop("password", None)
    options.pop("password", None)
    if not database:
        raise ConfigError(
            "The database URL names no database: add /DATABASE after HOST:PORT, "
            "as in postgresql://USER@localhost:5432/app."
        )
    return DatabaseAddress(
        host=host, port=port or 5432, database=database, user=user, password=password,
        options=tuple(sorted(options.items())),
    )


def _scheme_of(url: str) -> str | None:
    """The scheme, only if it looks like one (anything else might be part of a password)."""
    match = re.match(r"([a-zA-Z][a-zA-Z0-9+.\-]*)://", url)
    return match.group(1) if match else None


def _shown(scheme: str | None) -> str:
    return f"{scheme}://" if scheme else "given"


def _host_of(netloc: str) -> str:
    """The host as written (``hostname`` would lowercase a percent-encoded socket directory)."""
    hostinfo = netloc.rpartition("@")[2]
    if hostinfo.startswith("["):
        return unquote(hostinfo[1:hostinfo.find("]")])
    return unquote(hostinfo.partition(":")[0])


def _query_options(query: str) -> dict[str, str]:
    """Query parameters as libpq reads them: percent-decoded, with '+' kept as a plus (not a space)."""
    options: dict[str, str] = {}
    for pair in query.split("&") if query else []:
        if pair:
            name, _, value = pair.partition("=")
            options[unquote(name)] = unquote(value)
    return options


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ConfigError(f"The database URL's port parameter is not a number from 1 to 65535. {URL_FORM_HINT}")
    return int(text)
