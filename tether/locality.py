"""Whether a database is this machine's own server: the one question every write guard asks.

A loopback host is not enough: production reached through the Cloud SQL proxy also lives on 127.0.0.1,
at the proxy's port. So an address is local only when its host is loopback (or a unix socket) and its
port is not a proxy port (the prod stack's `proxyPort`, or the port of a proxy this project started).
"""

from __future__ import annotations

import json
import os
from contextlib import suppress

from tether.conninfo import DatabaseAddress, is_local_host

PROXY_PORTS_ENV = "TETHER_PROXY_PORTS"  # extra ports (comma-separated) that front remote databases


def proxy_ports() -> set[int]:
    """Every local port known to lead to a remote database."""
    from tether.paths import project_root

    ports: set[int] = set()
    with suppress(Exception):  # an unreadable prod stack file must not make a remote look local: see below
        from infra.prod.settings import load_prod_settings

        ports.add(load_prod_settings(project_root() / "stacks" / "prod" / "Pulumi.prod.yaml").proxy_port)
    if not ports:
        from infra.prod.settings import DEFAULTS

        ports.add(int(DEFAULTS["proxyPort"]))
    with suppress(OSError, ValueError, KeyError, TypeError):
        state = json.loads((project_root() / ".runtime" / "proxy" / "proxy.json").read_text())
        ports.add(int(state["port"]))
    for raw in os.environ.get(PROXY_PORTS_ENV, "").split(","):
        if raw.strip().isdigit():
            ports.add(int(raw))
    return ports


def is_local_database(address: DatabaseAddress) -> bool:
    """True only for a server on this machine that is not a proxy to somewhere else."""
    if not is_local_host(address.host):
        return False
    return address.host.startswith("/") or address.port not in proxy_ports()
