"""Tasks for the repository itself: tests, lint, type check."""

from __future__ import annotations

import subprocess
import sys

from invoke import Context, task
from invoke.exceptions import Exit


def _run(argv: list[str]) -> int:
    return subprocess.run(argv, check=False).returncode


@task(help={"k": "only tests matching this expression (pytest -k)", "path": "a test file or folder (default: tests/)"})
def test(c: Context, k: str = "", path: str = "tests") -> None:
    """Run the test suite against real local PostgreSQL and Redis servers."""
    argv = [sys.executable, "-m", "pytest", path, "-q"]
    if k:
        argv += ["-k", k]
    code = _run(argv)
    if code:
        raise Exit(code=code)


@task
def lint(c: Context) -> None:
    """Check style with ruff and types with mypy."""
    # Both always run, so one report shows every problem.
    codes = [_run([sys.executable, "-m", "ruff", "check", "."]), _run([sys.executable, "-m", "mypy"])]
    if any(codes):
        raise Exit(code=max(codes))
