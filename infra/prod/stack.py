"""The prod stack assembled from its components, and the outputs the tasks and the team read."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_gcp as gcp

from infra.prod.access import DatabaseAccess
from infra.prod.cloudsql import CloudSqlPostgres
from infra.prod.config import ProdStackConfig, prod_stack_config
from infra.prod.redis import MemorystoreRedis
from infra.prod.settings import PROJECT_NAME

BASE_APIS = ("sqladmin.googleapis.com", "secretmanager.googleapis.com", "iam.googleapis.com",
             "cloudresourcemanager.googleapis.com")


def required_apis(config: ProdStackConfig) -> tuple[str, ...]:
    """The Google APIs the stack's resources need switched on in the project."""
    apis = list(BASE_APIS)
    if config.needs_private_services_access:
        apis.append("servicenetworking.googleapis.com")
    if config.redis is not None:
        apis.append("redis.googleapis.com")
    return tuple(apis)


class ProjectApis(pulumi.ComponentResource):
    """Switches on the APIs the stack uses; never switches them off (other workloads may rely on them)."""

    def __init__(self, name: str, project: str, apis: tuple[str, ...],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("tether:prod:ProjectApis", name, None, opts)
        self.services = [
            gcp.projects.Service(f"{name}-{api.split('.', 1)[0]}", project=project, service=api,
                                 disable_on_destroy=False, opts=pulumi.ResourceOptions(parent=self))
            for api in apis
        ]
        self.register_outputs({"apis": list(apis)})


def build_prod_stack(config: ProdStackConfig) -> dict[str, Any]:
    """Declare every prod resource and return the stack outputs (no password among them)."""
    settings = config.settings  # prod_stack_config has checked every rule, the project id among them
    depends_on: list[pulumi.Resource] = []
    if config.enable_apis:
        depends_on.append(ProjectApis("apis", settings.gcp_project, required_apis(config)))
    postgres = CloudSqlPostgres("postgres", config, depends_on=depends_on)
    instance_names = [settings.instance_name] + ([config.replica.name] if config.replica else [])
    access = DatabaseAccess("access", config, postgres.instance, instance_names)
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
        redis = MemorystoreRedis("redis", config, config.redis, depends_on=depends_on)
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
