"""Task for mutation testing (``invoke mutants``): how many planted bugs the tests catch in the guard modules."""

from __future__ import annotations

import os
import sys
import time

from invoke import Context, task

from tether.console import console
from tether.errors import ConfigError, TetherError
from tether.tasks.boundary import domain_errors, print_json

# tether.mutation is imported when the task runs, so every `invoke` command starts faster.


@task(help={
    "module": "only this module, as listed by `invoke mutants --list` (e.g. tether/swap.py; default: all of them)",
    "jobs": "mutants tested at once (default: one per core)",
    "list": "list the modules, the functions and the tests that judge them, and stop",
    "json": "print the results as JSON on stdout",
})
@domain_errors
def mutants(c: Context, module: str | None = None, jobs: int = 0, list: bool = False, json: bool = False) -> None:
    """Mutation-test the modules that guard users with mutmut: kill rate per module and every survivor (slow)."""
    from tether import mutation
    from tether.paths import project_root, runtime_dir

    targets = mutation.select_targets(module)
    if list:
        for target in targets:
            console().print(f"{target.label}\n  tests: {' '.join(target.tests)}\n  why: {target.why}", markup=False)
        return
    if jobs < 0:
        raise ConfigError(f"--jobs must be at least 1, not {jobs}.")
    work_root = runtime_dir() / "mutants"
    started = time.monotonic()
    last_line = {"at": 0.0}

    def progress(path: str, done: int, total: int, killed: int) -> None:
        now = time.monotonic()
        if done == total or now - last_line["at"] >= 15:
            last_line["at"] = now
            print(f"· {path}: {done}/{total} mutants tested, {killed} killed ({now - started:.0f} s)",
                  file=sys.stderr, flush=True)

    def done(result: mutation.ModuleResult) -> None:
        print(f"· {result.path}: {result.kill_rate:.1f} % of {result.judged} mutants killed in {result.seconds:.0f} s",
              file=sys.stderr, flush=True)

    for target in targets:
        print(f"· mutating {target.label} with {' '.join(target.tests)}", file=sys.stderr, flush=True)
    results, _ = mutation.run(project_root(), targets, work_root, jobs=jobs or os.cpu_count() or 2,
                              on_progress=progress, on_done=done)
    if json:
        print_json({"modules": [result.as_dict() for result in results], "report": str(work_root / "report.json")})
    else:
        for line in mutation.report_lines(results):
            console().print(line, markup=False, highlight=False)
        console().print(f"\nReport: {work_root / 'report.json'} (every module's last run)", markup=False)
    below = [result.path for result in results if result.kill_rate < mutation.TARGET_RATE]
    if below:
        raise TetherError(f"{', '.join(below)} kill fewer than {mutation.TARGET_RATE:.0f} % of their mutants: write "
                          "tests that fail under the surviving mutants listed above (or, for a mutant that changes "
                          "nothing a user can see, add it to EQUIVALENT in tether/mutation.py with the reason).")
