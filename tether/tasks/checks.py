"""Tasks for the repository itself: tests, lint, type check."""

from __future__ import annotations

import subprocess
import sys

from invoke import Context, task
from invoke.exceptions import Exit


def _run(argv: list[str]) -> int:
    return subprocess.run(argv, check=False).returncode


@task(help={
    "k": "only tests matching this expression (pytest -k)",
    "path": "a test file or folder (default: tests/)",
    "workers": "pytest-xdist workers: `auto` (one more than cores, the default), a number, or 0 for one process",
    "fast": "leave out the tests marked slow",
})
def test(c: Context, k: str = "", path: str = "tests", workers: str = "auto", fast: bool = False) -> None:
    """Run the test suite against real local PostgreSQL and Redis servers, on every core."""
    code = _run(pytest_argv(sys.executable, path=path, k=k, workers=workers, fast=fast))
    if code:
        raise Exit(code=code)


def pytest_argv(python: str, *, path: str = "tests", k: str = "", workers: str = "auto",
                fast: bool = False) -> list[str]:
    """pytest's command line. Each xdist worker starts its own servers on its own ports; tests marked `serial`
    share one worker (`--dist loadgroup`)."""
    argv = [python, "-m", "pytest", path, "-q"]
    if workers not in ("0", ""):
        argv += ["-n", workers, "--dist", "loadgroup"]
    if k:
        argv += ["-k", k]
    if fast:
        argv += ["-m", "not slow"]
    return argv


@task
def lint(c: Context) -> None:
    """Check style with ruff and types with mypy."""
    # Both always run, so one report shows every problem.
    codes = [_run([sys.executable, "-m", "ruff", "check", "."]), _run([sys.executable, "-m", "mypy"])]
    if any(codes):
        raise Exit(code=max(codes))
