"""uv.lock is the truth: the environment equals it, it agrees with pyproject.toml, and CI refuses otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tether.lockfile import (
    LockError,
    canonical_name,
    installed_packages,
    load_lock,
    marker_test,
    pinned_versions,
    requirements_text,
    version_changes,
)

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "uv.lock"
VENV_BIN = Path(sys.executable).parent


def uv(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The lock's own uv, installed in this environment (it is a dependency of the project)."""
    program = VENV_BIN / "uv"
    assert program.exists(), f"{program} is missing: run ./dev --bootstrap"
    environment = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_OFFLINE": "1", **(env or {})}
    environment.setdefault("UV_SYSTEM_CERTS", "1")
    return subprocess.run([str(program), *args], cwd=cwd, env=environment, capture_output=True, text=True,
                          check=False, timeout=120)


def frozen(text: str) -> tuple[dict[str, str], list[str]]:
    """`uv pip freeze` output as ({name: version}, [editable lines])."""
    pins: dict[str, str] = {}
    editables: list[str] = []
    for line in text.splitlines():
        if line.startswith("-e "):
            editables.append(line)
        elif "==" in line:
            name, version = line.split("==", 1)
            pins[canonical_name(name)] = version.strip()
    return pins, editables


# --- the installed environment is exactly the lock -------------------------------------------------------------

def test_installed_environment_is_exactly_the_lock() -> None:
    result = uv("pip", "freeze", "--python", sys.executable)
    assert result.returncode == 0, result.stderr
    installed, editables = frozen(result.stdout)
    expected = pinned_versions(installed_packages(load_lock(LOCK), ["dev"]))
    missing = {name: version for name, version in expected.items() if installed.get(name) != version}
    extra = {name: version for name, version in installed.items() if name not in expected}
    assert not missing and not extra, f"not as locked: {missing}; not in the lock: {extra}"
    # The project itself, editable from this checkout (its .pth names the checkout).
    assert editables == [f"-e file://{REPO}"], editables


# --- uv.lock agrees with pyproject.toml --------------------------------------------------------------------------

def test_the_lock_agrees_with_pyproject() -> None:
    result = uv("lock", "--check")
    assert result.returncode == 0, (
        "uv.lock does not match pyproject.toml; run `invoke deps.upgrade` (or `uv lock`) and commit uv.lock\n"
        + result.stderr)


def _project_copy(tmp_path: Path) -> Path:
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize(("old", "new"), [
    ('    "redis>=5",\n', '    "redis>=5",\n    "six>=1.16",\n'),
    ('    "pytest-xdist>=3.5",\n', '    "pytest-xdist>=3.5",\n    "six>=1.16",\n'),
    ('    "redis>=5",\n', '    "redis>=99",\n'),
    ('    "redis>=5",\n', ""),
], ids=["new-dependency", "new-test-dependency", "tightened-beyond-the-locked-version", "removed-dependency"])
def test_the_lock_check_fails_when_pyproject_changes_without_the_lock(tmp_path: Path, old: str, new: str) -> None:
    project = _project_copy(tmp_path)
    assert uv("lock", "--check", cwd=project).returncode == 0  # the unchanged copy passes
    pyproject = project / "pyproject.toml"
    assert old in pyproject.read_text()
    pyproject.write_text(pyproject.read_text().replace(old, new, 1))
    assert uv("lock", "--check", cwd=project).returncode != 0
    assert (project / "uv.lock").read_bytes() == LOCK.read_bytes()  # --check never rewrites the lock


def test_ci_refuses_a_lock_that_disagrees_with_pyproject(tmp_path: Path) -> None:
    # .ci/run in a copy of the repository whose pyproject.toml gained a dependency the lock lacks.
    project = _project_copy(tmp_path)
    (project / ".ci").mkdir()
    for name in ("dev", ".ci/run"):
        shutil.copy(REPO / name, project / name)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('    "redis>=5",\n', '    "redis>=5",\n    "six>=1.16",\n'))
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "UV_OFFLINE": "1", "CI": "true"}
    result = subprocess.run(["bash", str(project / ".ci" / "run")], cwd=project, env=env, capture_output=True,
                            text=True, check=False, timeout=120)
    assert result.returncode != 0
    assert "uv.lock does not match pyproject.toml" in result.stderr
    assert "invoke deps.upgrade" in result.stderr
    assert not (project / ".venv").exists()  # refused before installing anything
    assert "== ruff" not in result.stdout


# --- reading the lock without uv (the pip fallback, the uv bootstrap) -------------------------------------------

ENVIRONMENTS = {
    "this-interpreter": {},
    "linux-3.11.2": {"python_full_version": "3.11.2", "python_version": "3.11"},
    "linux-3.13": {"python_full_version": "3.13.1", "python_version": "3.13"},
    "windows-3.12": {"python_full_version": "3.12.4", "python_version": "3.12", "sys_platform": "win32",
                     "platform_system": "Windows", "os_name": "nt"},
    "macos-pypy": {"sys_platform": "darwin", "platform_system": "Darwin", "implementation_name": "pypy",
                   "platform_python_implementation": "PyPy"},
}


@pytest.mark.parametrize("environment", list(ENVIRONMENTS.values()), ids=list(ENVIRONMENTS))
def test_the_packages_read_from_the_lock_are_what_uv_exports(environment: dict[str, str]) -> None:
    result = uv("export", "--frozen", "--extra", "dev", "--no-hashes", "--no-emit-project", "--no-header",
                "--no-annotate")
    assert result.returncode == 0, result.stderr
    applies = marker_test(environment)
    exported = {}
    for line in result.stdout.splitlines():
        requirement, _, marker = line.partition(" ; ")
        if "==" in requirement and (not marker or applies(marker)):
            name, version = requirement.split("==")
            exported[canonical_name(name)] = version
    ours = pinned_versions(installed_packages(load_lock(LOCK), ["dev"], applies))
    assert ours == exported
    assert "pytest-xdist" in ours and "redis" in ours and "uv" in ours


def test_the_environments_differ_where_the_lock_says_they_do() -> None:
    def packages(name: str) -> set[str]:
        return set(pinned_versions(installed_packages(load_lock(LOCK), ["dev"], marker_test(ENVIRONMENTS[name]))))

    assert "async-timeout" in packages("linux-3.11.2") - packages("linux-3.13")  # redis, before 3.11.3
    assert "colorama" in packages("windows-3.12") - packages("linux-3.13")
    assert "psycopg-binary" not in packages("macos-pypy")


def test_extras_choose_the_packages() -> None:
    lock = load_lock(LOCK)
    runtime = set(pinned_versions(installed_packages(lock)))
    test = set(pinned_versions(installed_packages(lock, ["test"])))
    dev = set(pinned_versions(installed_packages(lock, ["dev"])))
    assert {"redis", "psycopg", "pulumi-gcp", "uv"} <= runtime
    assert "pytest" not in runtime
    assert {"pytest-xdist", "psycopg-pool", "sqlalchemy"} <= test - runtime
    assert {"mutmut", "ruff", "mypy"} <= dev - test
    with pytest.raises(LockError, match="no extra docs"):
        installed_packages(lock, ["docs"])


def test_pip_requirements_pin_every_package_with_every_artifact_hash() -> None:
    lock = load_lock(LOCK)
    packages = installed_packages(lock, ["dev"])
    text = requirements_text(packages)
    for package in packages:
        assert f"{package.name}=={package.version} \\" in text
        assert package.hashes and all(f"--hash={digest}" in text for digest in package.hashes)
    uv_only = requirements_text([lock.named("uv")])
    assert uv_only.count("==") == 1 and uv_only.count("--hash=sha256:") > 10  # one wheel per platform


def test_the_command_line_prints_requirements_a_bare_python_can_make(tmp_path: Path) -> None:
    # ./dev runs it with the system Python before .venv exists: standard library, plus pip's own `packaging`.
    result = subprocess.run([sys.executable, "-m", "tether.lockfile", "requirements", "--only", "uv"], cwd=REPO,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert f"uv=={load_lock(LOCK).named('uv').version} \\" in result.stdout
    broken = tmp_path / "uv.lock"
    broken.write_text("[[package]\n")
    result = subprocess.run([sys.executable, "-m", "tether.lockfile", "requirements", "--lock", str(broken)],
                            cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "is not valid TOML" in result.stderr and "Traceback" not in result.stderr


def test_version_changes_name_what_moved() -> None:
    before = {"redis": "5.0.0", "six": "1.0", "uv": "0.13.9"}
    after = {"redis": "5.1.0", "uv": "0.13.9", "wrapt": "2.0"}
    assert version_changes(before, after) == [("redis", "5.0.0", "5.1.0"), ("six", "1.0", None),
                                              ("wrapt", None, "2.0")]

