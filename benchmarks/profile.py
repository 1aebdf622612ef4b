"""Where a timed run spends its time: pg_stat_activity on both servers and the machine's CPU, sampled."""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg

from tether.conninfo import DatabaseAddress

INTERVAL = 0.2
_ACTIVITY_SQL = (
    "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), left(query, 200) FROM pg_stat_activity "
    "WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
)
_NUMBERS = re.compile(r"\b\d+\b")
_SPACES = re.compile(r"\s+")


def activity_key(query: str) -> str:
    """A statement reduced to its kind and object (``COPY app.orders TO STDOUT``), numbers and literals out."""
    text = _SPACES.sub(" ", query).strip()
    text = re.sub(r"'[^']*'", "'…'", text)
    text = _NUMBERS.sub("N", text)
    return text[:70]


def cpu_busy_fraction(before: Sequence[int], after: Sequence[int]) -> float | None:
    """Share of CPU time (all cores) not idle or iowait between two ``cpu`` lines of /proc/stat."""
    total = sum(after) - sum(before)
    if total <= 0 or len(before) < 5:
        return None
    idle = (after[3] + after[4]) - (before[3] + before[4])
    return round(1 - idle / total, 3)


def read_cpu_times(stat: str | None = None) -> list[int]:
    if stat is None:
        try:
            stat = Path("/proc/stat").read_text()
        except OSError:
            return []
    for line in stat.splitlines():
        if line.startswith("cpu "):
            return [int(value) for value in line.split()[1:]]
    return []


CLIENT_PROGRAMS = ("pg_dump", "pg_restore", "psql", "pgcopydb")


@dataclass(frozen=True)
class ProcessTicks:
    ppid: int
    name: str
    ticks: int  # user + system CPU, in clock ticks
    command: str = ""  # read for Python processes only


def parse_proc_stat(text: str) -> ProcessTicks | None:
    """``/proc/PID/stat`` → parent, command name and CPU ticks (the name may hold spaces and parentheses)."""
    open_paren, close_paren = text.find("("), text.rfind(")")
    if open_paren < 0 or close_paren < 0:
        return None
    fields = text[close_paren + 2:].split()
    try:
        return ProcessTicks(int(fields[1]), text[open_paren + 1:close_paren], int(fields[11]) + int(fields[12]))
    except (IndexError, ValueError):
        return None


def read_processes() -> dict[int, ProcessTicks]:
    found: dict[int, ProcessTicks] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parsed = parse_proc_stat((entry / "stat").read_text())
        except OSError:
            continue  # it exited meanwhile
        if parsed and parsed.name.startswith("python"):
            # Only the command line tells tether's own Python (invoke, its workers) from other load.
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                command = ""
            parsed = replace(parsed, command=command)
        if parsed:
            found[int(entry.name)] = parsed
    return found


def process_category(pid: int, process: ProcessTicks, postmasters: Mapping[str, int]) -> str:
    """Whose CPU this is: a server (postmaster and its children), a client program, tether's Python, or other."""
    for server, postmaster in postmasters.items():
        if pid == postmaster or process.ppid == postmaster:
            return f"{server} server"
    if process.name in CLIENT_PROGRAMS:
        return process.name
    if process.name.startswith("python") and ("invoke" in process.command or "tether" in process.command):
        return "python (tether)"
    return "other"


def cpu_by_category(before: Mapping[int, ProcessTicks], seen: Mapping[int, ProcessTicks],
                    postmasters: Mapping[str, int], ticks_per_second: int) -> dict[str, float]:
    """CPU seconds per category between ``before`` and the last sample of each process seen since."""
    totals: Counter[str] = Counter()
    for pid, process in seen.items():
        start = before.get(pid)
        # Names change (exec, kernel workers); fewer ticks than before can only be a reused pid.
        baseline = start.ticks if start and start.ticks <= process.ticks else 0
        totals[process_category(pid, process, postmasters)] += max(0, process.ticks - baseline)
    return {name: round(ticks / ticks_per_second, 2) for name, ticks in totals.most_common()}


@dataclass
class ActivitySampler:
    """Samples active statements on each server every ``INTERVAL`` seconds in a background thread."""

    servers: Mapping[str, DatabaseAddress]
    postmasters: Mapping[str, int] = field(default_factory=dict)  # server name -> postmaster pid
    samples: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (server, wait, statement)
    active: Counter[str] = field(default_factory=Counter)  # server -> active backends summed over samples
    rounds: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _cpu_before: list[int] = field(default_factory=list)
    _started: float = 0.0
    cpu_busy: float | None = None
    seconds: float = 0.0
    _processes_before: dict[int, ProcessTicks] = field(default_factory=dict)
    _processes_seen: dict[int, ProcessTicks] = field(default_factory=dict)

    def __enter__(self) -> ActivitySampler:
        self._processes_before = read_processes()
        self._cpu_before = read_cpu_times()
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="bench-activity", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self.seconds = time.perf_counter() - self._started
        self.cpu_busy = cpu_busy_fraction(self._cpu_before, read_cpu_times())
        self._processes_seen.update(read_processes())

    def _run(self) -> None:
        connections: dict[str, psycopg.Connection[Any]] = {}
        try:
            for name, address in self.servers.items():
                connections[name] = psycopg.connect(address.conninfo(application_name="bench-sampler"),
                                                    autocommit=True)
            while not self._stop.wait(INTERVAL):
                self.rounds += 1
                # Short-lived processes (a pg_dump, a sync worker) count up to their last sample.
                self._processes_seen.update(read_processes())
                for name, conn in connections.items():
                    rows = conn.execute(_ACTIVITY_SQL).fetchall()
                    self.active[name] += len(rows)
                    for wait, query in rows:
                        self.samples[(name, str(wait), activity_key(str(query or "")))] += 1
        except psycopg.Error:
            return  # a sampler must never fail the run it watches
        finally:
            for conn in connections.values():
                conn.close()

    def report(self, top: int = 12) -> dict[str, Any]:
        """Approximate seconds per (server, wait, statement), busiest first, and average active sessions."""
        scale = self.seconds / self.rounds if self.rounds else 0.0
        waits: Counter[tuple[str, str]] = Counter()
        for (server, wait, _), count in self.samples.items():
            waits[(server, wait)] += count
        return {
            "seconds": round(self.seconds, 2),
            "cpu_busy": self.cpu_busy,
            "cpu_seconds": cpu_by_category(self._processes_before, self._processes_seen, self.postmasters,
                                           os.sysconf("SC_CLK_TCK")),
            "avg_active_sessions": {name: round(count / self.rounds, 2) if self.rounds else 0.0
                                    for name, count in self.active.items()},
            "waits": [{"server": server, "wait": wait, "seconds": round(count * scale, 2)}
                      for (server, wait), count in waits.most_common(8)],
            "top": [{"server": server, "wait": wait, "statement": statement, "seconds": round(count * scale, 2)}
                    for (server, wait, statement), count in self.samples.most_common(top)],
        }
