"""The benchmark package lives at the repository root, outside the installed ``tether`` package."""

import sys
from pathlib import Path

# `invoke` puts the directory of tasks.py on sys.path; pytest does not, so do the same here.
REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
