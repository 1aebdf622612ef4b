"""The prod stack assembled from its components, and the outputs the tasks and the team read."""

from __future__ import annotations

from typing import Any

import pulumi

from infra.prod.access import DatabaseAccess
from infra.prod.apis import ApiServices, ProjectApis, required_apis
from infra.prod.cloudsql import CloudSqlPostgres
from infra.prod.config import ProdStackConfig, prod_stack_config
from infra.prod.redis import MemorystoreRedis
from infra.prod.settings import PROJECT_NAME


def build_prod_stack(config: ProdStackConfig) -> dict[str, Any]:
    """Declare every prod resource and return the stack outputs (no password among them).

    ``config`` has passed every rule of ``infra/prod/rules.py`` (``prod_stack_config`` raises otherwise).
    """
    settings = config.settings
    apis = ApiServices()
    if config.enable_apis:
        apis = ApiServices(ProjectApis("apis", settings.gcp_project, required_apis(config)).services)
    postgres = CloudSqlPostgres("postgres", config, apis)
    instance_names = [settings.instance_name] + ([config.replica.name] if config.replica else [])
    access = DatabaseAccess("access", config, postgres.instance, instance_names, apis)
    outputs: dict[str, Any] = {
        "connectionName": postgres.connection_name,
        "instanceName": postgres.instance.name,
        "region": settings.region,
        "databaseVersion": config.database_version,
        "database": postgres.database.name,
        "appUser": postgres.app.user.name,
        "readonlyUser": postgres.readonly.user.name,
        "appPasswordSecret": postgres.app.secret.secret_id,
        "readonlyPasswordSecret": postgres.readonly.secret.secret_id,
        "iamUsers": access.iam_user_names,
        "proxyServiceAccount": access.proxy_account.email,
        "proxyIamUser": access.proxy_iam_user if access.proxy_iam_user is not None else "",
        "proxyPort": settings.proxy_port,
        "privateIp": postgres.private_ip,
        "publicIp": postgres.public_ip,
    }
    if postgres.replica is not None:
        outputs["replicaConnectionName"] = postgres.replica.connection_name
    if config.redis is not None:
        redis = MemorystoreRedis("redis", config, config.redis, apis)
        outputs.update({
            "redisHost": redis.host,
            "redisPort": redis.port,
            "redisAuthSecret": redis.auth_secret.secret_id,
            "redisCaCertificate": redis.ca_certificate,
        })
    return outputs


def pulumi_config_lookup(key: str) -> Any:
    """Read ``key`` from the stack's config; ``ns:key`` reads another namespace (e.g. ``gcp:project``)."""
    namespace, _, name = key.rpartition(":")
    return pulumi.Config(namespace or PROJECT_NAME).get(name)


def main() -> None:
    """The program `pulumi up` runs: read the config, declare the stack, export its outputs."""
    try:
        outputs = build_prod_stack(prod_stack_config(pulumi_config_lookup))
    except ValueError as error:  # ConfigValueError and the settings parser alike
        # RunError ends the program with this message alone, not a traceback.
        raise pulumi.RunError(str(error)) from None
    for name, value in outputs.items():
        pulumi.export(name, value)
