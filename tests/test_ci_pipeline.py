"""The pipeline pieces: the GitHub workflow validates, `invoke ci` plans the right steps, no colour off-terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tether.ci import Step, ci_plan, google_credentials_present, run_plan

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"


def test_workflow_validates_against_the_published_schema():
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                             str(WORKFLOW)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_gates_prod_deploy_and_echoes_no_secret():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    jobs = workflow["jobs"]
    deploy = jobs["deploy-prod"]
    assert deploy["environment"] == "production"
    assert "refs/heads/main" in deploy["if"]
    assert "pull_request" in jobs["preview-prod"]["if"]
    assert any("deploy --stack prod --yes" in step.get("run", "") for step in deploy["steps"])
    for job in jobs.values():
        for step in job["steps"]:
            assert "secrets." not in step.get("run", ""), "secrets go through env, never into a run line"
    assert workflow["env"]["CI"] == "true"


@pytest.mark.parametrize(("pulumi_ok", "credentials_ok", "preview_skipped"), [
    (False, False, "the Pulumi CLI is not installed"),
    (True, False, "no Google Cloud credentials"),
    (True, True, ""),
], ids=["no-cli", "no-credentials", "preview-runs"])
def test_ci_plan_runs_preview_only_with_cli_and_credentials(pulumi_ok, credentials_ok, preview_skipped):
    steps = {step.name: step for step in ci_plan(pulumi_ok=pulumi_ok, credentials_ok=credentials_ok, python="py")}
    assert list(steps) == ["lint", "types", "dev stack", "tests", "env files", "preview prod"]
    assert steps["dev stack"].argv == ("py", "-m", "invoke", "up", "--backend", "native")
    assert steps["env files"].argv[-2:] == ("env", "--check")
    assert steps["preview prod"].skip_reason.startswith(preview_skipped)
    assert bool(steps["preview prod"].skip_reason) == (not (pulumi_ok and credentials_ok))


def test_credentials_detection(tmp_path):
    assert google_credentials_present({"GOOGLE_APPLICATION_CREDENTIALS": "/key.json"})
    assert not google_credentials_present({"CLOUDSDK_CONFIG": str(tmp_path)})
    (tmp_path / "application_default_credentials.json").write_text("{}")
    assert google_credentials_present({"CLOUDSDK_CONFIG": str(tmp_path)})


def test_run_plan_reports_failures_and_skips(isolated_project):
    steps = [Step("ok", (sys.executable, "-c", "pass")), Step("bad", (sys.executable, "-c", "raise SystemExit(3)")),
             Step("later", (sys.executable, "-c", "pass")), Step("off", ("never",), skip_reason="not here")]
    results = run_plan(steps, fail_fast=True, output_to_stderr=True)
    assert [(r.name, r.status, r.exit_code) for r in results] == [
        ("ok", "passed", 0), ("bad", "failed", 3), ("later", "skipped", None), ("off", "skipped", None)]


def test_task_output_has_no_colour_codes_off_terminal(isolated_project):
    # `invoke target` off a terminal, through a pipe, as CI runs it.
    env = {**os.environ, "TETHER_PROJECT_ROOT": str(isolated_project), "CI": "true"}
    env.pop("NO_COLOR", None)
    env.pop("FORCE_COLOR", None)
    result = subprocess.run([sys.executable, "-m", "invoke", "target", "--json"], cwd=REPO, env=env,
                            capture_output=True, text=True, check=False)
    assert "\x1b[" not in result.stdout + result.stderr
    assert json.loads(result.stdout)["target"] == "local"
