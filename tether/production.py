"""Where the production database is: through the Cloud SQL proxy on 127.0.0.1, with credentials from the environment."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from infra.prod.settings import ProdSettings, load_prod_settings
from tether.conninfo import DatabaseAddress
from tether.errors import ConfigError
from tether.paths import stacks_dir
from tether.proxy import DEFAULT_TIMEOUT, proxy_running
from tether.proxy_cmd import LOOPBACK, validate_connection_name

INSTANCE_ENV = "TETHER_PROD_INSTANCE"
# Names of environment variables, not passwords.
PASSWORD_ENV = "TETHER_PROD_PASSWORD"  # noqa: S105
READONLY_PASSWORD_ENV = "TETHER_PROD_READONLY_PASSWORD"  # noqa: S105
# Migrations need an administrator, never the application role (see sql/0001_roles.sql).
ADMIN_USER_ENV = "TETHER_PROD_ADMIN_USER"
ADMIN_PASSWORD_ENV = "TETHER_PROD_ADMIN_PASSWORD"  # noqa: S105
DEFAULT_ADMIN_USER = "postgres"
IAM_ENV = "TETHER_PROD_IAM"
IAM_USER_ENV = "TETHER_PROD_IAM_USER"
PRIVATE_IP_ENV = "TETHER_PROXY_PRIVATE_IP"
IMPERSONATE_ENV = "TETHER_PROXY_IMPERSONATE"
_TRUTHY = {"1", "true", "yes", "on"}


def load_production_settings() -> ProdSettings:
    """The prod stack's settings from stacks/prod/Pulumi.prod.yaml (defaults where it is silent)."""
    try:
        return load_prod_settings(stacks_dir() / "prod" / "Pulumi.prod.yaml")
    except ValueError as error:  # its message names the file, the key and the fix
        raise ConfigError(str(error)) from None


def prod_instance(settings: ProdSettings, environ: Mapping[str, str]) -> str:
    """The instance connection name: TETHER_PROD_INSTANCE, else PROJECT:REGION:INSTANCE from the prod stack."""
    override = environ.get(INSTANCE_ENV, "").strip()
    if override:
        return validate_connection_name(override)
    if not settings.gcp_project:
        raise ConfigError(
            "The prod stack names no Google Cloud project, so the Cloud SQL instance is unknown. Set "
            "tether-prod:gcpProject in stacks/prod/Pulumi.prod.yaml (or gcp:project), or set "
            f"{INSTANCE_ENV}=PROJECT:REGION:INSTANCE; `gcloud sql instances list --format='value(connectionName)'` "
            "lists the names.")
    return validate_connection_name(settings.connection_name)


def password_secret_id(settings: ProdSettings, user: str) -> str:
    """The Secret Manager secret that holds ``user``'s password: the name the prod program gives it."""
    from infra.prod.settings import password_secret_id as secret_id

    return secret_id(settings.instance_name, user)


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUTHY


def production_address(settings: ProdSettings, environ: Mapping[str, str], *, readonly: bool = False,
                       iam: bool = False, admin: bool = False) -> DatabaseAddress:
    """The production database as seen through the local proxy; the password comes from the environment.

    With IAM authentication the proxy supplies a token as the password, so none is read, and the user is
    the IAM principal (TETHER_PROD_IAM_USER).
    """
    # The hop to the proxy is loopback; the proxy itself encrypts to Cloud SQL, so libpq must not try TLS.
    options = (("sslmode", "disable"),)
    if iam:
        user = environ.get(IAM_USER_ENV, "").strip()
        if not user:
            raise ConfigError(
                f"IAM database authentication needs the database user name in {IAM_USER_ENV}: your Google account "
                "email (`gcloud config get-value account`), or for a service account its email without "
                "`.gserviceaccount.com`. The user must exist on the instance (`gcloud sql users create ... "
                "--type=cloud_iam_user`).")
        return DatabaseAddress(LOOPBACK, settings.proxy_port, settings.database, user, None, options)
    if admin:
        user, variable = environ.get(ADMIN_USER_ENV, "").strip() or DEFAULT_ADMIN_USER, ADMIN_PASSWORD_ENV
    elif readonly:
        user, variable = settings.readonly_user, READONLY_PASSWORD_ENV
    else:
        user, variable = settings.app_user, PASSWORD_ENV
    password = environ.get(variable)
    if not password:
        secret = password_secret_id(settings, user)
        project = f" --project={settings.gcp_project}" if settings.gcp_project else ""
        raise ConfigError(
            f"The production password of `{user}` is not set: export {variable} before running this. It is kept "
            f"in Secret Manager: {variable}=\"$(gcloud secrets versions access latest --secret={secret}{project})\". "
            f"Or use IAM database authentication (--iam, or {IAM_ENV}=1) and no password at all.")
    return DatabaseAddress(LOOPBACK, settings.proxy_port, settings.database, user, password, options)


@contextmanager
def production_database(readonly: bool = False, *, iam: bool | None = None, admin: bool = False,
                        timeout: float = DEFAULT_TIMEOUT) -> Iterator[DatabaseAddress]:
    """The production database for the duration of the block, through a proxy started (or reused) for it.

    ``iam=None`` follows TETHER_PROD_IAM. The proxy honours TETHER_PROXY_PRIVATE_IP and
    TETHER_PROXY_IMPERSONATE; a proxy already running for the instance is reused as it is.
    """
    environ = os.environ
    settings = load_production_settings()
    use_iam = truthy(environ.get(IAM_ENV)) if iam is None else iam
    # Resolve everything that can be missing before starting a process.
    address = production_address(settings, environ, readonly=readonly, iam=use_iam, admin=admin)
    instance = prod_instance(settings, environ)
    with proxy_running(instance, settings.proxy_port, iam=use_iam, private_ip=truthy(environ.get(PRIVATE_IP_ENV)),
                       impersonate=environ.get(IMPERSONATE_ENV) or None, timeout=timeout):
        yield address
