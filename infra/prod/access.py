"""Who may reach the instance: the proxy's service account and the IAM users, each limited to this instance."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_gcp as gcp

from infra.prod.apis import IAM, RESOURCE_MANAGER, SQL_ADMIN, ApiServices
from infra.prod.config import ProdStackConfig, iam_service_account_user

CLIENT_ROLE = "roles/cloudsql.client"
INSTANCE_USER_ROLE = "roles/cloudsql.instanceUser"


def instance_condition(project: str, instance_names: Sequence[str]) -> str:
    """A CEL expression that narrows a project-level Cloud SQL grant to the stack's own instances."""
    names = " || ".join(f"resource.name == 'projects/{project}/instances/{name}'" for name in instance_names)
    return f"({names}) && resource.type == 'sqladmin.googleapis.com/Instance'"


def member_roles(iam_authentication: bool) -> tuple[str, ...]:
    """``cloudsql.client`` lets a principal connect through the proxy; ``instanceUser`` lets it log in via IAM."""
    return (CLIENT_ROLE, INSTANCE_USER_ROLE) if iam_authentication else (CLIENT_ROLE,)


class DatabaseAccess(pulumi.ComponentResource):
    """The proxy's service account, IAM database users, and their instance-scoped role grants."""

    def __init__(self, name: str, config: ProdStackConfig, instance: gcp.sql.DatabaseInstance,
                 instance_names: Sequence[str], apis: ApiServices,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("tether:prod:DatabaseAccess", name, None, opts)
        project = config.settings.gcp_project
        self._apis = apis
        # Cloud SQL users call the SQL Admin API; the account, IAM; the grants, the project's IAM policy.
        def user_options() -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=apis.on(SQL_ADMIN))

        condition = gcp.projects.IAMMemberConditionArgs(
            title="tether-prod-instances-only",
            description="Only the Cloud SQL instances of the tether prod stack",
            expression=instance_condition(project, instance_names),
        )
        roles = member_roles(config.iam_authentication)
        self.proxy_account = gcp.serviceaccount.Account(
            f"{name}-proxy-account",
            account_id=config.proxy_account_id,
            display_name="Cloud SQL proxy (tether prod)",
            description="Runs the Cloud SQL Auth proxy in front of the tether prod instance",
            project=project,
            opts=pulumi.ResourceOptions(parent=self, depends_on=apis.on(IAM)),
        )
        self.proxy_member = self.proxy_account.email.apply(lambda email: f"serviceAccount:{email}")
        self._grant(f"{name}-proxy", self.proxy_member, roles, project, condition)
        self.proxy_iam_user: pulumi.Output[str] | None = None
        self.iam_users: list[gcp.sql.User] = []
        if config.iam_authentication:
            proxy_user = gcp.sql.User(
                f"{name}-proxy-iam-user",
                name=self.proxy_account.email.apply(iam_service_account_user),
                instance=instance.name,
                project=project,
                type="CLOUD_IAM_SERVICE_ACCOUNT",
                deletion_policy="ABANDON",
                opts=user_options(),
            )
            self.proxy_iam_user = proxy_user.name
            self.iam_users.append(proxy_user)
        for email in config.iam_users:
            self._grant(f"{name}-{email}", pulumi.Output.from_input(f"user:{email}"), roles, project, condition)
            self.iam_users.append(gcp.sql.User(
                f"{name}-{email}-iam-user", name=email, instance=instance.name, project=project,
                type="CLOUD_IAM_USER", deletion_policy="ABANDON", opts=user_options()))
        for email in config.iam_service_accounts:
            self._grant(f"{name}-{email}", pulumi.Output.from_input(f"serviceAccount:{email}"), roles, project,
                        condition)
            self.iam_users.append(gcp.sql.User(
                f"{name}-{email}-iam-user", name=iam_service_account_user(email), instance=instance.name,
                project=project, type="CLOUD_IAM_SERVICE_ACCOUNT", deletion_policy="ABANDON",
                opts=user_options()))
        self.iam_user_names = pulumi.Output.all(*[user.name for user in self.iam_users])
        self.register_outputs({
            "proxyServiceAccount": self.proxy_account.email,
            "iamUsers": self.iam_user_names,
        })

    def _grant(self, prefix: str, member: pulumi.Input[str], roles: Sequence[str], project: str,
               condition: gcp.projects.IAMMemberConditionArgs) -> None:
        for role in roles:
            gcp.projects.IAMMember(
                f"{prefix}-{role.rsplit('.', 1)[-1].lower()}",
                project=project,
                role=role,
                member=member,
                condition=condition,
                opts=pulumi.ResourceOptions(parent=self, depends_on=self._apis.on(RESOURCE_MANAGER)),
            )

