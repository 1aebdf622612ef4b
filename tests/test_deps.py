"""`invoke deps.upgrade`: the lock refreshed by the real uv, what moved reported, then install and tests planned."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from tether.deps import build_backend_warning, lock_argv, locked_versions, plan_upgrade, refresh_lock
from tether.errors import TetherError

REPO = Path(__file__).resolve().parents[1]
# Refreshing the lock resolves against PyPI's index (the uv cache holds wheels, not always the index pages).
ONLINE: dict[str, str] = {}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def set_locked_version(project: Path, package: str, new: str) -> str:
    """Rewrite one package's entry in the copy's lock to another version (as if locked a while ago)."""
    lock = project / "uv.lock"
    text = lock.read_text()
    start = text.index(f'[[package]]\nname = "{package}"\n')
    end = text.index("[[package]]", start + 1)
    old = text[start:end].split('version = "', 1)[1].split('"', 1)[0]
    lock.write_text(text[:start] + text[start:end].replace(old, new) + text[end:])
    return old


@pytest.mark.parametrize(("packages", "expected"), [
    ([], ["uv", "lock", "--upgrade"]),
    (["redis"], ["uv", "lock", "--upgrade-package", "redis"]),
    (["redis", "pulumi-gcp"], ["uv", "lock", "--upgrade-package", "redis", "--upgrade-package", "pulumi-gcp"]),
], ids=["everything", "one", "two"])
def test_lock_argv(packages: list[str], expected: list[str]) -> None:
    assert lock_argv("uv", packages) == expected


@pytest.mark.parametrize(("workers", "parallel"), [("auto", ["-n", "auto", "--dist", "loadgroup"]), ("0", [])],
                         ids=["parallel", "one-process"])
def test_plan_installs_exactly_then_runs_the_mock_tests_then_the_fast_tests(workers: str, parallel: list[str]) -> None:
    steps = plan_upgrade(uv="/v/uv", python="/v/python", workers=workers)
    assert [step.name for step in steps] == ["install", "pulumi mock tests", "fast tests"]
    assert steps[0].argv == ("/v/uv", "sync", "--frozen", "--extra", "dev")
    assert steps[1].argv[-2:] == ("tests/pulumi", "tests/test_policy.py")
    fast = list(steps[2].argv)
    assert fast[:3] == ["/v/python", "-m", "pytest"]
    assert fast[fast.index("-m", 3):fast.index("-m", 3) + 2] == ["-m", "not slow"]
    assert ("-n" in fast) == bool(parallel) and all(arg in fast for arg in parallel)
    # The mock tests already ran: the fast tests leave them out rather than run them twice.
    assert fast[-4:] == ["--ignore", "tests/pulumi", "--ignore", "tests/test_policy.py"]


def test_refresh_reports_the_package_that_moved(project: Path) -> None:
    locked = locked_versions(project / "uv.lock")["redis"]
    set_locked_version(project, "redis", "8.1.0")
    refresh = refresh_lock(project, ["redis"], env=ONLINE)
    assert len(refresh.changes) == 1
    name, old, new = refresh.changes[0]
    assert (name, old) == ("redis", "8.1.0")
    assert new is not None and Version(new) >= Version(locked)
    assert locked_versions(project / "uv.lock")["redis"] == new
    assert refresh.warnings == []


def test_refresh_of_one_package_leaves_the_others_alone(project: Path) -> None:
    set_locked_version(project, "redis", "8.1.0")
    before = locked_versions(project / "uv.lock")
    refresh = refresh_lock(project, ["redis"], env=ONLINE)
    after = locked_versions(project / "uv.lock")
    assert {name for name, _, _ in refresh.changes} == {"redis"}
    assert {k: v for k, v in after.items() if k != "redis"} == {k: v for k, v in before.items() if k != "redis"}


def test_an_unknown_package_is_one_clear_error(project: Path) -> None:
    with pytest.raises(TetherError, match=r"nosuchpkg: no such package in uv.lock.*--package redis"):
        refresh_lock(project, ["nosuchpkg"], env=ONLINE)


def test_a_failed_lock_says_so_and_leaves_the_lock_unchanged(project: Path) -> None:
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"redis>=5",', '"redis>=5,<1",'))
    before = (project / "uv.lock").read_bytes()
    with pytest.raises(TetherError, match=r"`lock --upgrade-package redis` failed \(exit \d+\); uv.lock is unchanged"):
        refresh_lock(project, ["redis"], env=ONLINE)
    assert (project / "uv.lock").read_bytes() == before


@pytest.mark.parametrize(("uv_version", "warns"), [("0.13.9", False), ("0.14.0", True), (None, False)],
                         ids=["inside", "outside", "no-uv"])
def test_a_uv_outside_the_build_backend_range_is_flagged(project: Path, uv_version: str | None, warns: bool) -> None:
    warning = build_backend_warning(project, uv_version)
    assert (warning is not None) == warns
    if warns:
        assert warning is not None and "uv is now 0.14.0" in warning and "uv_build" in warning


def test_the_task_reports_an_unknown_package_without_a_traceback(project: Path) -> None:
    env = {**os.environ, "TETHER_PROJECT_ROOT": str(project)}
    result = subprocess.run([sys.executable, "-m", "invoke", "deps.upgrade", "--package", "nosuchpkg"], cwd=REPO,
                            env=env, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 1
    assert "nosuchpkg: no such package in uv.lock" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_the_locked_uv_builds_the_project_itself() -> None:
    # A lock that moves uv to another minor version (say, a Dependabot pull request) must move uv_build's range too.
    assert build_backend_warning(REPO, locked_versions(REPO / "uv.lock")["uv"]) is None


def test_dependabot_watches_the_lock_and_the_workflow_actions() -> None:
    config_file = REPO / ".github" / "dependabot.yml"
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.dependabot",
                             str(config_file)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    updates = {entry["package-ecosystem"]: entry for entry in yaml.safe_load(config_file.read_text())["updates"]}
    assert set(updates) == {"uv", "github-actions"}
    assert all(entry["directory"] == "/" for entry in updates.values())  # uv.lock and .github/workflows/
