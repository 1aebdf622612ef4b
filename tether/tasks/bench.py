"""Task for the sync-prod benchmark (``invoke bench``): time tether against pg_dump, pg_restore and pgcopydb."""

from __future__ import annotations

from typing import Any

from invoke import Context, task

from tether.console import console
from tether.errors import ConfigError, TetherError
from tether.tasks.boundary import config_value, domain_errors

# rich and benchmarks.* are imported when the task runs, so every `invoke` command starts faster.

CONFIG_SECTION = "bench"


def configured(c: Context, key: str, value: Any, default: Any) -> Any:
    """A flag's value, else ``c.config.bench.<key>``, else ``default``."""
    return config_value(c, CONFIG_SECTION, key, value, default)


@task(help={
    "repeat": "runs per method; the median is reported (default 3; config bench.repeat)",
    "scale": "dataset size factor: 1 = the issue's 310 tables, 600k rows, 250 MB (default 1; config bench.scale)",
    "methods": "comma-separated subset of: psql, pg_restore, pg_restore_j2, pgcopydb, sync_full, sync_again, "
               "reset, sync_no_snapshot, sync_subset (default: all)",
    "json": "print the results as JSON instead of a table",
    "keep-servers": "leave the two benchmark servers running afterwards (to inspect them)",
    "profile": "sample pg_stat_activity on both servers and the CPU during each run (adds a little load); "
               "the busiest statements go into the JSON under details.profile",
    "link": "read the source through a simulated network link, RTTms,RATE[k|m|g]bit (e.g. 20ms,100mbit): "
            "half the round trip each way and one bandwidth cap shared by all connections (config bench.link)",
})
@domain_errors
def bench(c: Context, repeat: int | None = None, scale: float | None = None, methods: str | None = None,
          json: bool = False, keep_servers: bool = False, profile: bool = False, link: str | None = None) -> None:
    """Benchmark sync-prod, re-sync and db.reset against pg_dump|psql, pg_restore and pgcopydb (takes minutes)."""
    from rich.console import Console

    from benchmarks.link import parse_link
    from benchmarks.report import print_summary
    from benchmarks.run import BenchOptions, last_result_path, parse_methods, run_benchmark

    try:
        link_text = configured(c, "link", link, None)
        options = BenchOptions(repeat=int(configured(c, "repeat", repeat, 3)),
                               scale=float(configured(c, "scale", scale, 1.0)),
                               methods=parse_methods(methods), keep_servers=keep_servers, profile=profile,
                               link=parse_link(str(link_text)) if link_text else None)
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
