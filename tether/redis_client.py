"""A minimal Redis (RESP2) client: enough for AUTH, PING, INFO, BGSAVE, LASTSAVE and CONFIG GET.

We talk to Redis for health checks and snapshots only; a ten-line protocol client beats a dependency.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from tether.errors import TetherError
from tether.secrets import mask_url


class RedisError(TetherError):
    """Redis answered with an error, or could not be reached."""


@dataclass(frozen=True)
class RedisAddress:
    host: str
    port: int
    password: str | None = None
    db: int = 0

    def url(self) -> str:
        from urllib.parse import quote

        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{auth}{host}:{self.port}/{self.db}"

    def masked_url(self) -> str:
        return mask_url(self.url())

    def __repr__(self) -> str:
        return f"RedisAddress({self.masked_url()})"


def encode_command(*args: str | bytes) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg if isinstance(arg, bytes) else arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RedisConnection:
    """One authenticated connection; use as a context manager."""

    def __init__(self, address: RedisAddress, timeout: float = 3.0) -> None:
        self.address = address
        self.timeout = timeout
        try:
            self._sock = socket.create_connection((address.host, address.port), timeout=timeout)
        except OSError as error:
            raise RedisError(f"Cannot connect to Redis at {address.masked_url()}: {error.strerror or error}.") from None
        self._file = self._sock.makefile("rb")
        try:
            if address.password:
                self.command("AUTH", address.password)
            if address.db:
                self.command("SELECT", str(address.db))
        except BaseException:
            self.close()  # the caller never gets the object, so nobody else would close the socket
            raise

    def __enter__(self) -> RedisConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def command(self, *args: str) -> object:
        """Send one command and read its reply; only the command's name ever appears in an error."""
        name = args[0]
        try:
            self._sock.sendall(encode_command(*args))
            return self._read_reply(name)
        except TimeoutError:
            raise RedisError(
                f"Redis at {self.address.masked_url()} did not answer {name} within {self.timeout:g} s. Is it "
                "overloaded, or is something other than Redis listening on that port?") from None
        except OSError as error:
            raise RedisError(f"Lost the connection to Redis at {self.address.masked_url()} during {name}: "
                             f"{error.strerror or error}. Check that Redis is running (`invoke status`).") from None

    def _read_reply(self, name: str) -> object:
        line = self._file.readline()
        if not line.endswith(b"\n"):  # empty, or cut off: the server hung up
            raise RedisError(f"Redis at {self.address.masked_url()} closed the connection during {name}.")
        kind, rest = line[:1], line[1:].rstrip(b"\r\n")
        if kind == b"+":
            return rest.decode(errors="replace")
        if kind == b"-":
            message = rest.decode(errors="replace")
            raise RedisError(f"Redis at {self.address.masked_url()} refused {name}: {message}")
        if kind in (b":", b"$", b"*") and rest.removeprefix(b"-").isdigit():
            number = int(rest)
            if kind == b":":
                return number
            if number < 0:
                return None
            if kind == b"*":
                return [self._read_reply(name) for _ in range(number)]
            data = self._file.read(number + 2)
            if len(data) != number + 2:
                raise RedisError(f"Redis at {self.address.masked_url()} closed the connection during {name}.")
            return data[:-2].decode(errors="replace")
        raise RedisError(f"Redis at {self.address.masked_url()} sent an unexpected reply to {name}: is something "
                         "other than Redis listening on that port?")


def ping(address: RedisAddress, timeout: float = 3.0) -> str:
    with RedisConnection(address, timeout) as connection:
        return str(connection.command("PING"))


def info(address: RedisAddress, section: str = "server", timeout: float = 3.0) -> dict[str, str]:
    with RedisConnection(address, timeout) as connection:
        text = str(connection.command("INFO", section))
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))
    return {key: value for key, value in pairs}
