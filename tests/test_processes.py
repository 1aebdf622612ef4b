"""The one liveness check: existing, exited, zombie and renamed processes."""

import os
import subprocess
import sys

from tether.processes import pid_exists, process_runs


def test_a_running_process_exists_and_runs_under_its_name():
    child = subprocess.Popen([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(30)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        # Until the child has exec'd, /proc shows no command line (or the parent's): wait for it to speak.
        assert child.stdout is not None and child.stdout.readline() == "started\n"
        assert pid_exists(child.pid)
        assert process_runs(child.pid, "python")
        assert not process_runs(child.pid, "postgres")  # a reused pid with another name is not our server
    finally:
        child.kill()
        child.wait()


def test_an_exited_process_does_not_exist():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_exists(child.pid)
    assert not process_runs(child.pid, "python")


def test_a_zombie_does_not_run():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited but not reaped: a zombie
    try:
        assert pid_exists(child.pid)
        assert not process_runs(child.pid, "python")
    finally:
        child.wait()
