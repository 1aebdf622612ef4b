"""Turning timed runs into the results: medians, ratios to the fastest competitor, targets, machine, table."""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from benchmarks.competitors import Method

OK, FAILED, NOT_AVAILABLE, SKIPPED = "ok", "failed", "not available", "skipped"


@dataclass(frozen=True)
class Target:
    """A ratio to the fastest competitor (or to the method ``relative_to``): ``goal`` must be met; ``limit`` (if
    any) must never be passed; ``max_size`` (if any) bounds the copy's size as a fraction of the source's."""

    goal: float
    limit: float | None = None
    relative_to: str | None = None  # a method key
    relative_label: str = ""  # how the table names it
    max_size: float | None = None

    def describe(self) -> str:
        text = f"≤ {self.goal:g}" + (f" × {self.relative_label or self.relative_to}" if self.relative_to else "")
        text += f", never > {self.limit:g}" if self.limit is not None else ""
        return text + (f", size ≤ {self.max_size:.0%}" if self.max_size is not None else "")


# Ratios to the fastest competitor (issue 18). On the loopback the source and the destination share the
# machine's cores; through a link, round trips and bytes decide.
LOCAL_TARGETS: Mapping[str, Target] = {
    "sync_full": Target(1.0),
    "sync_no_snapshot": Target(0.8),
    "sync_again": Target(0.15),
    "reset": Target(0.2),
    # Issue 19: a 5 % subset in at most 0.15 of the full sync's time, at most twice its proportional share.
    "sync_subset": Target(0.15, relative_to="sync_full", relative_label="full", max_size=0.10),
}
LINK_TARGETS: Mapping[str, Target] = {
    "sync_full": Target(0.5),
    "sync_again": Target(0.05),
    "reset": Target(0.2),
    "sync_subset": Target(0.15, relative_to="sync_full", relative_label="full", max_size=0.10),
}
# Through a link: the median within this many times the method's own link floor (its bytes ÷ bandwidth).
FLOOR_TARGETS: Mapping[str, float] = {"sync_full": 1.25}
TARGETS = LOCAL_TARGETS


def targets_for(link: Mapping[str, float] | None) -> Mapping[str, Target]:
    return LINK_TARGETS if link else LOCAL_TARGETS


@dataclass
class MethodResult:
    """Every run of one method, how it ended and whether its copies were complete."""

    method: Method
    status: str = OK
    reason: str = ""
    seconds: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        return self.status == OK and bool(self.seconds) and not self.problems

    def fail(self, reason: str) -> None:
        self.status, self.reason = FAILED, reason


def fastest_competitor(results: Sequence[MethodResult]) -> MethodResult | None:
    """The competitor with the lowest median among those that ran and produced complete copies."""
    eligible = [r for r in results if r.method.kind == "competitor" and r.verified]
    return min(eligible, key=lambda r: statistics.median(r.seconds), default=None)


def verdict(ratio: float | None, target: Target | None) -> str | None:
    """``pass``, ``miss`` (over the goal, within the limit) or ``fail``; None without a target or ratio."""
    if target is None or ratio is None:
        return None
    if ratio <= target.goal:
        return "pass"
    if target.limit is not None and ratio <= target.limit:
        return "miss"
    return "fail"


def summarize(results: Sequence[MethodResult], machine: Mapping[str, Any], dataset: Mapping[str, Any],
              settings: Mapping[str, Any]) -> dict[str, Any]:
    """The whole result as plain data: what ``--json`` prints and ``.runtime/bench/last.json`` keeps."""
    fastest = fastest_competitor(results)
    base = statistics.median(fastest.seconds) if fastest else None
    link = settings.get("link")
    targets = targets_for(link)
    rows = []
    medians = {result.method.key: statistics.median(result.seconds) for result in results if result.verified}
    for result in results:
        median = statistics.median(result.seconds) if result.verified else None
        ratio = round(median / base, 3) if median is not None and base else None
        target = targets.get(result.method.key)
        link_columns = _link_columns(result, median, link)
        judged = _judged_ratio(ratio, median, target, medians)
        paired = None
        if result.verified and fastest and len(result.seconds) == len(fastest.seconds):
            # Runs of the same round share the machine's load at that moment; their ratio is steadier.
            paired = round(statistics.median(a / b for a, b in zip(result.seconds, fastest.seconds, strict=True)), 3)
        rows.append({
            "paired_ratio": paired,
            "key": result.method.key, "method": result.method.label, "kind": result.method.kind,
            "status": result.status, "reason": result.reason,
            "runs": [round(s, 3) for s in result.seconds],
            "median": round(median, 3) if median is not None else None,
            "min": round(min(result.seconds), 3) if result.verified else None,
            "max": round(max(result.seconds), 3) if result.verified else None,
            "ratio": ratio, "verified": result.verified, "problems": list(result.problems),
            "target": target.describe() if target else None,
            "target_ratio": judged if target and target.relative_to else None,
            "verdict": (_worst(_size_verdict(verdict(judged, target), target, result.details),
                               link_columns.get("floor_verdict")) if result.verified
                        else ("fail" if target and result.status == FAILED else None)),
            "details": result.details,
            **link_columns,
        })
    return {
        "fastest_competitor": fastest.method.label if fastest else None,
        "fastest_competitor_median": round(base, 3) if base else None,
        "methods": rows, "machine": dict(machine), "dataset": dict(dataset), "settings": dict(settings),
        "all_verified": all(row["verified"] or row["status"] in (NOT_AVAILABLE, SKIPPED) for row in rows),
    }


def _link_columns(result: MethodResult, median: float | None, link: Mapping[str, float] | None) -> dict[str, Any]:
    """Through a link: the bytes the method moved across it (median of its runs), its floor and how close it came."""
    moved = result.details.get("link_bytes")
    if not link or not moved:
        return {}
    byte_count = statistics.median(moved)
    floor = byte_count / (link["mbit_per_second"] * 1e6 / 8)
    columns: dict[str, Any] = {"link_mb": round(byte_count / 1e6, 1), "floor_seconds": round(floor, 2)}
    if median is not None and floor > 0:
        columns["floor_ratio"] = round(median / floor, 3)
        goal = FLOOR_TARGETS.get(result.method.key)
        if goal is not None:
            columns["floor_target"] = f"≤ {goal:g} × floor"
            columns["floor_verdict"] = "pass" if median / floor <= goal else "fail"
    return columns


def _worst(*verdicts: str | None) -> str | None:
    order = {"pass": 0, "miss": 1, "fail": 2}
    present = [item for item in verdicts if item is not None]
    return max(present, key=lambda item: order[item]) if present else None


def _judged_ratio(ratio: float | None, median: float | None, target: Target | None,
                  medians: Mapping[str, float]) -> float | None:
    """The ratio the target is about: to the fastest competitor, or to the method it names."""
    if target is None or target.relative_to is None:
        return ratio
    reference = medians.get(target.relative_to)
    return round(median / reference, 3) if median is not None and reference else None


def _size_verdict(result_verdict: str | None, target: Target | None, details: Mapping[str, Any]) -> str | None:
    """A copy larger than the target allows fails it, however fast it was."""
    if result_verdict is None or target is None or target.max_size is None:
        return result_verdict
    size = details.get("size_fraction")
    return result_verdict if isinstance(size, int | float) and size <= target.max_size else "fail"


_VERDICT_MARKS = {"pass": "✓ pass", "miss": "✗ miss", "fail": "✗ FAIL"}


def _seconds(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "—"


def result_cells(summary: Mapping[str, Any]) -> tuple[list[list[str]], list[str]]:
    """The table's rows as text, and the numbered notes their result cells point at (reasons, problems)."""
    rows: list[list[str]] = []
    notes: list[str] = []

    def note(text: str) -> str:
        notes.append(text)
        return f"[{len(notes)}]"

    for row in summary["methods"]:
        if row["verified"]:
            result = _VERDICT_MARKS.get(row["verdict"] or "", "✓ complete")
        elif row["status"] == OK:
            result = "✗ INCOMPLETE " + note(f"{row['method']}: " + "; ".join(row["problems"]))
        else:
            label = "✗ FAILED" if row["status"] == FAILED else row["status"]
            result = label + (" " + note(f"{row['method']}: {row['reason']}") if row["reason"] else "")
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "—"
        if row.get("target_ratio") is not None:
            ratio += f" (full {row['target_ratio']:.2f})"
        subset = row["details"].get("subset")
        if subset:
            result += " " + note(f"{row['method']}: {subset['bytes'] / 1e6:.1f} MB = {subset['fraction']:.1%} of the "
                                 f"source's table bytes ({subset['source_bytes'] / 1e6:.0f} MB), of which "
                                 f"{subset['tables_whole']} small tables copied whole: "
                                 f"{subset['whole_bytes'] / 1e6:.1f} MB; the other tables: "
                                 f"{subset['sampled_fraction']:.1%} of theirs; {subset['rows']['total']:,} rows, "
                                 f"found in {subset['plan_seconds']:.2f} s")
        cells = [row["method"], _seconds(row["median"]), _seconds(row["min"]), _seconds(row["max"]), ratio]
        target = row["target"] or ""
        if summary["settings"].get("link"):
            floor = f"{row['floor_ratio']:.2f}" if row.get("floor_ratio") is not None else "—"
            cells += [f"{row['link_mb']:.0f}" if row.get("link_mb") is not None else "—", _seconds(
                row.get("floor_seconds")), floor]
            target = ", ".join(part for part in (target, row.get("floor_target") or "") if part)
        rows.append([*cells, target, result])
    return rows, notes


HEADERS = ("method", "median s", "min s", "max s", "ratio", "target", "result")
LINK_HEADERS = ("method", "median s", "min s", "max s", "ratio", "link MB", "floor s", "× floor", "target",
                "result")


def headers(summary: Mapping[str, Any]) -> tuple[str, ...]:
    return LINK_HEADERS if summary["settings"].get("link") else HEADERS


def results_table(summary: Mapping[str, Any]) -> Table:
    """The rich table: one row per method, ratios to the fastest competitor, targets with marks."""
    from rich import box

    fastest = summary.get("fastest_competitor") or "none"
    title = f"ratio = median / median of the fastest competitor ({fastest})"
    link = summary["settings"].get("link")
    if link:
        title += (f"; through a link of {link['rtt_ms']:g} ms round trip and {link['mbit_per_second']:g} Mbit/s: "
                  "bytes across it, and the floor (bytes ÷ bandwidth)")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for header in headers(summary):
        table.add_column(header, justify="left" if header in ("method", "target", "result") else "right",
                         no_wrap=header != "result")
    from rich.text import Text

    rows, _ = result_cells(summary)
    for cells in rows:
        table.add_row(*(Text(cell) for cell in cells))
    return table


def markdown_table(summary: Mapping[str, Any]) -> str:
    """The same table in Markdown, with its notes and the machine, for the README."""
    rows, notes = result_cells(summary)
    names = headers(summary)
    lines = ["| " + " | ".join(names) + " |",
             "|" + "|".join("---" if name in ("method", "target", "result") else "---:" for name in names) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |" for cells in rows]
    lines.append("")
    lines += [f"{number}. {text}" for number, text in enumerate(notes, 1)]
    lines += [f"- {line}" for line in machine_lines(summary)]
    return "\n".join(lines) + "\n"


def machine_lines(summary: Mapping[str, Any]) -> list[str]:
    machine, dataset, settings = summary["machine"], summary["dataset"], summary["settings"]
    lines = [
        f"fastest competitor: {summary.get('fastest_competitor') or 'none'}",
        f"machine: {machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('ram_gb')} GB RAM, "
        f"{machine.get('os')}",
        f"PostgreSQL {machine.get('postgres')}, source and dest servers on this machine with default settings "
        f"(fsync on); {machine.get('pg_dump')}; {machine.get('pgcopydb') or 'pgcopydb not installed'}",
        f"dataset: scale {dataset.get('scale')}, {dataset.get('size_mb')} MB, {dataset.get('rows'):,} rows, "
        f"{dataset.get('tables')} tables in {dataset.get('schemas')} schemas "
        f"(built in {dataset.get('build_seconds')} s)",
        f"runs: {settings.get('repeat')} per method, median reported; {settings.get('note')}",
    ]
    link = settings.get("link")
    if link:
        lines.append(f"link: every method read the source through a relay adding {link['rtt_ms']:g} ms per round "
                     f"trip and sharing {link['mbit_per_second']:g} Mbit/s each way among all connections")
    paired = [f"{row['method']} {row['paired_ratio']:.2f}" for row in summary["methods"]
              if row.get("paired_ratio") is not None and row["kind"] == "tether"]
    if paired:
        lines.append("ratios round by round (median of each run over the same round's fastest competitor, steadier "
                     "on a busy machine): " + ", ".join(paired))
    if settings.get("anonymization"):
        lines.append(f"sync-prod: {settings['anonymization']}")
    return lines


def print_summary(summary: dict[str, Any], as_json: bool) -> None:
    """The results table and the machine it ran on, or the same as JSON."""
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()
        return
    from rich.console import Console

    from tether.console import console

    out = console()
    # Off a terminal rich assumes 80 columns and would cut cells; CI logs get the whole table instead.
    table_console = out if out.is_terminal else Console(width=120, highlight=False, force_terminal=False)
    table_console.print(results_table(summary))
    _, notes = result_cells(summary)
    for number, text in enumerate(notes, 1):
        out.print(f"[{number}] {text}", markup=False)
    for line in machine_lines(summary):
        out.print(line, markup=False)
    for row in summary["methods"]:
        phases = (row["details"].get("summary") or {}).get("phases")
        if isinstance(phases, dict) and phases:
            timed = ", ".join(f"{name} {seconds:.2f}" for name, seconds in phases.items())
            out.print(f"{row['method']} phases (last run, s): {timed}", markup=False)
        background = row["details"].get("background_seconds")
        if background and max(background) >= 0.1:
            out.print(f"{row['method']} left background work after exiting (not timed; waited out before the "
                      f"next run): {', '.join(f'{value:.2f}' for value in background)} s", markup=False)
        profile = row["details"].get("profile")
        if profile:
            busiest = "; ".join(f"{entry['server']} {entry['statement']} ({entry['wait']}) {entry['seconds']} s"
                                for entry in profile["top"][:3])
            out.print(f"profile of {row['method']} (last run): CPU busy {profile['cpu_busy']}, CPU seconds "
                      f"{profile.get('cpu_seconds')}, active sessions {profile['avg_active_sessions']}; "
                      f"busiest: {busiest}", markup=False)
    if summary.get("servers"):
        kept = summary["servers"]
        out.print(f"servers kept running; passwords are in {kept['passfile']} (export PGPASSFILE=...):")
        for name in ("source", "dest"):
            out.print(f"  {name}: {kept[name]['url']}  stop: {kept[name]['stop']}")


def cpu_model(cpuinfo: str) -> str:
    """The ``model name`` line of /proc/cpuinfo (first CPU)."""
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "unknown CPU"


def ram_gb(meminfo: str) -> float | None:
    """``MemTotal`` of /proc/meminfo in GB (one decimal)."""
    match = re.search(r"^MemTotal:\s*(\d+)\s*kB", meminfo, re.MULTILINE)
    return round(int(match.group(1)) / 1024 / 1024, 1) if match else None


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_facts(postgres: str, pg_dump: str, pgcopydb: str | None) -> dict[str, Any]:
    return {
        "cpu": cpu_model(_read("/proc/cpuinfo")), "cores": os.cpu_count(), "ram_gb": ram_gb(_read("/proc/meminfo")),
        "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
        "postgres": postgres, "pg_dump": pg_dump, "pgcopydb": pgcopydb,
    }


if __name__ == "__main__":
    # `python -m benchmarks.report [.runtime/bench/last.json]`: the saved result as Markdown for the README.
    from tether.paths import runtime_dir

    source = Path(sys.argv[1]) if len(sys.argv) > 1 else runtime_dir() / "bench" / "last.json"
    sys.stdout.write(markdown_table(json.loads(source.read_text())))
