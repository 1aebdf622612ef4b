"""A simulated network link in front of the source server: round-trip delay and one shared bandwidth cap.

Production is far from the laptop: every round trip costs milliseconds and the bytes share one link. The
relay accepts connections on a local port and forwards them to the source server; each chunk of bytes is
delivered when the link would deliver it: after waiting for the link (a FIFO shared by every connection in
that direction), its transmission time (bytes ÷ rate) and half the round-trip time. A connection reads no
further than about two bandwidth-delay products ahead of what it has delivered, as TCP's window would make it,
so a fast sender is held back instead of filling memory.

One thread runs an asyncio loop; it moves tens of megabytes a second on a fraction of one core. It counts the
bytes it carried in each direction, which is what the benchmark reports as "bytes across the link".
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from tether.errors import ConfigError

CHUNK = 64 * 1024
MIN_WINDOW = 256 * 1024


@dataclass(frozen=True)
class LinkSpec:
    """A link: round-trip time in seconds and bandwidth in bits per second (each way)."""

    rtt: float
    bits_per_second: float

    @property
    def bytes_per_second(self) -> float:
        return self.bits_per_second / 8

    @property
    def window(self) -> int:
        """Bytes a connection may have in flight: twice the bandwidth-delay product, at least MIN_WINDOW."""
        return max(MIN_WINDOW, int(2 * self.bytes_per_second * self.rtt))

    def floor_seconds(self, byte_count: int) -> float:
        """The least time ``byte_count`` bytes can take through this link."""
        return byte_count / self.bytes_per_second

    def describe(self) -> str:
        return f"{self.rtt * 1000:g} ms round trip, {self.bits_per_second / 1e6:g} Mbit/s"

    def as_dict(self) -> dict[str, float]:
        return {"rtt_ms": self.rtt * 1000, "mbit_per_second": self.bits_per_second / 1e6}


_SPEC = re.compile(r"^\s*(?P<rtt>\d+(?:\.\d+)?)\s*ms\s*,\s*(?P<rate>\d+(?:\.\d+)?)\s*(?P<unit>[kmg])bit\s*$",
                   re.IGNORECASE)
_UNITS = {"k": 1e3, "m": 1e6, "g": 1e9}


def parse_link(text: str) -> LinkSpec:
    """``20ms,100mbit`` → LinkSpec(0.020, 100e6); anything else is a ConfigError saying the form."""
    match = _SPEC.match(text or "")
    if not match or float(match["rate"]) <= 0:
        raise ConfigError(f"--link {text!r} is not a link: give the round-trip time and the bandwidth as "
                          "RTTms,RATE[k|m|g]bit, for instance 20ms,100mbit (config bench.link).")
    return LinkSpec(float(match["rtt"]) / 1000, float(match["rate"]) * _UNITS[match["unit"].lower()])


@dataclass
class _Direction:
    """One direction of the link: when it is next free, and the bytes it carried."""

    spec: LinkSpec
    free_at: float = 0.0
    bytes: int = 0

    def delivery_time(self, size: int, now: float) -> float:
        start = max(now, self.free_at)
        self.free_at = start + size / self.spec.bytes_per_second
        self.bytes += size
        return self.free_at + self.spec.rtt / 2


@dataclass
class LinkRelay:
    """The relay: ``with LinkRelay(spec, host, port) as relay:`` then connect to ``relay.port`` on 127.0.0.1."""

    spec: LinkSpec
    target_host: str
    target_port: int
    port: int = 0
    downstream: _Direction = field(init=False)  # from the server to the client
    upstream: _Direction = field(init=False)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.downstream = _Direction(self.spec)
        self.upstream = _Direction(self.spec)

    def __enter__(self) -> LinkRelay:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def bytes_down(self) -> int:
        return self.downstream.bytes

    @property
    def bytes_up(self) -> int:
        return self.upstream.bytes

    def reset_counters(self) -> None:
        self.downstream.bytes = self.upstream.bytes = 0

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        self._thread = threading.Thread(target=self._run, args=(listener,), name="bench-link", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self, listener: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        server = loop.run_until_complete(asyncio.start_server(self._accept, sock=listener))
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_writer.close()
            return
        for writer in (client_writer, server_writer):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(self._pump(client_reader, server_writer, self.upstream),
                             self._pump(server_reader, client_writer, self.downstream), return_exceptions=True)
        for writer in (client_writer, server_writer):
            with contextlib.suppress(Exception):
                writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: _Direction) -> None:
        """Read, stamp each chunk with its delivery time, deliver in order; stay within the window."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        in_flight = 0
        room = asyncio.Event()
        room.set()

        async def deliver() -> None:
            nonlocal in_flight
            while (item := await queue.get()) is not None:
                due, data = item
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
                in_flight -= len(data)
                if in_flight < direction.spec.window:
                    room.set()
            with contextlib.suppress(Exception):
                writer.write_eof()

        sender = asyncio.ensure_future(deliver())
        try:
            while data := await reader.read(CHUNK):
                in_flight += len(data)
                queue.put_nowait((direction.delivery_time(len(data), loop.time()), data))
                if in_flight >= direction.spec.window:
                    room.clear()
                    await room.wait()
        except (ConnectionError, asyncio.CancelledError):
            sender.cancel()
        finally:
            queue.put_nowait(None)
            await asyncio.gather(sender, return_exceptions=True)


@contextlib.contextmanager
def relay_for(spec: LinkSpec | None, host: str, port: int) -> Iterator[LinkRelay | None]:
    """A running relay to ``host:port`` for ``spec``, or None when there is no link to simulate."""
    if spec is None:
        yield None
        return
    with LinkRelay(spec, host, port) as relay:
        yield relay

