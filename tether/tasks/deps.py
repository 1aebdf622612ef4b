"""The `deps.*` tasks: updating the locked dependencies on purpose."""

from __future__ import annotations

import os
import sys

from invoke import Context, task
from invoke.exceptions import Exit

from tether.tasks.boundary import domain_errors

# tether.deps (and tether.ci) are imported when the task runs, so every `invoke` command starts faster.


@task(iterable=["package"], help={
    "package": "upgrade only this package (repeatable); without it, every package moves to its newest allowed version",
    "workers": "pytest-xdist workers for the fast tests: `auto` (one more than cores, the default), a number, or 0",
})
@domain_errors
def upgrade(c: Context, package: list[str] | None = None, workers: str = "auto") -> None:
    """Refresh uv.lock, install it, run the Pulumi mock tests and the fast tests."""
    from tether import deps
    from tether.ci import run_plan
    from tether.console import console
    from tether.paths import project_root

    out = console()
    refresh = deps.refresh_lock(project_root(), package or [])
    for warning in refresh.warnings:
        out.print(f"[yellow]warning:[/] {warning}")
    if not refresh.changes:
        out.print("uv.lock is already up to date: nothing to upgrade.")
        return
    out.print(f"uv.lock: {len(refresh.changes)} change(s)")
    for name, old, new in refresh.changes:
        out.print(f"  {name:<32} {old or '(new)':>14} -> {new or '(removed)'}")
    os.environ.update(deps.UV_ENV)  # for `uv sync` below
    results = run_plan(deps.plan_upgrade(uv=deps.uv_program(), python=sys.executable, workers=workers),
                       fail_fast=True)
    for result in results:
        extra = f" ({result.detail})" if result.detail else ""
        out.print(f"{result.status:>8}  {result.name:<18} {result.seconds:>7.2f}s{extra}")
    if any(result.status == "failed" for result in results):
        raise Exit("The tests fail with the new lock. Fix the code for the new versions, or go back with "
                   "`git checkout uv.lock && ./dev --bootstrap`.", code=1)
    out.print("All green: review the changes above and commit uv.lock.")
