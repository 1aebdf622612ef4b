"""tether.runtime's reader: one stat per call, re-reads only on change, follows every kind of change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tether.runtime import TargetError, TargetReader, reader
from tether.runtime.contract import PRODUCTION_GUARD, TargetState, render_state

from .conftest import LOCAL_URL, PRODUCTION_URL, env_text, write_project

PRODUCTION = render_state(TargetState("production", "ana", "2025-01-01T00:00:00+00:00", PRODUCTION_GUARD))
LOCAL = render_state(TargetState("local", "ana", "2025-01-01T00:00:00+00:00"))


def replace_file(path: Path, text: str) -> None:
    """What tether does: a new file renamed over the old one."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class FileCalls:
    """Counts the reader's stat and open calls on the project's files."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
        self.stats: list[str] = []
        self.opens: list[str] = []
        real_stat, real_open = os.stat, open

        def counting_stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            if str(path).startswith(str(root)):
                self.stats.append(Path(path).name)
            return real_stat(path, *args, **kwargs)

        def counting_open(path: Any, *args: Any, **kwargs: Any) -> Any:
            self.opens.append(Path(path).name)
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(os, "stat", counting_stat)
        monkeypatch.setattr(reader, "open", counting_open, raising=False)

    def reset(self) -> None:
        self.stats.clear()
        self.opens.clear()


def test_one_stat_per_call_and_no_read_while_nothing_changes(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_project(tmp_path, PRODUCTION)
    calls = FileCalls(monkeypatch, root)
    target_reader = TargetReader(root, {})
    assert target_reader.database_url() == PRODUCTION_URL
    assert calls.opens == ["db-target.json", ".env"]
    calls.reset()
    for _ in range(1000):
        assert target_reader.database_url() == PRODUCTION_URL
    assert calls.opens == []
    # One stat of the state file per call, plus .env at most once a second (this loop takes far less).
    assert calls.stats.count("db-target.json") == 1000
    assert calls.stats.count(".env") <= 1


def test_a_switch_is_seen_at_the_next_call(tmp_path: Path) -> None:
    root = write_project(tmp_path, LOCAL)
    target_reader = TargetReader(root, {})
    assert (target_reader.active_target(), target_reader.database_url()) == ("local", LOCAL_URL)
    replace_file(root / ".runtime" / "db-target.json", PRODUCTION)
    assert (target_reader.active_target(), target_reader.database_url()) == ("production", PRODUCTION_URL)
    (root / ".runtime" / "db-target.json").unlink()  # never switched: local
    assert target_reader.active_target() == "local"


def test_a_state_rewritten_in_place_with_the_same_size_is_seen(tmp_path: Path) -> None:
    # Same inode, same length: only the modification time tells the two apart.
    state = tmp_path / ".runtime" / "db-target.json"
    root = write_project(tmp_path, json.dumps({"format": 1, "target": "local", "guard": "xxxxxxxxxxxxxxxxx"}))
    target_reader = TargetReader(root, {})
    assert target_reader.active_target() == "local"
    before = state.stat().st_mtime_ns
    state.write_text(json.dumps({"format": 1, "target": "production", "guard": PRODUCTION_GUARD}))
    if state.stat().st_mtime_ns == before:  # a coarse clock: make the write visible as the kernel would later
        os.utime(state, ns=(before + 1_000_000, before + 1_000_000))
    assert target_reader.active_target() == "production"


def test_an_env_rewrite_alone_is_followed_within_a_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_project(tmp_path, LOCAL)
    clock = [1000.0]
    monkeypatch.setattr(reader.time, "monotonic", lambda: clock[0])
    target_reader = TargetReader(root, {})
    assert target_reader.database_url() == LOCAL_URL
    moved = LOCAL_URL.replace("5435", "6543")
    replace_file(root / ".env", env_text(local=moved))
    clock[0] += 0.5
    assert target_reader.database_url() == LOCAL_URL  # not yet looked at
    clock[0] += 0.6
    assert target_reader.database_url() == moved


def test_errors_are_cached_then_cleared_by_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_project(tmp_path, json.dumps({"format": 9, "target": "local"}))
    calls = FileCalls(monkeypatch, root)
    target_reader = TargetReader(root, {})
    for _ in range(3):
        with pytest.raises(TargetError, match="format 9"):
            target_reader.database_url()
    assert calls.opens.count("db-target.json") == 1
    replace_file(root / ".runtime" / "db-target.json", PRODUCTION)
    assert target_reader.database_url() == PRODUCTION_URL


def test_a_missing_env_or_url_says_to_run_invoke_env(tmp_path: Path) -> None:
    root = write_project(tmp_path, PRODUCTION, env="DATABASE_URL_LOCAL=x\n")
    with pytest.raises(TargetError, match=r"has no DATABASE_URL_PRODUCTION\. Run `invoke env`"):
        TargetReader(root, {}).database_url()
    (root / ".env").unlink()
    with pytest.raises(TargetError, match=r"\.env does not exist\. Run `invoke env`"):
        TargetReader(root, {}).database_url()


def test_a_held_back_test_process_logs_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write_project(tmp_path, PRODUCTION)
    with caplog.at_level("WARNING", logger="tether.runtime"):
        active = TargetReader(root, {"NODE_ENV": "test"}).resolve()
    assert (active.target, active.url, active.state.target) == ("local", LOCAL_URL, "production")
    assert "never follows a switch to production" in caplog.text


def test_driver_urls(tmp_path: Path) -> None:
    root = write_project(tmp_path, LOCAL)
    assert TargetReader(root, {}).database_url("psycopg") == LOCAL_URL.replace("postgresql://",
                                                                              "postgresql+psycopg://")


def test_the_runtime_dir_override_is_honoured(tmp_path: Path) -> None:
    root = write_project(tmp_path / "project", None)
    elsewhere = tmp_path / "state"
    elsewhere.mkdir()
    (elsewhere / "db-target.json").write_text(PRODUCTION)
    assert TargetReader(root, {"TETHER_RUNTIME_DIR": str(elsewhere)}).active_target() == "production"


def test_importing_tether_runtime_pulls_in_no_heavy_dependency() -> None:
    script = ("import sys, tether.runtime\n"
              "heavy = {'invoke', 'rich', 'pulumi', 'psycopg', 'psycopg_pool', 'sqlalchemy', 'yaml', 'tether.tasks',"
              " 'tether.target', 'tether.envfiles'}\n"
              "print(sorted(m for m in sys.modules if m in heavy or m.split('.')[0] in heavy))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    tether_modules = subprocess.run(
        [sys.executable, "-c", "import json, sys, tether.runtime; print(json.dumps(sorted(m for m in sys.modules "
         "if m.startswith('tether'))))"], capture_output=True, text=True, check=True).stdout
    assert json.loads(tether_modules) == ["tether", "tether.errors", "tether.runtime", "tether.runtime.contract",
                                          "tether.runtime.reader"]


def test_between_the_state_and_env_writes_the_previous_answer_holds(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A switch writes the state, then .env: a reader in between neither mixes them nor waits a second."""
    local_env = env_text().replace("# >>> tether managed block >>>\n", "# >>> tether managed block >>>\n"
                                   "TETHER_DB_TARGET='local'\n")
    stale_production = "postgresql://app:@127.0.0.1:5434/app"  # e.g. written before the password was exported
    root = write_project(tmp_path, LOCAL, local_env.replace(PRODUCTION_URL, stale_production))
    clock = [1000.0]
    monkeypatch.setattr(reader.time, "monotonic", lambda: clock[0])
    target_reader = TargetReader(root, {})
    assert target_reader.database_url() == LOCAL_URL
    replace_file(root / ".runtime" / "db-target.json", PRODUCTION)
    for _ in range(3):
        assert target_reader.database_url() == LOCAL_URL  # not the stale production URL of the old .env
    replace_file(root / ".env", local_env.replace("TETHER_DB_TARGET='local'", "TETHER_DB_TARGET='production'"))
    assert target_reader.database_url() == PRODUCTION_URL  # at once: no clock moved
    assert target_reader.active_target() == "production"


def test_a_reader_that_starts_between_the_writes_uses_the_state(tmp_path: Path) -> None:
    env = env_text().replace("# >>> tether managed block >>>\n",
                             "# >>> tether managed block >>>\nTETHER_DB_TARGET='local'\n")
    root = write_project(tmp_path, PRODUCTION, env)
    assert TargetReader(root, {}).database_url() == PRODUCTION_URL


@pytest.mark.parametrize("environment", [{"NODE_ENV": "test"},
                                         {"DATABASE_URL": "postgresql://t@h/app_test",
                                          "TEST_DATABASE_URL": "postgresql://t@h/app_test"}],
                         ids=["NODE_ENV=test", ".env.test loaded"])
def test_a_python_test_process_never_follows_production(tmp_path: Path, environment: dict[str, str]) -> None:
    root = write_project(tmp_path, PRODUCTION)
    script = "from tether.runtime import active_target, database_url; print(active_target(), database_url())"
    base = {key: value for key, value in os.environ.items()
            if key not in {"TETHER_PROJECT_ROOT", "DATABASE_URL", "TEST_DATABASE_URL", "NODE_ENV"}}
    held = subprocess.run([sys.executable, "-c", script], env={**base, "TETHER_ROOT": str(root), **environment},
                          capture_output=True, text=True, check=True)
    assert held.stdout.split() == ["local", LOCAL_URL]
    assert "never follows a switch to production" in held.stderr
    plain = subprocess.run([sys.executable, "-c", script], env={**base, "TETHER_ROOT": str(root)},
                           capture_output=True, text=True, check=True)
    assert plain.stdout.split() == ["production", PRODUCTION_URL]
