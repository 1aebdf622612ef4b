"""The values of the prod stack that the invoke tasks need too (instance, database, users, proxy port).

Pure: no Pulumi import, so `invoke proxy.start` or `invoke env` can read them without loading Pulumi.
The Pulumi program reads the rest of its configuration in ``infra/prod/config.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        proxy_port=int(float(value("proxyPort"))),
    )


def read_prod_stack_file(path: Path) -> dict[str, Any]:
    import yaml

    document = yaml.safe_load(path.read_text()) or {}
    values: dict[str, Any] = {}
    for key, raw in (document.get("config") or {}).items():
        if isinstance(raw, dict):  # `secure:` values are Pulumi's to decrypt
            continue
        short = key.split(":", 1)[1] if key.startswith(f"{PROJECT_NAME}:") else key
        values[short] = raw
    return values


def load_prod_settings(path: Path) -> ProdSettings:
    values = read_prod_stack_file(path) if path.exists() else {}
    return prod_settings(values.get)


def password_secret_id(instance_name: str, user: str) -> str:
    """The Secret Manager id that holds ``user``'s password (letters, digits, ``-`` and ``_`` only).

    Here, without Pulumi, so the tasks can name the secret the prod program creates.
    """
    return f"{instance_name}-{user}-password".replace(".", "-")
