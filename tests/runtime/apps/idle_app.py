"""An app holding one idle connection per target it has used, until the file named by argv[1] appears.

It prints ``ready`` once connected; `invoke target` must list it with its pid.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tether.runtime.pool import TargetPool

stop_file = Path(sys.argv[1])
with TargetPool(min_size=1, max_size=1) as pool:
    with pool.connection() as connection:
        connection.execute("SELECT 1")
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not stop_file.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
