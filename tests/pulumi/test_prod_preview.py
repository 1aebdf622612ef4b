"""`invoke preview --stack prod` refuses a stack file Google would refuse, before Pulumi or Google is called.

A stand-in `pulumi` on PATH answers `pulumi version` (so the task gets past "is Pulumi installed") and records
every other call; the Automation API entry point is replaced by one that fails the test. A refused config must
stop before both, with one paragraph naming the key, the rule and a value that works, and no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke import MockContext
from invoke.exceptions import Exit

from tether import pulumi_stack
from tether.tasks import stacks

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "stacks" / "prod" / "Pulumi.prod.yaml"


class ReachedPulumi(Exception):
    """The task got past every local check and would now start Pulumi (and call Google)."""


@pytest.fixture
def fake_pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "pulumi-calls"
    script = bin_dir / "pulumi"
    script.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\n[ "$1" = version ] && echo v3.200.0 && exit 0\nexit 1\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "ya29.test-token")  # credentials "found", never used
    monkeypatch.delenv("CI", raising=False)
    return calls


@pytest.fixture
def no_automation_api(monkeypatch: pytest.MonkeyPatch) -> None:
    def reached(*args: Any, **kwargs: Any) -> None:
        raise ReachedPulumi

    monkeypatch.setattr(pulumi_stack, "_open_stack", reached)


def write_stack_file(project: Path, **overrides: Any) -> Path:
    """The shipped Pulumi.prod.yaml with a project id and ``overrides``, in the isolated project."""
    document = yaml.safe_load(SHIPPED.read_text())
    document["config"]["tether-prod:gcpProject"] = "acme-prod"
    document["config"].update({f"tether-prod:{key}": value for key, value in overrides.items()})
    path = project / "stacks" / "prod" / "Pulumi.prod.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document))
    return path


def preview_exit() -> Exit:
    with pytest.raises(Exit) as raised:
        stacks.preview(MockContext(), stack="prod")
    return raised.value


@pytest.mark.usefixtures("no_automation_api")
def test_the_shipped_stack_file_passes_every_rule(isolated_project: Path, fake_pulumi: Path) -> None:
    write_stack_file(isolated_project)
    with pytest.raises(ReachedPulumi):
        stacks.preview(MockContext(), stack="prod")


@pytest.mark.usefixtures("no_automation_api")
@pytest.mark.parametrize(("overrides", "key", "rule", "works"), [
    ({"retainedBackups": 7}, "retainedBackups", "backups-exceed-log-retention", "retainedBackups: 8"),
    ({"maintenanceUpdateTrack": "weekly"}, "maintenanceUpdateTrack", "maintenance-update-track",
     'maintenanceUpdateTrack: "stable"'),
    ({"tier": "db-perf-optimized-N-2"}, "tier", "tier-enterprise", 'tier: "db-custom-2-13312"'),
    ({"edition": "ENTERPRISE_PLUS"}, "tier", "tier-enterprise-plus", 'tier: "db-perf-optimized-N-2"'),
    ({"transactionLogRetentionDays": 14}, "transactionLogRetentionDays", "log-retention",
     "transactionLogRetentionDays: 7"),
    ({"iamServiceAccounts": ["ana@example.com"]}, "iamServiceAccounts", "service-account-email",
     "iamServiceAccounts: []"),
    ({"redis": True, "redisVersion": "REDIS_6_2"}, "redisVersion", "redis-version", 'redisVersion: "REDIS_6_X"'),
    ({"dataCache": True}, "dataCache", "data-cache-edition", "dataCache: false"),
    ({"gcpProject": ""}, "gcpProject", "project-id", "gcpProject: "),
], ids=["backups-vs-logs", "update-track", "plus-tier-on-enterprise", "custom-tier-on-plus", "log-days",
        "person-as-service-account", "redis-version", "data-cache", "no-project"])
def test_preview_refuses_before_any_cloud_call(isolated_project: Path, fake_pulumi: Path,
                                               capsys: pytest.CaptureFixture[str], overrides: dict[str, Any],
                                               key: str, rule: str, works: str) -> None:
    stack_file = write_stack_file(isolated_project, **overrides)
    error = preview_exit()
    assert error.code == 2
    message = str(error.message)
    assert "\n" not in message.strip()
    for part in (str(stack_file), f"tether-prod:{key}", f"Rule {rule}:", f"A value that works: {works}",
                 "stacks/prod/Pulumi.yaml"):
        assert part in message, part
    assert "Traceback" not in capsys.readouterr().err
    assert fake_pulumi.read_text().split() == ["version"]  # no preview, no login, no stack selected


@pytest.mark.usefixtures("no_automation_api")
@pytest.mark.parametrize("overrides", [
    {"redis": True, "redisVersion": "REDIS_6_X"},
    {"maintenanceUpdateTrack": "week5"},
    {"iamServiceAccounts": ["123456789-compute@developer.gserviceaccount.com",
                            "acme-prod@appspot.gserviceaccount.com"]},
    {"edition": "ENTERPRISE_PLUS", "tier": "db-perf-optimized-N-4", "transactionLogRetentionDays": 21,
     "retainedBackups": 30, "dataCache": True},
], ids=["redis-6-x", "week5", "google-managed-service-accounts", "enterprise-plus"])
def test_preview_accepts_what_google_accepts(isolated_project: Path, fake_pulumi: Path,
                                             overrides: dict[str, Any]) -> None:
    write_stack_file(isolated_project, **overrides)
    with pytest.raises(ReachedPulumi):
        stacks.preview(MockContext(), stack="prod")


def test_invoke_preview_refuses_in_one_paragraph_without_traceback(isolated_project: Path,
                                                                  fake_pulumi: Path) -> None:
    """The real `invoke` command line, as a user types it."""
    write_stack_file(isolated_project, retainedBackups=3, transactionLogRetentionDays=5)
    completed = subprocess.run([sys.executable, "-m", "invoke", "preview", "--stack", "prod"], cwd=ROOT,
                               capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr + completed.stdout
    message = completed.stderr.strip()
    assert "\n" not in message
    assert "tether-prod:retainedBackups is 3" in message
    assert "A value that works: retainedBackups: 6" in message
    assert fake_pulumi.read_text().split() == ["version"]
