"""Where the project's files live: the repository root, runtime state, dumps, stacks and sql."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT_ENV = "TETHER_PROJECT_ROOT"


def project_root() -> Path:
    """The repository root (override with TETHER_PROJECT_ROOT, which tests use to isolate state)."""
    override = os.environ.get(PROJECT_ROOT_ENV)
    if override:
        return Path(override).resolve()
    return Path(__file__).resolve().parent.parent


def runtime_dir() -> Path:
    """Machine-local state (pid files, logs, native stack state); git-ignored, created on demand."""
    path = Path(os.environ.get("TETHER_RUNTIME_DIR", project_root() / ".runtime"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def dumps_dir() -> Path:
    path = Path(os.environ.get("TETHER_DUMPS_DIR", project_root() / "dumps"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def stacks_dir() -> Path:
    return project_root() / "stacks"


def sql_dir() -> Path:
    return Path(os.environ.get("TETHER_SQL_DIR", project_root() / "sql"))
