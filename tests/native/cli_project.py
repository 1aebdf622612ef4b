"""A throwaway project with a native dev stack of its own on free ports, driven through the real invoke CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class CliProject:
    root: Path
    data: Path
    ports: dict[str, int]
    env: dict[str, str]

    def invoke(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "invoke", *argv], cwd=REPO, env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def must(self, *argv: str) -> subprocess.CompletedProcess[str]:
        result = self.invoke(*argv)
        assert result.returncode == 0, (argv, result.stdout[-1500:], result.stderr[-3000:])
        return result

    def start(self, *argv: str) -> subprocess.Popen[str]:
        """The command in a session of its own, so that a kill of its group reaches every program it runs."""
        return subprocess.Popen([sys.executable, "-m", "invoke", *argv], cwd=REPO, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def remove(self) -> None:
        self.invoke("down", "--backend", "native")
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.data, ignore_errors=True)


def cli_project_files(prefix: str, **env: str) -> tuple[Path, Path, dict[str, int], dict[str, str]]:
    """A project root whose dev stack uses free ports, a data directory, and the environment to run it with."""
    root = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    data = Path(tempfile.mkdtemp(prefix=f"{prefix}-data-"))
    data.chmod(0o755)
    ports = {"dev": free_port(), "test": free_port(), "redis": free_port()}
    (root / "stacks" / "dev").mkdir(parents=True)
    (root / "stacks" / "dev" / "Pulumi.dev.yaml").write_text(
        "config:\n"
        f"  tether-dev:devPort: {ports['dev']}\n  tether-dev:testPort: {ports['test']}\n"
        f"  tether-dev:redisPort: {ports['redis']}\n")
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("INVOKE_", "TETHER_")) and key != "CI"}
    environment.update(TETHER_PROJECT_ROOT=str(root), TETHER_NATIVE_DATA=str(data / "native"),
                       TETHER_SQL_DIR=str(REPO / "sql"), **env)
    return root, data, ports, environment
