"""Task for the sync-prod benchmark (``invoke bench``): time tether against pg_dump, pg_restore and pgcopydb."""

from __future__ import annotations

from typing import Any

from invoke import Context, task

from tether.console import console
from tether.errors import ConfigError, TetherError
from tether.tasks.boundary import config_value, domain_errors, print_json

# rich and benchmarks.* are imported when the task runs, so every `invoke` command starts faster.

CONFIG_SECTION = "bench"


def configured(c: Context, key: str, value: Any, default: Any) -> Any:
    """A flag's value, else ``c.config.bench.<key>``, else ``default``."""
    return config_value(c, CONFIG_SECTION, key, value, default)


def print_summary(summary: dict[str, Any], as_json: bool) -> None:
    """The results table and the machine it ran on, or the same as JSON."""
    if as_json:
        print_json(summary)
        return
    from rich.console import Console

    from benchmarks.report import machine_lines, result_cells, results_table

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


@task(help={
    "repeat": "runs per method; the median is reported (default 3; config bench.repeat)",
    "scale": "dataset size factor: 1 = the issue's 310 tables, 600k rows, 250 MB (default 1; config bench.scale)",
    "methods": "comma-separated subset of: psql, pg_restore, pg_restore_j2, pgcopydb, sync_full, sync_again, "
               "reset, sync_no_snapshot, sync_subset (default: all)",
    "json": "print the results as JSON instead of a table",
    "keep-servers": "leave the two benchmark servers running afterwards (to inspect them)",
    "profile": "sample pg_stat_activity on both servers and the CPU during each run (adds a little load); "
               "the busiest statements go into the JSON under details.profile",
})
@domain_errors
def bench(c: Context, repeat: int | None = None, scale: float | None = None, methods: str | None = None,
          json: bool = False, keep_servers: bool = False, profile: bool = False) -> None:
    """Benchmark sync-prod, re-sync and db.reset against pg_dump|psql, pg_restore and pgcopydb (takes minutes)."""
    from rich.console import Console

    from benchmarks.run import BenchOptions, last_result_path, parse_methods, run_benchmark

    try:
        options = BenchOptions(repeat=int(configured(c, "repeat", repeat, 3)),
                               scale=float(configured(c, "scale", scale, 1.0)),
                               methods=parse_methods(methods), keep_servers=keep_servers, profile=profile)
    except ValueError as error:
        raise ConfigError(f"--repeat takes a whole number and --scale a number ({error}).") from None
    progress_console = Console(stderr=True, highlight=False)
    summary = run_benchmark(options, progress=lambda message: progress_console.print(f"· {message}"))
    print_summary(summary, as_json=json)
    if not json:
        console().print(f"saved to {last_result_path()}")
    failed = [row["method"] for row in summary["methods"] if row["status"] == "failed" or
              (row["status"] == "ok" and not row["verified"])]
    if failed:
        raise TetherError(f"The benchmark ran, but {', '.join(failed)} failed or made an incomplete copy; "
                          "see the table above and the reasons in .runtime/bench/last.json.")
