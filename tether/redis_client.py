"""A minimal Redis (RESP2) client: enough for AUTH, PING, INFO, BGSAVE, LASTSAVE and CONFIG GET.

We talk to Redis for health checks and snapshots only; a ten-line protocol client beats a dependency.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from tether.errors import TetherError
from tether.secrets import MASK


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
        auth = f":{MASK}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/{self.db}"

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
        try:
            self._sock = socket.create_connection((address.host, address.port), timeout=timeout)
        except OSError as error:
            raise RedisError(f"Cannot connect to Redis at {address.masked_url()}: {error.strerror or error}.") from None
        self._file = self._sock.makefile("rb")
        if address.password:
            self.command("AUTH", address.password)
        if address.db:
            self.command("SELECT", str(address.db))

    def __enter__(self) -> RedisConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def command(self, *args: str) -> object:
        self._sock.sendall(encode_command(*args))
        return self._read_reply(args[0])

    def _read_reply(self, name: str) -> object:
        line = self._file.readline()
        if not line:
            raise RedisError(f"Redis at {self.address.masked_url()} closed the connection during {name}.")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            message = rest.decode()
            raise RedisError(f"Redis at {self.address.masked_url()} refused {name}: {message}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            if length < 0:
                return None
            data = self._file.read(length + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._read_reply(name) for _ in range(count)]
        raise RedisError(f"Redis at {self.address.masked_url()} sent an unexpected reply to {name}.")


def ping(address: RedisAddress, timeout: float = 3.0) -> str:
    with RedisConnection(address, timeout) as connection:
        return str(connection.command("PING"))


def info(address: RedisAddress, section: str = "server") -> dict[str, str]:
    with RedisConnection(address) as connection:
        text = str(connection.command("INFO", section))
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))
    return {key: value for key, value in pairs}
