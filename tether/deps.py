"""Updating dependencies on purpose: refresh uv.lock, install it, and run the tests that catch a bad upgrade.

`plan_upgrade` builds the steps (pure); `refresh_lock` runs uv and says which versions moved; the task runs the
rest with `tether.ci.run_plan`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tether.ci import Step
from tether.errors import TetherError
from tether.lockfile import LOCK_FILE, canonical_name, load_lock, version_changes

# The Pulumi programs under mocks (stacks and policy rules): a pulumi or pulumi-gcp upgrade breaks these first.
PULUMI_MOCK_TESTS = ("tests/pulumi", "tests/test_policy.py")


# uv never downloads a Python of its own here, and trusts the system's certificates as pip does (./dev sets the same).
UV_ENV = {"UV_PYTHON_DOWNLOADS": "never", "UV_SYSTEM_CERTS": os.environ.get("UV_SYSTEM_CERTS", "1")}


@dataclass(frozen=True)
class LockRefresh:
    changes: list[tuple[str, str | None, str | None]]  # (package, old version, new version)
    warnings: list[str]


def uv_program() -> str:
    """The lock's uv, installed beside this interpreter; else one on PATH."""
    beside = Path(sys.executable).parent / "uv"
    if beside.exists():
        return str(beside)
    found = shutil.which("uv")
    if found is None:
        raise TetherError("uv is not installed in this environment: run `./dev --bootstrap`, which installs the "
                          "locked uv into .venv.")
    return found


def lock_argv(uv: str, packages: Sequence[str]) -> list[str]:
    """`uv lock --upgrade` for everything, or `--upgrade-package` for each name given."""
    if not packages:
        return [uv, "lock", "--upgrade"]
    argv = [uv, "lock"]
    for package in packages:
        argv += ["--upgrade-package", package]
    return argv


def plan_upgrade(*, uv: str, python: str, workers: str = "auto") -> list[Step]:
    """After the lock moved: install it exactly, then the Pulumi mock tests, then the fast tests."""
    pytest = (python, "-m", "pytest", "-q", "-p", "no:cacheprovider")
    parallel = () if workers == "0" else ("-n", workers, "--dist", "loadgroup")
    deselect_mocks = tuple(arg for path in PULUMI_MOCK_TESTS for arg in ("--ignore", path))
    return [
        Step("install", (uv, "sync", "--frozen", "--extra", "dev")),
        Step("pulumi mock tests", (*pytest, *PULUMI_MOCK_TESTS)),
        Step("fast tests", (*pytest, *parallel, "-m", "not slow", "tests", *deselect_mocks)),
    ]


def locked_versions(lock_path: Path) -> dict[str, str]:
    """Every package of the lock, all platforms, as {name: version} (several versions joined by `, `)."""
    versions: dict[str, list[str]] = {}
    for package in load_lock(lock_path).packages:
        if not package.is_project:
            versions.setdefault(canonical_name(package.name), []).append(package.version)
    return {name: ", ".join(sorted(found)) for name, found in versions.items()}


def build_backend_warning(root: Path, uv_version: str | None) -> str | None:
    """pyproject.toml's uv_build range should hold the locked uv, or uv builds the project the slow way."""
    if uv_version is None:
        return None
    from packaging.requirements import Requirement
    from packaging.version import Version

    requires = tomllib.loads((root / "pyproject.toml").read_text()).get("build-system", {}).get("requires", [])
    for text in requires:
        requirement = Requirement(text)
        if canonical_name(requirement.name) == "uv-build" and Version(uv_version) not in requirement.specifier:
            return (f"uv is now {uv_version}, outside pyproject.toml's build requirement `{text}`: set it to "
                    f"the new minor version so uv keeps building the editable install itself.")
    return None


def refresh_lock(root: Path, packages: Sequence[str], *, uv: str | None = None,
                 env: dict[str, str] | None = None) -> LockRefresh:
    """Run `uv lock --upgrade[-package]` in ``root`` and return which versions moved."""
    lock_path = root / LOCK_FILE
    before = locked_versions(lock_path)
    argv = lock_argv(uv or uv_program(), packages)
    completed = subprocess.run(argv, cwd=root, capture_output=True, text=True, check=False,
                               env={**os.environ, **UV_ENV, **(env or {})})
    if completed.returncode != 0:
        tail = "\n".join(completed.stderr.strip().splitlines()[-8:])
        raise TetherError(f"`{' '.join(argv[1:])}` failed (exit {completed.returncode}); uv.lock is unchanged. "
                          f"uv said:\n{tail}")
    after = locked_versions(lock_path)
    unknown = [name for name in packages if canonical_name(name) not in after]
    if unknown:
        raise TetherError(f"{', '.join(unknown)}: no such package in uv.lock. Name a dependency of the project "
                          f"(`invoke deps.upgrade --package redis`), or give no --package to upgrade everything.")
    warning = build_backend_warning(root, after.get("uv"))
    return LockRefresh(version_changes(before, after), [warning] if warning else [])
