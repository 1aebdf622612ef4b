"""Whether a server is this machine's own: the one question every write guard asks.

A loopback host is not enough: production reached through the Cloud SQL proxy also lives on 127.0.0.1,
at the proxy's port. So a server is local only when its host is loopback (or a unix socket) and its
port is not a proxy port (the prod stack's `proxyPort`, or the port of a proxy this project started).

This module knows hosts and ports only; ``tether.conninfo`` builds on it (``DatabaseAddress.is_local``).
"""

from __future__ import annotations

import ipaddress
import json
import os
from contextlib import suppress

LOCAL_HOST_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
PROXY_PORTS_ENV = "TETHER_PROXY_PORTS"  # extra ports (comma-separated) that front remote databases


def is_local_host(host: str) -> bool:
    """True for unix sockets, loopback addresses and localhost names: the only places we write freely."""
    if not host or host.startswith("/"):
        return True
    if host.lower() in LOCAL_HOST_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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


def is_local_server(host: str, port: int) -> bool:
    """True only for a server on this machine that is not a proxy to somewhere else."""
    if not is_local_host(host):
        return False
    return host.startswith("/") or port not in proxy_ports()
