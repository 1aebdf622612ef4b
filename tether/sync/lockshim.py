"""pg_dump's per-table locks, answered on this machine when the sync's own session already holds them.

pg_dump (up to PostgreSQL 15, at least) sends one ``LOCK TABLE x IN ACCESS SHARE MODE`` per table, each a
round trip: 310 tables at 20 ms cost six seconds before it reads anything, and more while rows share the link.
The sync's snapshot session takes those very locks itself, in one statement, before pg_dump starts, and holds
them until the copy is over (``lock_tables``): no table can be dropped or altered meanwhile, which is all that
pg_dump's own locks guarantee. So pg_dump connects through this relay on 127.0.0.1, which forwards everything
to the source except a LOCK TABLE in ACCESS SHARE mode of a table the sync holds: that one it answers itself,
as the server would ("LOCK TABLE", then ready, in a transaction).

It is used only where it changes nothing else: when the source is across a network, and the connection to it
is not encrypted anyway (the Cloud SQL proxy on this machine speaks plain PostgreSQL; a server that offers TLS
is always reached directly, never downgraded).
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from tether.conninfo import DatabaseAddress

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
ENCRYPTED_MODES = ("require", "verify-ca", "verify-full")
_IDENTIFIER = r'(?:"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)'
_LOCK = re.compile(rf"^LOCK TABLE (?P<schema>{_IDENTIFIER})\.(?P<table>{_IDENTIFIER}) IN ACCESS SHARE MODE;?$")
_ANSWER = b"C" + struct.pack("!I", 4 + len(b"LOCK TABLE\0")) + b"LOCK TABLE\0" + b"Z" + struct.pack("!I", 5) + b"T"


def _name(identifier: str) -> str:
    return identifier[1:-1].replace('""', '"') if identifier.startswith('"') else identifier


def held_lock(query: bytes, held: frozenset[tuple[str, str]]) -> bool:
    """Whether ``query`` (a simple-protocol query's text) locks, in ACCESS SHARE mode, a table in ``held``."""
    text = query.rstrip(b"\0").decode("utf-8", "replace").strip()
    match = _LOCK.match(text)
    return match is not None and (_name(match["schema"]), _name(match["table"])) in held


def offers_tls(address: DatabaseAddress, timeout: float = 10.0) -> bool:
    """Whether the server at ``address`` answers PostgreSQL's SSLRequest with yes (it speaks TLS)."""
    with socket.create_connection((address.host, address.port), timeout=timeout) as sock:
        sock.sendall(struct.pack("!II", 8, SSL_REQUEST))
        return sock.recv(1) == b"S"


def usable(address: DatabaseAddress) -> bool:
    """Whether pg_dump may go through the shim: a TCP source that is plain anyway (see the module doc)."""
    options = dict(address.options)
    if address.host.startswith("/") or options.get("sslmode") in ENCRYPTED_MODES or "hostaddr" in options:
        return False
    try:
        return not offers_tls(address)
    except OSError:
        return False


def shim_address(address: DatabaseAddress, port: int, password: str | None) -> DatabaseAddress:
    """How pg_dump reaches the source through the shim: 127.0.0.1, plain, with the password the sync used."""
    kept = tuple((key, value) for key, value in address.options
                 if not key.startswith("ssl") and key not in ("gssencmode", "requirepeer", "channel_binding"))
    return DatabaseAddress("127.0.0.1", port, address.database, address.user, password,
                           (*kept, ("sslmode", "disable"), ("gssencmode", "disable")))


@dataclass
class LockShim:
    """``with LockShim(source, held) as shim:`` then point pg_dump at 127.0.0.1:``shim.port``."""

    source: DatabaseAddress
    held: frozenset[tuple[str, str]]
    port: int = 0
    answered: int = 0  # LOCK TABLE statements answered here
    _listener: socket.socket | None = None
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> LockShim:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        thread = threading.Thread(target=self._accept, name="sync-lock-shim", daemon=True)
        thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._listener is not None:
            self._listener.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), name="sync-lock-shim-conn", daemon=True)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        with contextlib.ExitStack() as stack:
            stack.enter_context(client)
            try:
                first = _read_untyped(client)
                while struct.unpack("!I", first[4:8])[0] in (SSL_REQUEST, GSSENC_REQUEST):
                    client.sendall(b"N")  # plain, as the source connection itself is
                    first = _read_untyped(client)
                server = stack.enter_context(socket.create_connection((self.source.host, self.source.port)))
                for sock in (client, server):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                server.sendall(first)
                if struct.unpack("!I", first[4:8])[0] == CANCEL_REQUEST:
                    return
                send_lock = threading.Lock()
                back = threading.Thread(target=_forward_messages, args=(server, client, send_lock), daemon=True)
                back.start()
                self._client_to_server(client, server, send_lock)
                with contextlib.suppress(OSError):
                    server.shutdown(socket.SHUT_WR)
                back.join(30)
            except (OSError, ConnectionError):
                return

    def _client_to_server(self, client: socket.socket, server: socket.socket, send_lock: threading.Lock) -> None:
        for kind, body, raw in _messages(client):
            if kind == b"Q" and held_lock(body, self.held):
                # pg_dump waits for each answer before it sends the next query: nothing else is in flight.
                with send_lock:
                    client.sendall(_ANSWER)
                with self._lock:
                    self.answered += 1
                continue
            server.sendall(raw)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return bytes(data)


def _read_untyped(sock: socket.socket) -> bytes:
    """A startup-phase message: length (itself included), then the rest."""
    head = _read_exactly(sock, 4)
    (length,) = struct.unpack("!I", head)
    return head + _read_exactly(sock, length - 4)


def _messages(sock: socket.socket) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(type, body, the whole message) of each typed protocol message until the peer closes."""
    with sock.makefile("rb", buffering=1 << 16) as reader:
        while True:
            head = reader.read(5)
            if len(head) < 5:
                return
            length = struct.unpack("!I", head[1:5])[0]
            body = reader.read(length - 4)
            if len(body) < length - 4:
                return
            yield head[:1], body, head + body


def _forward_messages(source: socket.socket, dest: socket.socket, send_lock: threading.Lock) -> None:
    """Whole messages from the server to pg_dump, so an answer given here never lands inside one of them."""
    try:
        for _, _, raw in _messages(source):
            with send_lock:
                dest.sendall(raw)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        dest.shutdown(socket.SHUT_WR)
