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
    import yaml

    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ValueError(f"{path} cannot be read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or " ".join(str(error).split())
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ValueError(f"{path} is not valid YAML ({where}{problem})") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ValueError(f"{path} must be a YAML mapping with a `config:` section, but it holds "
                         f"{_kind(document)}")
    config = document.get("config")
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: `config:` must be a mapping of `{PROJECT_NAME}:<key>: <value>` lines, but it "
                         f"holds {_kind(config)}")
    values: dict[str, Any] = {}
    for key, raw in config.items():
        if not isinstance(key, str) or isinstance(raw, dict):  # `secure:` values are Pulumi's to decrypt
            continue
        short = key.split(":", 1)[1] if key.startswith(f"{PROJECT_NAME}:") else key
        values[short] = raw
    return values


def _kind(value: object) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), type(value).__name__)


def load_prod_settings(path: Path) -> ProdSettings:
    """The prod stack's settings as ``stacks/prod/Pulumi.prod.yaml`` declares them.

    Any problem is a ``ValueError`` whose message names the file and the key and says what to do, so
    a caller can pass it on as it is.
    """
    try:
        values = read_prod_stack_file(path) if path.exists() else {}
        return prod_settings(values.get)
    except ValueError as error:
        problem = str(error).rstrip(".")
        where = "" if problem.startswith(str(path)) else f"{path}: "
        raise ValueError(f"{where}{problem}. Fix it (stacks/prod/Pulumi.yaml documents every key and its "
                         "default) and run the command again.") from None


def password_secret_id(instance_name: str, user: str) -> str:
    """The Secret Manager id that holds ``user``'s password (letters, digits, ``-`` and ``_`` only).

    Here, without Pulumi, so the tasks can name the secret the prod program creates.
    """
    return f"{instance_name}-{user}-password".replace(".", "-")
