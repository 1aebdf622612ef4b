"""The preview/deploy/outputs tasks and the Automation API wrapper, on a machine without the Pulumi CLI."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from invoke import MockContext
from invoke.exceptions import Exit
from pulumi.automation import CommandError
from pulumi.automation._cmd import CommandResult

from tether import pulumi_stack
from tether.errors import ConfigError, TetherError
from tether.secrets import MASK
from tether.tasks import stacks
from tether.tasks.boundary import domain_errors

INSTALL = "curl -fsSL https://get.pulumi.com | sh"


@pytest.fixture
def no_pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH with nothing on it: no pulumi, no docker."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("CI", raising=False)


def exit_of(call: Any, *args: Any, **kwargs: Any) -> Exit:
    with pytest.raises(Exit) as raised:
        call(MockContext(), *args, **kwargs)
    return raised.value


# --- the tasks ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("task", "kwargs"), [
    (stacks.preview, {"stack": "dev"}),
    (stacks.preview, {"stack": "prod"}),
    (stacks.deploy, {"stack": "dev"}),
    (stacks.deploy, {"stack": "prod", "yes": True}),
    (stacks.outputs, {"stack": "prod"}),
    (stacks.outputs, {"stack": "dev", "show_secrets": True, "json": True}),
], ids=["preview-dev", "preview-prod", "deploy-dev", "deploy-prod", "outputs-prod", "outputs-dev-json"])
@pytest.mark.usefixtures("no_pulumi")
def test_without_pulumi_cli_one_clear_message(task: Any, kwargs: dict[str, Any],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    error = exit_of(task, **kwargs)
    assert error.code == 127
    assert error.message is not None
    assert "`pulumi` is not installed" in error.message
    assert INSTALL in error.message
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("task", [stacks.preview, stacks.deploy, stacks.outputs], ids=["preview", "deploy", "outputs"])
@pytest.mark.parametrize("stack", ["", "staging"], ids=["missing", "unknown"])
def test_stack_must_be_dev_or_prod(task: Any, stack: str) -> None:
    error = exit_of(task, stack=stack)
    assert error.code == 2
    assert "--stack dev" in str(error.message) and "--stack prod" in str(error.message)


@pytest.mark.usefixtures("no_pulumi")
def test_prod_deploy_in_ci_without_yes_is_refused_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    error = exit_of(stacks.deploy, stack="prod")
    assert error.code == 3  # refused before looking for Pulumi: nothing would be applied anyway
    assert "--yes" in str(error.message)
    assert "CI=true" in str(error.message)


def test_tasks_document_every_flag() -> None:
    for task in (stacks.preview, stacks.deploy, stacks.outputs):
        parameters = [name for name in task.argspec(task.body).parameters if name != "c"]
        assert sorted(task.help) == sorted(parameters), task.name
        doc = (task.__doc__ or "").strip()
        assert doc and "\n" not in doc, task.name


def test_listing_tasks_does_not_import_pulumi() -> None:
    probe = "import sys, tether.tasks.stacks; print(sorted(m for m in sys.modules if m.startswith('pulumi')))"
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"


# --- readiness checks -------------------------------------------------------------------------

@pytest.mark.parametrize(("env", "files", "expected"), [
    ({}, [], None),
    ({"GOOGLE_CREDENTIALS": "{{}}"}, [], "GOOGLE_CREDENTIALS"),
    ({"GOOGLE_OAUTH_ACCESS_TOKEN": "ya29.x"}, [], "GOOGLE_OAUTH_ACCESS_TOKEN"),
    ({"GOOGLE_APPLICATION_CREDENTIALS": "{tmp}/key.json"}, ["key.json"], "{tmp}/key.json"),
    ({"GOOGLE_APPLICATION_CREDENTIALS": "{tmp}/missing.json"}, [], None),
    ({}, ["home/.config/gcloud/application_default_credentials.json"],
     "{tmp}/home/.config/gcloud/application_default_credentials.json"),
    ({"CLOUDSDK_CONFIG": "{tmp}/gcloud"}, ["gcloud/application_default_credentials.json"],
     "{tmp}/gcloud/application_default_credentials.json"),
    ({"TETHER_USE_METADATA_CREDENTIALS": "1"}, [], "the metadata server"),
    ({"TETHER_USE_METADATA_CREDENTIALS": "no"}, [], None),
], ids=["nothing", "google-credentials", "access-token", "key-file", "key-file-missing", "adc", "cloudsdk-config",
        "metadata", "metadata-no"])
def test_gcp_credentials_source(tmp_path: Path, env: dict[str, str], files: list[str], expected: str | None) -> None:
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    resolved = {key: value.format(tmp=tmp_path) for key, value in env.items()}
    found = pulumi_stack.gcp_credentials_source(resolved, tmp_path / "home")
    assert found == (expected.format(tmp=tmp_path) if expected else None)


def test_missing_credentials_say_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in (*pulumi_stack._CREDENTIAL_VARIABLES, "GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG",
                     "TETHER_USE_METADATA_CREDENTIALS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(TetherError, match="gcloud auth application-default login"):
        pulumi_stack.require_gcp_credentials()


def test_prod_needs_a_project(isolated_project: Path) -> None:
    with pytest.raises(ConfigError, match="tether-prod:gcpProject"):
        pulumi_stack.require_prod_project()
    stack_file = isolated_project / "stacks" / "prod" / "Pulumi.prod.yaml"
    stack_file.parent.mkdir(parents=True)
    stack_file.write_text("config:\n  tether-prod:gcpProject: acme-prod\n")
    pulumi_stack.require_prod_project()


@pytest.mark.usefixtures("no_pulumi")
def test_probes_without_programs() -> None:
    assert pulumi_stack.pulumi_available() is False
    assert pulumi_stack.docker_available() is False


# --- state and its passphrase ---------------------------------------------------------------------

def test_default_backend_is_the_repository(isolated_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    env = pulumi_stack.workspace_env("dev")
    assert env["PULUMI_BACKEND_URL"] == f"file://{isolated_project / '.pulumi'}"
    assert (isolated_project / ".pulumi").is_dir()
    assert env["PULUMI_PYTHON_CMD"] == sys.executable
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["PULUMI_CONFIG_PASSPHRASE_FILE"] == str(isolated_project / ".runtime" / "pulumi-passphrase")


def test_backend_url_from_the_environment(tmp_path: Path) -> None:
    assert pulumi_stack.backend_url({"PULUMI_BACKEND_URL": "gs://acme-state"}, tmp_path) == "gs://acme-state"
    assert pulumi_stack.backend_url({}, tmp_path) == f"file://{tmp_path / '.pulumi'}"


def test_passphrase_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    first = pulumi_stack.passphrase({}, "file:///repo/.pulumi", tmp_path)
    assert first.generated == tmp_path / "pulumi-passphrase"
    path = Path(first.env["PULUMI_CONFIG_PASSPHRASE_FILE"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_text()
    assert len(content.strip()) >= 32
    second = pulumi_stack.passphrase({}, "gs://acme-state", tmp_path)
    assert second.generated is None
    assert second.env == first.env
    assert path.read_text() == content


@pytest.mark.parametrize(("env", "url"), [
    ({"PULUMI_CONFIG_PASSPHRASE": "team"}, "file:///repo/.pulumi"),
    ({"PULUMI_CONFIG_PASSPHRASE_FILE": "/team/passphrase"}, "gs://acme-state"),
    ({}, "https://api.pulumi.com"),
], ids=["passphrase-set", "passphrase-file-set", "pulumi-cloud"])
def test_no_passphrase_generated_when_not_needed(tmp_path: Path, env: dict[str, str], url: str) -> None:
    assert pulumi_stack.passphrase(env, url, tmp_path) == pulumi_stack.Passphrase({}, None)
    assert list(tmp_path.iterdir()) == []


def test_generated_passphrase_is_announced_once(isolated_project: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"):
        monkeypatch.delenv(name, raising=False)
    pulumi_stack.workspace_env("prod")
    first = capsys.readouterr().out
    pulumi_stack.workspace_env("prod")
    assert "Generated a Pulumi passphrase" in first and "share it" in first
    assert capsys.readouterr().out == ""
    secret = (isolated_project / ".runtime" / "pulumi-passphrase").read_text().strip()
    assert secret not in first


# --- outputs, errors, summaries -----------------------------------------------------------------

OUTPUTS: dict[str, tuple[Any, bool]] = {
    "connectionName": ("acme:europe-west1:app-postgres-prod", False),
    "appPasswordSecret": ("app-postgres-prod-api_user-password", False),
    "redisAuth": ("s3cr3t-auth", True),
    "postgresDev": ({"host": "127.0.0.1", "port": 5435, "password": "Dev-pass-123",
                     "url": "postgresql://app:Dev-pass-123@127.0.0.1:5435/app_dev",
                     "note": "password is Dev-pass-123"}, True),
}


def test_outputs_mask_secrets() -> None:
    shown = pulumi_stack.display_outputs(OUTPUTS, show_secrets=False)
    assert shown["connectionName"] == "acme:europe-west1:app-postgres-prod"
    assert shown["appPasswordSecret"] == "app-postgres-prod-api_user-password"  # a secret's id, not a secret
    assert shown["redisAuth"] == MASK
    assert shown["postgresDev"]["host"] == "127.0.0.1"
    assert shown["postgresDev"]["port"] == 5435
    assert shown["postgresDev"]["password"] == MASK
    assert "Dev-pass-123" not in repr(shown)


def test_outputs_show_secrets_on_request() -> None:
    shown = pulumi_stack.display_outputs(OUTPUTS, show_secrets=True)
    assert shown["redisAuth"] == "s3cr3t-auth"
    assert shown["postgresDev"]["password"] == "Dev-pass-123"


def test_command_error_becomes_code_output_and_hint() -> None:
    error = CommandError(CommandResult(stdout="Previewing update (prod)\nerror: boom", code=255,
                                       stderr="error: google: could not find default credentials."))
    code, stdout, stderr = pulumi_stack.command_error_parts(error)
    assert code == 255
    assert stdout.endswith("error: boom")
    assert stderr == "error: google: could not find default credentials."
    assert "gcloud auth application-default login" in pulumi_stack.failure_hint(stdout + stderr)
    assert "PULUMI_CONFIG_PASSPHRASE" in pulumi_stack.failure_hint("error: incorrect passphrase")
    assert pulumi_stack.failure_hint("error: something else") == ""


def test_change_summaries() -> None:
    assert pulumi_stack.describe_changes({"same": 4}) == "no changes"
    assert pulumi_stack.describe_changes({"create": 2, "update": 1, "same": 3}) == "2 to create, 1 to update"
    assert pulumi_stack.has_changes({"same": 4}) is False
    assert pulumi_stack.has_changes({"same": 4, "replace": 1}) is True


def test_policy_pack_runs_on_prod_only() -> None:
    (pack,) = pulumi_stack.policy_packs("prod")
    assert Path(pack, "PulumiPolicy.yaml").is_file()
    assert pulumi_stack.policy_packs("dev") == []


def test_destroying_prod_is_refused(no_pulumi: None) -> None:
    with pytest.raises(TetherError, match="never destroys the prod stack"):
        pulumi_stack.destroy("prod")
    assert os.environ["PATH"].endswith("empty-bin")


def test_pulumi_failure_reaches_the_user_as_one_exit() -> None:
    @domain_errors
    def failing_task() -> None:
        with pulumi_stack._pulumi_errors("preview of the prod stack"):
            raise CommandError(CommandResult(
                stdout="Previewing update (prod)\n  error: google: could not find default credentials",
                stderr="error: preview failed", code=255))

    with pytest.raises(Exit) as raised:
        failing_task()
    message = str(raised.value.message)
    assert message.startswith("Pulumi (preview of the prod stack) failed with exit code 255.")
    assert "could not find default credentials" in message and "error: preview failed" in message
    assert message.endswith("run `gcloud auth application-default login`.")
