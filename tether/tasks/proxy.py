"""Tasks for the Cloud SQL proxy: start, stop, status, logs."""

from __future__ import annotations

import os
from typing import Any

from invoke import Context, task

from tether.console import console
from tether.errors import ConfigError
from tether.production import load_production_settings, prod_instance
from tether.proxy import DEFAULT_TIMEOUT, STOP_GRACE, proxy_files, proxy_logs, proxy_status, start_proxy, stop_proxy
from tether.proxy_cmd import validate_connection_name
from tether.tasks.boundary import domain_errors, print_json


def _configured(c: Context, key: str) -> Any:
    """``proxy.<key>`` from invoke's configuration (invoke.yaml or the collection), or None."""
    section = c.config.get("proxy")
    return section.get(key) if section else None


def _number(value: Any, flag: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} must be a number, not {value!r}.") from None


def _say(text: str) -> None:
    console().print(text, markup=False, highlight=False)


@task(help={
    "port": "Local port on 127.0.0.1 (default: config proxy.port, else proxyPort of the prod stack, 5434)",
    "instance": "PROJECT:REGION:INSTANCE (default: config proxy.instance, TETHER_PROD_INSTANCE, else the prod stack)",
    "iam": "Log in with automatic IAM database authentication, no password (config proxy.iam)",
    "private_ip": "Reach the instance on its private IP; this machine must be in its VPC (config proxy.private_ip)",
    "credentials_file": "Service account JSON key to use instead of gcloud's application-default login",
    "impersonate": "Service account to impersonate (v2 proxy only; your account needs Token Creator on it)",
    "timeout": f"Seconds to wait until it is ready (default: config proxy.timeout, else {DEFAULT_TIMEOUT:g})",
})
@domain_errors
def start(c: Context, port: str | None = None, instance: str | None = None, iam: bool = False,
          private_ip: bool = False, credentials_file: str | None = None, impersonate: str | None = None,
          timeout: str | None = None) -> None:
    """Start the Cloud SQL proxy in the background and wait until it accepts connections."""
    settings = load_production_settings()
    chosen_port = port or _configured(c, "port") or settings.proxy_port
    chosen_instance = instance or _configured(c, "instance")
    status = start_proxy(
        validate_connection_name(chosen_instance) if chosen_instance else prod_instance(settings, os.environ),
        _number(chosen_port, "--port", int),
        iam=iam or bool(_configured(c, "iam")),
        private_ip=private_ip or bool(_configured(c, "private_ip")),
        credentials_file=credentials_file or _configured(c, "credentials_file"),
        impersonate=impersonate or _configured(c, "impersonate"),
        timeout=_number(timeout or _configured(c, "timeout") or DEFAULT_TIMEOUT, "--timeout", float),
    )
    if status.already_running:
        _say(f"Already running, nothing started. {status.summary()}")
    else:
        _say(f"Started. {status.summary()}")


@task(help={"grace": f"Seconds between SIGTERM and SIGKILL (default: {STOP_GRACE:g})"})
@domain_errors
def stop(c: Context, grace: str | None = None) -> None:
    """Stop the Cloud SQL proxy (SIGTERM, then SIGKILL after a grace period)."""
    stopped = stop_proxy(_number(grace if grace is not None else STOP_GRACE, "--grace", float))
    _say(stopped.summary())


@task(help={"json": "Print one JSON document (running, ready, pid, instance, port, uptime_seconds, ...)"})
@domain_errors
def status(c: Context, json: bool = False) -> None:
    """Show whether the Cloud SQL proxy runs, for which instance and port, and whether it is ready."""
    current = proxy_status()
    if json:
        print_json(current.to_dict())
    else:
        _say(current.summary())


@task(help={"lines": "How many of the last log lines to show (default: 50)"})
@domain_errors
def logs(c: Context, lines: int = 50) -> None:
    """Show the last lines of the Cloud SQL proxy's log."""
    text = proxy_logs(lines)
    if text:
        _say(text)
    else:
        _say(f"No proxy log yet ({proxy_files().log_file}): start it with `invoke proxy.start`.")
