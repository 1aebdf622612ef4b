"""Redis as the apps see it: one address type, the URL ``REDIS_URL`` holds, and connections through redis-py.

redis-py is the client the apps use, so its URL parser is ours too, and it brings TLS (Memorystore's in-transit
encryption: ``rediss://`` and the server's CA file). Every failure becomes one ``RedisError`` whose message names
the server with its password masked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tether.errors import ConfigError, TetherError
from tether.secrets import mask_text, mask_url

if TYPE_CHECKING:  # redis-py is imported when a connection is made, so every `invoke` command starts faster
    import redis

DEFAULT_PORT = 6379
# Redis 6+ ACL's built-in user: `AUTH default PASSWORD` is what `AUTH PASSWORD` means, and redis-cli -u,
# redis-py, ioredis and node-redis all accept a URL that names it (redis-cli refuses an empty user name).
DEFAULT_USER = "default"


class RedisError(TetherError):
    """Redis answered with an error, or could not be reached."""


@dataclass(frozen=True)
class RedisAddress:
    host: str
    port: int
    password: str | None = None
    db: int = 0
    username: str | None = None
    tls: bool = False
    ca_file: str | None = None  # the server's CA certificate (Memorystore's server-ca.pem), for TLS

    def url(self) -> str:
        """``redis://default:PASSWORD@host:port/db`` (``rediss://`` with TLS), every part percent-encoded."""
        auth = ""
        if self.password:
            auth = f"{quote(self.username or DEFAULT_USER, safe='')}:{quote(self.password, safe='')}@"
        elif self.username:
            auth = f"{quote(self.username, safe='')}@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"?ssl_ca_certs={quote(self.ca_file, safe='/')}" if self.tls and self.ca_file else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}{host}:{self.port}/{self.db}{query}"

    def masked_url(self) -> str:
        return mask_url(self.url())

    def __repr__(self) -> str:
        return f"RedisAddress({self.masked_url()})"


REDIS_URL_HINT = ("Write it as redis://default:PASSWORD@HOST:PORT/DB (rediss:// for TLS, with ?ssl_ca_certs=FILE for "
                  "a private CA such as Memorystore's), the password percent-encoded.")


def parse_redis_url(url: str) -> RedisAddress:
    """A ``redis://`` or ``rediss://`` URL read exactly as redis-py reads it; errors never quote the URL."""
    from redis.connection import SSLConnection, parse_url

    try:
        kwargs = parse_url(url)
    except ValueError as error:
        # redis-py's own messages name the scheme or the query key, never the password.
        raise ConfigError(f"The Redis URL cannot be read: {error} {REDIS_URL_HINT}") from None
    if "path" in kwargs:
        raise ConfigError(f"The Redis URL names a unix socket; tether reaches Redis over TCP. {REDIS_URL_HINT}")
    if "host" not in kwargs:
        raise ConfigError(f"The Redis URL names no host. {REDIS_URL_HINT}")
    return RedisAddress(
        host=kwargs["host"], port=int(kwargs.get("port", DEFAULT_PORT)), password=kwargs.get("password"),
        db=int(kwargs.get("db", 0)), username=kwargs.get("username"),
        tls=kwargs.get("connection_class") is SSLConnection, ca_file=kwargs.get("ssl_ca_certs"),
    )


def client_for(address: RedisAddress, timeout: float = 3.0) -> redis.Redis:
    """A redis-py client for ``address``: string replies, one attempt (no silent retries), TLS when asked."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options: dict[str, Any] = {}
    if address.tls:
        options = {"ssl": True, "ssl_ca_certs": address.ca_file, "ssl_cert_reqs": "required"}
    return redis.Redis(host=address.host, port=address.port, db=address.db, username=address.username,
                       password=address.password, socket_timeout=timeout, socket_connect_timeout=timeout,
                       decode_responses=True, retry=Retry(NoBackoff(), 0), **options)


@contextmanager
def connect(address: RedisAddress, timeout: float = 3.0) -> Iterator[redis.Redis]:
    """A connected, authenticated client; any redis-py failure inside the block becomes a masked ``RedisError``."""
    client = client_for(address, timeout)
    try:
        client.execute_command("PING")  # connect and authenticate now, so a bad address fails here
        yield client
    except RedisError:
        raise
    except Exception as error:
        translated = translate_error(address, error, timeout)
        if translated is None:
            raise
        raise translated from None
    finally:
        client.close()


def translate_error(address: RedisAddress, error: BaseException, timeout: float) -> RedisError | None:
    """One ``RedisError`` saying what went wrong and what to do; None when ``error`` is not a Redis failure."""
    import redis.exceptions as failures

    where = f"Redis at {address.masked_url()}"
    reason = mask_text(" ".join(str(error).split()), [address.password]).rstrip(".")
    if isinstance(error, failures.TimeoutError):
        return RedisError(f"{where} did not answer within {timeout:g} s. Is it overloaded, or is something other "
                          "than Redis listening on that port?")
    if isinstance(error, failures.AuthenticationError | failures.AuthenticationWrongNumberOfArgsError):
        return RedisError(f"{where} refused the credentials: {reason}. Check the password (`invoke env` writes "
                          "the dev stack's) and the user name.")
    if isinstance(error, failures.ResponseError):
        return RedisError(f"{where} answered with an error: {reason}.")
    if isinstance(error, failures.InvalidResponse):
        return RedisError(f"{where} sent an unexpected reply ({reason}): is something other than Redis listening "
                          "on that port?")
    if isinstance(error, failures.ConnectionError):
        return RedisError(f"Cannot reach {where}: {reason}. Check that Redis is running (`invoke status`).")
    if isinstance(error, failures.RedisError | OSError):
        return RedisError(f"{where} failed: {reason}.")
    return None


def ping(address: RedisAddress, timeout: float = 3.0) -> str:
    """``PONG`` from an authenticated PING, or a ``RedisError``."""
    with connect(address, timeout) as client:
        return "PONG" if client.ping() else "no PONG"


def info(address: RedisAddress, section: str = "server", timeout: float = 3.0) -> dict[str, Any]:
    """``INFO section`` as redis-py parses it (numbers as numbers, keyspace lines as dicts)."""
    with connect(address, timeout) as client:
        return dict(client.info(section))
