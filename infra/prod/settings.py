"""The values of the prod stack that the invoke tasks need too (instance, database, users, proxy port).

Pure: no Pulumi import, so `invoke proxy.start` or `invoke env` can read them without loading Pulumi.
The Pulumi program reads the rest of its configuration in ``infra/prod/config.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.stackfile import read_config, with_fix_hint

PROJECT_NAME = "tether-prod"
STACK_NAME = "prod"

DEFAULTS: Mapping[str, Any] = {
    "gcpProject": "",  # required for a real deploy; falls back to gcp:project
    "region": "europe-west1",
    "instanceName": "app-postgres-prod",
    "databaseName": "app",
    "appUser": "api_user",
    "readonlyUser": "readonly",
    "proxyPort": 5434,
}


@dataclass(frozen=True)
class ProdSettings:
    gcp_project: str
    region: str
    instance_name: str
    database: str
    app_user: str
    readonly_user: str
    proxy_port: int

    @property
    def connection_name(self) -> str:
        """PROJECT:REGION:INSTANCE, as the Cloud SQL proxy and the /cloudsql/ socket name it."""
        return f"{self.gcp_project or 'PROJECT'}:{self.region}:{self.instance_name}"

    @property
    def socket_dir(self) -> str:
        return f"/cloudsql/{self.connection_name}"


def prod_settings(lookup: Callable[[str], Any]) -> ProdSettings:
    """The settings the tasks need from a config lookup (missing keys take ``DEFAULTS``); ValueError on bad ones."""
    def value(key: str) -> Any:
        found = lookup(key)
        return DEFAULTS[key] if found is None or found == "" else found

    return ProdSettings(
        gcp_project=str(value("gcpProject") or lookup("gcp:project") or ""),
        region=str(value("region")),
        instance_name=str(value("instanceName")),
        database=str(value("databaseName")),
        app_user=str(value("appUser")),
        readonly_user=str(value("readonlyUser")),
        proxy_port=_port("proxyPort", value("proxyPort")),
    )


def _port(key: str, raw: Any) -> int:
    port = 0
    if not isinstance(raw, bool):  # YAML's `yes` is not a number, though Python would count it as 1
        with suppress(TypeError, ValueError, OverflowError):
            port = int(float(raw))  # Pulumi config may hand numbers over as strings or floats
    if not 1 <= port <= 65535:
        raise ValueError(f"config key {PROJECT_NAME}:{key} must be a port number from 1 to 65535, got {raw!r}")
    return port


def read_prod_stack_file(path: Path) -> dict[str, Any]:
    """The ``config:`` mapping of the prod stack file; keys of this project lose their ``tether-prod:`` prefix.

    A file that is not YAML, or not shaped like a stack file, is a ``ValueError`` naming the file.
    """
    values: dict[str, Any] = {}
    for key, raw in read_config(path, PROJECT_NAME).items():
        if not isinstance(key, str) or isinstance(raw, dict):  # `secure:` values are Pulumi's to decrypt
            continue
        short = key.split(":", 1)[1] if key.startswith(f"{PROJECT_NAME}:") else key
        values[short] = raw
    return values


def load_prod_settings(path: Path) -> ProdSettings:
    """The prod stack's settings as ``stacks/prod/Pulumi.prod.yaml`` declares them.

    Any problem is a ``ValueError`` whose message names the file and the key and says what to do, so
    a caller can pass it on as it is.
    """
    try:
        values = read_prod_stack_file(path) if path.exists() else {}
        return prod_settings(values.get)
    except ValueError as error:
        raise with_fix_hint(path, error, "stacks/prod/Pulumi.yaml") from None


def password_secret_id(instance_name: str, user: str) -> str:
    """The Secret Manager id that holds ``user``'s password (letters, digits, ``-`` and ``_`` only).

    Here, without Pulumi, so the tasks can name the secret the prod program creates.
    """
    return f"{instance_name}-{user}-password".replace(".", "-")
