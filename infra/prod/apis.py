"""The Google APIs the prod stack calls: switched on first, and waited for by every resource that calls them.

On a fresh project an API that is not enabled answers 403 SERVICE_DISABLED, so a resource created in parallel
with the ``gcp.projects.Service`` that enables its API fails. Each resource therefore depends on the Service of
the API it calls (``ApiServices.on``), not merely on "the stack's APIs" somewhere upstream.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_gcp as gcp

from infra.prod.config import ProdStackConfig

SQL_ADMIN = "sqladmin.googleapis.com"  # instances, databases, users; also what the Cloud SQL proxy calls
SECRET_MANAGER = "secretmanager.googleapis.com"  # noqa: S105 - an API name; it stores the passwords
IAM = "iam.googleapis.com"  # the proxy's service account
RESOURCE_MANAGER = "cloudresourcemanager.googleapis.com"  # project IAM policy: the role grants
SERVICE_NETWORKING = "servicenetworking.googleapis.com"  # private services access (private IP, Redis PSA)
REDIS = "redis.googleapis.com"  # Memorystore for Redis


def required_apis(config: ProdStackConfig) -> tuple[str, ...]:
    """The Google APIs the stack's resources need switched on in the project."""
    apis = [SQL_ADMIN, SECRET_MANAGER, IAM, RESOURCE_MANAGER]
    if config.needs_private_services_access:
        apis.append(SERVICE_NETWORKING)
    if config.redis is not None:
        apis.append(REDIS)
    return tuple(apis)


class ProjectApis(pulumi.ComponentResource):
    """Switches on the APIs the stack uses; never switches them off (other workloads may rely on them)."""

    def __init__(self, name: str, project: str, apis: tuple[str, ...],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("tether:prod:ProjectApis", name, None, opts)
        self.services: dict[str, gcp.projects.Service] = {
            api: gcp.projects.Service(f"{name}-{api.split('.', 1)[0]}", project=project, service=api,
                                      disable_on_destroy=False, opts=pulumi.ResourceOptions(parent=self))
            for api in apis
        }
        self.register_outputs({"apis": list(apis)})


class ApiServices:
    """The Service resources a resource must wait for, by API; none when the stack leaves APIs alone."""

    def __init__(self, services: Mapping[str, pulumi.Resource] | None = None) -> None:
        self._services = dict(services or {})

    @property
    def managed(self) -> bool:
        return bool(self._services)

    def on(self, *apis: str) -> list[pulumi.Resource]:
        """``depends_on`` for a resource calling ``apis``; an API the stack did not enable is a bug here."""
        if not self._services:  # enableApis false: the project's owner switched them on
            return []
        missing = [api for api in apis if api not in self._services]
        if missing:
            raise KeyError(f"the stack calls {', '.join(missing)} without enabling it: add it to required_apis")
        return [self._services[api] for api in apis]
