"""Pure builders for the Cloud SQL proxy: its argv (v1 and v2), its environment, and reading its output."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tether.errors import ConfigError

DEFAULT_TIMEOUT = 30.0  # seconds to wait for a started proxy to accept connections
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when stopping it

V2_PROGRAM = "cloud-sql-proxy"
V1_PROGRAM = "cloud_sql_proxy"
LOOPBACK = "127.0.0.1"
# v2 logs "... is ready for new connections!", v1 "Ready for new connections": one case-insensitive marker.
READY_MARKER = "ready for new connections"
INSTALL_HINT = (
    "install the Cloud SQL Auth Proxy v2 from https://cloud.google.com/sql/docs/postgres/sql-proxy#install "
    "(a single static binary named cloud-sql-proxy; put it on PATH), or the older v1 from Debian/Ubuntu with "
    "`apt-get install cloudsql-proxy`. Set TETHER_PROXY_BINARY to use a binary that is not on PATH."
)

# Whatever the proxy does not need and must never see: database passwords travel to clients, not to it.
_SECRET_ENV = re.compile(r"PASSWORD|PASSWD|PGPASSFILE|DATABASE_URL|REDIS_URL", re.IGNORECASE)
# PROJECT:REGION:INSTANCE, where a legacy domain-scoped project looks like example.com:project.
_CONNECTION_NAME = re.compile(r"^(?:[a-z0-9.\-]+:)?[a-z][a-z0-9\-]*:[a-z0-9\-]+:[a-z0-9][a-z0-9\-]*$")


@dataclass(frozen=True)
class ProxyOptions:
    """What one proxy serves and how it authenticates; never holds a secret."""

    instance: str
    port: int
    address: str = LOOPBACK
    iam: bool = False
    private_ip: bool = False
    credentials_file: str | None = None
    impersonate: str | None = None
    health_port: int | None = None  # v2 only: serve /startup, /readiness, /liveness on 127.0.0.1


def validate_connection_name(instance: str) -> str:
    """Refuse anything but PROJECT:REGION:INSTANCE.

    v2 reads ``?address=0.0.0.0`` after the name and v1 reads ``=tcp:...`` and commas, so a name carrying
    them could rebind the proxy on every interface: such characters are rejected, not escaped.
    """
    name = instance.strip()
    if not _CONNECTION_NAME.match(name):
        raise ConfigError(
            f"{instance!r} is not a Cloud SQL instance connection name. It has the form PROJECT:REGION:INSTANCE "
            "(lower case, e.g. my-project:europe-west1:app-postgres-prod); `gcloud sql instances describe "
            "INSTANCE --format='value(connectionName)'` prints it. Set gcpProject in stacks/prod/Pulumi.prod.yaml, "
            "or pass --instance, or set TETHER_PROD_INSTANCE."
        )
    return name


def validate_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise ConfigError(f"Port {port} is not a TCP port: use a number from 1 to 65535 (the default is "
                          "proxyPort in stacks/prod/Pulumi.prod.yaml).")
    return port


def v2_argv(program: str, options: ProxyOptions) -> list[str]:
    """``cloud-sql-proxy INSTANCE --port P --address A [...]`` for the current (v2) proxy."""
    argv = [program, validate_connection_name(options.instance),
            "--port", str(validate_port(options.port)), "--address", options.address]
    if options.iam:
        argv.append("--auto-iam-authn")
    if options.private_ip:
        argv.append("--private-ip")
    if options.credentials_file:
        argv += ["--credentials-file", options.credentials_file]
    if options.impersonate:
        argv += ["--impersonate-service-account", options.impersonate]
    if options.health_port is not None:
        argv += ["--health-check", "--http-address", LOOPBACK, "--http-port", str(validate_port(options.health_port))]
    return argv


def v1_argv(program: str, options: ProxyOptions) -> list[str]:
    """``cloud_sql_proxy -instances=CONN=tcp:ADDRESS:PORT [...]`` for the legacy (v1) proxy."""
    if options.impersonate:
        raise ConfigError("The v1 proxy (cloud_sql_proxy) cannot impersonate a service account. Install the v2 "
                          "proxy (cloud-sql-proxy), or drop --impersonate and use --credentials-file with that "
                          "account's key.")
    if options.health_port is not None:
        raise ConfigError("The v1 proxy (cloud_sql_proxy) has no health-check endpoint; install the v2 proxy "
                          "(cloud-sql-proxy) to use one.")
    instance = validate_connection_name(options.instance)
    argv = [program, f"-instances={instance}=tcp:{options.address}:{validate_port(options.port)}"]
    if options.iam:
        argv.append("-enable_iam_login")
    if options.private_ip:
        argv.append("-ip_address_types=PRIVATE")
    if options.credentials_file:
        argv.append(f"-credential_file={options.credentials_file}")
    return argv


def proxy_argv(program: str, major: int, options: ProxyOptions) -> list[str]:
    return v2_argv(program, options) if major >= 2 else v1_argv(program, options)


def proxy_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The proxy's environment: ours (it needs HOME, PATH for gcloud, GOOGLE_*), minus database passwords."""
    return {key: value for key, value in environ.items() if not _SECRET_ENV.search(key)}


def parse_version_output(text: str) -> int | None:
    """The proxy's major version from its ``--version`` output, or None when it is not recognisable.

    v2 prints ``cloud-sql-proxy version 2.8.0``; v1 prints ``Cloud SQL Auth proxy: 1.33.2`` or, built by
    Debian, ``Cloud SQL Proxy: NO_VERSION_SET``.
    """
    found = re.search(r"cloud-sql-proxy version v?(\d+)\.", text)
    if found:
        return int(found.group(1))
    if re.search(r"cloud sql (auth )?proxy:", text, re.IGNORECASE):
        found = re.search(r":\s*v?(\d+)\.", text)
        return int(found.group(1)) if found else 1
    return None


def major_from_name(path: str) -> int:
    """v2 ships as ``cloud-sql-proxy`` and v1 as ``cloud_sql_proxy``: the fallback when ``--version`` says nothing."""
    return 2 if "cloud-sql-proxy" in Path(path).name else 1


def is_ready(log_text: str) -> bool:
    return READY_MARKER in log_text.lower()


@dataclass(frozen=True)
class FailureKind:
    reason: str
    advice: str


_FAILURES: tuple[tuple[re.Pattern[str], FailureKind], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), FailureKind(reason, advice)) for pattern, reason, advice in (
        (r"flag provided but not defined|unknown (shorthand )?flag",
         "unsupported-flag",
         "This proxy binary does not know one of the flags (the v1 proxy Debian packages predates "
         "-enable_iam_login): install the v2 proxy (cloud-sql-proxy) or drop that option."),
        (r"address already in use",
         "port-in-use",
         "Another program listens on that port: stop it, or choose another port with --port."),
        (r"could not find default credentials|no credentials|credentials: could not find",
         "no-credentials",
         "The proxy found no Google credentials: run `gcloud auth application-default login`, or pass "
         "--credentials-file with a service account key (or set GOOGLE_APPLICATION_CREDENTIALS)."),
        (r"private key should be|invalid_grant|unable to parse credentials|invalid character .* json"
         r"|cannot fetch token.*(40[01])",
         "bad-credentials",
         "The Google credentials were rejected: check the key file (it must be a service account JSON key "
         "that is still valid), or log in again with `gcloud auth application-default login`."),
        (r"instanceDoesNotExist|does not exist|Error 404|404 Not Found",
         "not-found",
         "The instance does not exist under that name: check PROJECT:REGION:INSTANCE with `gcloud sql "
         "instances list`, and gcpProject/region/instanceName in stacks/prod/Pulumi.prod.yaml."),
        (r"notAuthorized|not authorized|PERMISSION_DENIED|forbidden|Error 403",
         "not-authorized",
         "Your account may not connect to that instance: it needs roles/cloudsql.client on the project "
         "(and, with --iam, roles/cloudsql.instanceUser); also check that the Cloud SQL Admin API is enabled."),
        (r"no such host|dial tcp|i/o timeout|connection refused|network is unreachable|TLS handshake",
         "network",
         "The proxy could not reach Google Cloud (sqladmin.googleapis.com): check the network, proxy settings "
         "and, with --private-ip, that this machine is inside the instance's VPC."),
    )
)


@dataclass(frozen=True)
class Diagnosis:
    reason: str
    advice: str
    line: str  # the log line that told


def classify_failure(log_text: str) -> Diagnosis | None:
    """What went wrong, judged from the proxy's own log; the first matching rule wins."""
    for pattern, kind in _FAILURES:
        found = pattern.search(log_text)
        if found:
            start = log_text.rfind("\n", 0, found.start()) + 1
            end = log_text.find("\n", found.end())
            line = log_text[start:end if end >= 0 else len(log_text)].strip()
            return Diagnosis(kind.reason, kind.advice, line)
    return None


def listening_inodes(proc_net_tcp: str, port: int) -> set[int]:
    """Socket inodes listening on ``port`` in a /proc/net/tcp (or tcp6) table."""
    inodes: set[int] = set()
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != "0A":  # 0A is TCP_LISTEN
            continue
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port:
            inodes.add(int(fields[9]))
    return inodes
