"""What a pipeline runs for this repo, as a list of steps built by a pure function and run in order."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tether.paths import project_root


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...]
    skip_reason: str = ""


@dataclass(frozen=True)
class StepResult:
    name: str
    status: str  # passed | failed | skipped
    seconds: float
    exit_code: int | None
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def google_credentials_present(environ: dict[str, str] | None = None) -> bool:
    """Application-default credentials, a key file, or the GitHub auth action's credentials file."""
    env = os.environ if environ is None else environ
    if env.get("GOOGLE_APPLICATION_CREDENTIALS") or env.get("GOOGLE_GHA_CREDS_PATH"):
        return True
    config_dir = Path(env.get("CLOUDSDK_CONFIG", Path.home() / ".config" / "gcloud"))
    return (config_dir / "application_default_credentials.json").exists()


def ci_plan(*, pulumi_ok: bool, credentials_ok: bool, python: str = sys.executable) -> list[Step]:
    """The pipeline: lint, types, a native dev stack, the tests, env files up to date, and a prod preview."""
    invoke = (python, "-m", "invoke")
    if not pulumi_ok:
        preview_skip = "the Pulumi CLI is not installed"
    elif not credentials_ok:
        preview_skip = "no Google Cloud credentials (run `gcloud auth application-default login`)"
    else:
        preview_skip = ""
    return [
        Step("lint", (python, "-m", "ruff", "check", ".")),
        Step("types", (python, "-m", "mypy")),
        Step("dev stack", (*invoke, "up", "--backend", "native")),
        Step("tests", (python, "-m", "pytest", "tests", "-q")),
        Step("env files", (*invoke, "env", "--check")),
        Step("preview prod", (*invoke, "preview", "--stack", "prod"), skip_reason=preview_skip),
    ]


def run_plan(steps: list[Step], *, fail_fast: bool = False, output_to_stderr: bool = False) -> list[StepResult]:
    """Run each step; ``output_to_stderr`` keeps stdout free for a JSON summary."""
    results: list[StepResult] = []
    failed = False
    for step in steps:
        if step.skip_reason or (failed and fail_fast):
            reason = step.skip_reason or "an earlier step failed"
            results.append(StepResult(step.name, "skipped", 0.0, None, reason))
            continue
        started = time.perf_counter()
        completed = subprocess.run(step.argv, cwd=project_root(), check=False,
                                   stdout=sys.stderr if output_to_stderr else None)
        seconds = round(time.perf_counter() - started, 2)
        status = "passed" if completed.returncode == 0 else "failed"
        failed = failed or status == "failed"
        results.append(StepResult(step.name, status, seconds, completed.returncode))
    return results
