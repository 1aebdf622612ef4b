"""Running many small queries over a few sessions at once: one session per worker, a shared queue of jobs."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")


def run_parallel(jobs: Iterable[tuple[str, Any]], open_session: Callable[[], psycopg.Connection],
                 run: Callable[[psycopg.Connection, Any], T], workers: int) -> dict[str, T]:
    """Run each named job on one of ``workers`` sessions; the first error is raised once all have stopped."""
    queue = deque(jobs)
    results: dict[str, T] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            with open_session() as conn:
                while True:
                    with lock:
                        if errors or not queue:
                            return
                        name, job = queue.popleft()
                    value = run(conn, job)
                    with lock:
                        results[name] = value
        except BaseException as error:
            with lock:
                errors.append(error)

    threads = [threading.Thread(target=worker, daemon=True, name=f"sync-query-{number}")
               for number in range(max(1, min(workers, len(queue))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)
    if errors:
        raise errors[0]
    return results
