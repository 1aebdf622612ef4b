"""The loop the Python test apps share: quick queries in two threads, one long query at a time in a third.

Each answer is one JSON line on stdout: the kind, when the query started and ended, the server's port (it
tells the two servers apart) or the error. The app stops when the file named by argv[1] appears, or after
MAX_SECONDS whatever happens (a test's loop is bounded).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

MAX_SECONDS = 120
QUICK_PAUSE = 0.01
LONG_QUERY = "SELECT current_setting('port') FROM pg_sleep(0.6)"

Query = Callable[[str], str]  # runs one SQL statement returning a port, returns the port
_print_lock = threading.Lock()


def emit(record: dict[str, object]) -> None:
    with _print_lock:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()


def loop(kind: str, query: Query, sql: str, stop: threading.Event, pause: float) -> None:
    while not stop.is_set():
        started = time.time()
        try:
            port, error = query(sql), None
        except Exception as failure:  # every failure is a result the test asserts on
            port, error = None, f"{type(failure).__name__}: {failure}"
        emit({"kind": kind, "start": started, "end": time.time(), "port": port, "error": error})
        time.sleep(pause)


def run(quick: Query, long: Query) -> None:
    stop_file = Path(sys.argv[1])
    stop = threading.Event()
    threads = [threading.Thread(target=loop, args=("quick", quick, "SELECT current_setting('port')", stop,
                                                   QUICK_PAUSE)) for _ in range(2)]
    threads.append(threading.Thread(target=loop, args=(
        "long", long, LONG_QUERY, stop, 0)))
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + MAX_SECONDS
    while not stop_file.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    for thread in threads:
        thread.join()
