"""`invoke test`: the suite on every core by default, one process on request, the slow tests left out on request."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tether.tasks.checks import pytest_argv

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("options", "expected"), [
    ({}, ["py", "-m", "pytest", "tests", "-q", "-n", "auto", "--dist", "loadgroup"]),
    ({"workers": "3"}, ["py", "-m", "pytest", "tests", "-q", "-n", "3", "--dist", "loadgroup"]),
    ({"workers": "0"}, ["py", "-m", "pytest", "tests", "-q"]),
    ({"workers": "0", "path": "tests/sync", "k": "spare", "fast": True},
     ["py", "-m", "pytest", "tests/sync", "-q", "-k", "spare", "-m", "not slow"]),
], ids=["default-every-core", "three-workers", "one-process", "path-k-fast"])
def test_pytest_argv(options: dict[str, object], expected: list[str]) -> None:
    assert pytest_argv("py", **options) == expected  # type: ignore[arg-type]


PROBE = """
import os
import pytest

def record(kind):
    with open(os.environ["PROBE_LOG"], "a") as log:
        log.write(f"{kind} {os.environ['PYTEST_XDIST_WORKER']}\\n")

@pytest.mark.serial
@pytest.mark.parametrize("n", range(8))
def test_serial(n):
    record("serial")

@pytest.mark.parametrize("n", range(8))
def test_free(n):
    record("free")
"""


def test_serial_tests_share_one_worker(tmp_path: Path) -> None:
    # A real pytest-xdist run of a probe suite with this repository's conftest hook and markers.
    (tmp_path / "test_probe.py").write_text(PROBE)
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")  # the suite's own hook, as it is
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    serial: one worker\n")
    log = tmp_path / "workers.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PROBE_LOG": str(log)}
    argv = pytest_argv(sys.executable, path=str(tmp_path), workers="2")
    result = subprocess.run([*argv, "-p", "no:cacheprovider"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = [line.split() for line in log.read_text().splitlines()]
    assert len(runs) == 16
    assert len({worker for kind, worker in runs if kind == "serial"}) == 1
