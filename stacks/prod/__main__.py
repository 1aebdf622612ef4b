"""The prod stack's program: a hardened Cloud SQL for PostgreSQL instance, declared in infra/prod/."""

import sys
from pathlib import Path

# The Pulumi CLI runs this file from stacks/prod; the repository root makes `infra` importable even
# when the project is not installed in the interpreter Pulumi picked.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from infra.prod.stack import main

main()
