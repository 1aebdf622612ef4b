"""One resource (a pool, an engine) for the active target's URL, replaced when the target moves.

The adapters in ``pool.py`` and ``engine.py`` differ only in how they create and retire theirs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Resource = TypeVar("Resource")


class Follower(Generic[Resource]):
    """``current()`` checks the URL (one stat) and, when it changed, creates the new resource and retires the old."""

    def __init__(self, url: Callable[[], str], create: Callable[[str], Resource],
                 retire: Callable[[Resource], None]) -> None:
        self._url = url
        self._create = create
        self._retire = retire
        self._current: tuple[str, Resource] | None = None  # replaced as a whole: readers need no lock
        self._lock = threading.Lock()

    def current(self) -> Resource:
        url = self._url()
        current = self._current
        if current is not None and current[0] == url:
            return current[1]
        with self._lock:  # one creation per switch, however many threads notice it at once
            current = self._current
            if current is not None and current[0] == url:
                return current[1]
            new = self._create(url)
            self._current = (url, new)
        if current is not None:
            self._retire(current[1])
        return new

    def is_current(self, resource: Resource) -> bool:
        """False once the target moved away from ``resource`` (it is being retired)."""
        current = self._current
        return current is not None and current[1] is resource

    def close(self) -> None:
        """Retire the current resource; the next ``current()`` creates a new one."""
        with self._lock:
            current, self._current = self._current, None
        if current is not None:
            self._retire(current[1])
