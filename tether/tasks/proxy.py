"""Tasks for the Cloud SQL proxy: start, stop, status, logs."""

from __future__ import annotations

import math
import os
from typing import Any

from invoke import Context, task

from tether.console import console
from tether.errors import ConfigError
from tether.proxy_cmd import DEFAULT_TIMEOUT, STOP_GRACE
from tether.tasks.boundary import config_value, domain_errors, print_json

# tether.proxy and tether.production are imported when a task runs, so every `invoke` command starts faster.


def _configured(c: Context, key: str) -> Any:
    """``proxy.<key>`` from invoke's configuration (invoke.yaml or the collection), or None."""
    return config_value(c, "proxy", key)


def _chosen(c: Context, flag_value: Any, key: str, flag: str) -> tuple[Any, str]:
    """The flag's value, else config ``proxy.<key>``; with how to name its source in an error message."""
    if flag_value is not None and flag_value != "":
        return flag_value, flag
    configured = _configured(c, key)
    if configured is not None and configured != "":
        return configured, f"The config value proxy.{key} (invoke.yaml or INVOKE_PROXY_{key.upper()})"
    return None, flag


def _number(value: Any, source: str, kind: type[int] | type[float], *, allow_zero: bool = False) -> Any:
    """``value`` as a finite ``kind`` greater than zero (or equal to it when ``allow_zero``); else a ConfigError."""
    try:
        number = None if isinstance(value, bool) else kind(value)
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        expected = f"{'a whole number' if kind is int else 'a number'} {'of 0 or more' if allow_zero else 'above 0'}"
        raise ConfigError(f"{source} must be {expected}, not {value!r}.")
    return number


def _port(value: Any, source: str) -> int:
    port: int = _number(value, source, int)
    if port > 65535:
        raise ConfigError(f"{source} must be a TCP port from 1 to 65535, not {value!r}.")
    return port


def _switch(c: Context, flag_value: bool, key: str) -> bool:
    """A boolean flag, else config ``proxy.<key>``; an INVOKE_PROXY_* variable arrives as text, so read it as such."""
    if flag_value:
        return True
    configured = _configured(c, key)
    if configured is None or isinstance(configured, bool):
        return bool(configured)
    text = str(configured).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"", "0", "false", "no", "off"}:
        return False
    raise ConfigError(f"The config value proxy.{key} (invoke.yaml or INVOKE_PROXY_{key.upper()}) must be true or "
                      f"false, not {configured!r}.")


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
    from tether.production import load_production_settings, prod_instance
    from tether.proxy import start_proxy
    from tether.proxy_cmd import validate_connection_name

    # Every flag is checked before anything starts, so a typo never launches (and then kills) a proxy.
    raw_timeout, timeout_source = _chosen(c, timeout, "timeout", "--timeout")
    wait = _number(DEFAULT_TIMEOUT if raw_timeout is None else raw_timeout, timeout_source, float)
    use_iam = _switch(c, iam, "iam")
    use_private_ip = _switch(c, private_ip, "private_ip")
    raw_port, port_source = _chosen(c, port, "port", "--port")
    chosen_port = None if raw_port is None else _port(raw_port, port_source)
    chosen_instance, _ = _chosen(c, instance, "instance", "--instance")
    settings = load_production_settings()
    status = start_proxy(
        validate_connection_name(str(chosen_instance)) if chosen_instance else prod_instance(settings, os.environ),
        settings.proxy_port if chosen_port is None else chosen_port,
        iam=use_iam,
        private_ip=use_private_ip,
        credentials_file=credentials_file or _configured(c, "credentials_file"),
        impersonate=impersonate or _configured(c, "impersonate"),
        timeout=wait,
    )
    if status.already_running:
        _say(f"Already running, nothing started. {status.summary()}")
    else:
        _say(f"Started. {status.summary()}")


@task(help={"grace": f"Seconds between SIGTERM and SIGKILL (default: {STOP_GRACE:g})"})
@domain_errors
def stop(c: Context, grace: str | None = None) -> None:
    """Stop the Cloud SQL proxy (SIGTERM, then SIGKILL after a grace period)."""
    from tether.proxy import stop_proxy

    stopped = stop_proxy(_number(STOP_GRACE if grace is None else grace, "--grace", float, allow_zero=True))
    _say(stopped.summary())


@task(help={"json": "Print one JSON document (running, ready, pid, instance, port, uptime_seconds, ...)"})
@domain_errors
def status(c: Context, json: bool = False) -> None:
    """Show whether the Cloud SQL proxy runs, for which instance and port, and whether it is ready."""
    from tether.proxy import proxy_status

    current = proxy_status()
    if json:
        print_json(current.to_dict())
    else:
        _say(current.summary())


@task(help={"lines": "How many of the last log lines to show (default: 50)"})
@domain_errors
def logs(c: Context, lines: str | None = None) -> None:
    """Show the last lines of the Cloud SQL proxy's log."""
    from tether.proxy import proxy_files, proxy_logs

    text = proxy_logs(_number(50 if lines is None else lines, "--lines", int))
    if text:
        _say(text)
    else:
        _say(f"No proxy log yet ({proxy_files().log_file}): start it with `invoke proxy.start`.")
