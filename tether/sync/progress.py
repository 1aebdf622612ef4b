"""What the person watching sees on stderr: phases, and a bar per table being copied (rows, bytes, speed).

Off a terminal there are no bars: one line per phase, so CI logs stay short and stdout stays free for --json.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

BIG_TABLE_LINE = 64 * 1024 * 1024  # off a terminal, tables at least this big get a line of their own
RATE_LINE_BYTES = 128 * 1024 * 1024  # off a terminal, a line with the transfer rate every this many bytes
SUBSET_TABLE_LINE = 10_000  # and so do a subset's tables with at least this many rows


class SyncProgress:
    """Thread-safe progress reporting for the sync; ``quiet`` says nothing at all."""

    def __init__(self, *, quiet: bool = False, bars: bool | None = None) -> None:
        self.quiet = quiet
        self.bars = sys.stderr.isatty() if bars is None else bars
        self._console: Any = None
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._overall: TaskID | None = None
        self._tasks: dict[str, TaskID] = {}
        self._received: TaskID | None = None
        self._started = time.perf_counter()
        self._bytes = 0
        self._bytes_since = 0.0
        self._next_rate_line = RATE_LINE_BYTES
        self.planned_rows: dict[str, int] = {}  # a subset's rows per table: shown as "copied / planned"

    @property
    def console(self) -> Any:
        """The rich console on stderr (only built on a terminal: off one, plain lines are enough)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)
        return self._console

    def phase(self, text: str) -> None:
        if self.quiet:
            return
        elapsed = time.perf_counter() - self._started
        if self.bars:
            from rich.markup import escape

            self.console.print(f"[dim]{elapsed:6.1f}s[/dim] {escape(text)}")
        else:
            sys.stderr.write(f"{elapsed:6.1f}s {text}\n")
            sys.stderr.flush()

    def start_tables(self, count: int) -> None:
        if self.quiet or not self.bars:
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[rows]}"), DownloadColumn(), TransferSpeedColumn(),
                                  TimeElapsedColumn(), console=self.console, transient=True)
        self._progress.start()
        self._overall = self._progress.add_task("tables", total=count, rows="")
        self._received = self._progress.add_task("from the source", total=None, rows="")

    def advance_table(self, name: str, size: int, rows: int) -> None:
        with self._lock:
            if not self._bytes:
                self._bytes_since = time.perf_counter()
            self._bytes += size
            total = self._bytes
        progress = self._progress
        if progress is None:
            if not self.quiet and total >= self._next_rate_line:
                self._next_rate_line += RATE_LINE_BYTES
                elapsed = max(time.perf_counter() - self._bytes_since, 1e-6)
                self.phase(f"received {total / 1e6:,.0f} MB from the source ({total * 8 / elapsed / 1e6:,.0f} Mbit/s)")
            return
        if self._received is not None:
            progress.update(self._received, advance=size)
        with self._lock:
            task = self._tasks.get(name)
            if task is None:
                from rich.markup import escape

                task = self._tasks[name] = progress.add_task(f"  {escape(name)}", total=None, rows="")
        planned = self.planned_rows.get(name)
        progress.update(task, advance=size, rows=f"{rows:,} rows" if planned is None else f"{rows:,}/{planned:,} rows")

    def finish_table(self, name: str, rows: int, size: int) -> None:
        progress = self._progress
        if progress is None:
            if not self.quiet and (size >= BIG_TABLE_LINE or self.planned_rows.get(name, 0) >= SUBSET_TABLE_LINE):
                self.phase(f"copied {name}: {rows:,} rows, {size / 1e6:,.1f} MB")
            return
        with self._lock:
            task = self._tasks.pop(name, None)
        if task is not None:
            progress.remove_task(task)
        if self._overall is not None:
            progress.update(self._overall, advance=1)

    def stop_tables(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> SyncProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_tables()
