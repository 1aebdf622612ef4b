"""Fixtures for the app-side runtime tests: the shared cases, the real node, npm packages in a temporary dir."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_MODULE = REPO_ROOT / "clients" / "node" / "tether-target.mjs"
NODE_TYPES = REPO_ROOT / "clients" / "node" / "tether-target.d.mts"
CASES = json.loads((Path(__file__).parent / "cases.json").read_text(encoding="utf-8"))
LOCAL_URL = "postgresql://app:l%40cal@127.0.0.1:5435/app_dev"
PRODUCTION_URL = "postgresql://app:pr%2Fd@127.0.0.1:5434/app"


def env_text(local: str = LOCAL_URL, production: str = PRODUCTION_URL) -> str:
    return ("# >>> tether managed block >>>\n"
            f"DATABASE_URL='{local}'\nDATABASE_URL_LOCAL='{local}'\nDATABASE_URL_PRODUCTION='{production}'\n"
            "# <<< tether managed block <<<\n")


def write_project(root: Path, state: str | None, env: str | None = None) -> Path:
    """A project directory with ``.env`` and, unless ``state`` is None, ``.runtime/db-target.json``."""
    (root / ".runtime").mkdir(parents=True, exist_ok=True)
    (root / ".env").write_text(env_text() if env is None else env, encoding="utf-8")
    if state is not None:
        (root / ".runtime" / "db-target.json").write_text(state, encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def node() -> str:
    program = shutil.which("node")
    if program is None:
        pytest.fail("`node` is not installed: install Debian's nodejs (apt-get install nodejs npm); the Node "
                    "client is tested with the real runtime.")
    return program


def npm_install(directory: Path, *packages: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("`npm` is not installed: install Debian's npm (apt-get install npm).")
    (directory / "package.json").write_text(json.dumps({"name": "tether-runtime-tests", "private": True,
                                                         "type": "module"}))
    result = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", *packages],
                            cwd=directory, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        pytest.fail(f"npm install {' '.join(packages)} failed ({result.returncode}): {result.stderr[-2000:]}")


@contextmanager
def npm_directory(*packages: str) -> Iterator[Path]:
    """A temporary directory with ``packages`` installed from npm, removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="tether-npm-"))
    try:
        npm_install(directory, *packages)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def node_app_dir() -> Iterator[Path]:
    """A directory with node-postgres (``pg``) installed from npm, for the Node test apps."""
    with npm_directory("pg@8") as directory:
        yield directory


def run_node(node: str, script: Path | str, *args: str, cwd: Path | None = None,
             env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    """Run a node script that prints one JSON document; return it (the script's stderr on failure)."""
    result = subprocess.run([node, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    assert result.returncode == 0, f"node {script} failed ({result.returncode}): {result.stderr}"
    return json.loads(result.stdout)


# The env tests' project (dev stack outputs and prod stack config pointing at the real test servers).
from tests.env.conftest import EnvProject, env_project, stack_databases  # noqa: E402, F401
