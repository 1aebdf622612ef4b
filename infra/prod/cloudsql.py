"""The hardened Cloud SQL for PostgreSQL instance with its database, users and their Secret Manager secrets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from infra.prod.apis import SECRET_MANAGER, SERVICE_NETWORKING, SQL_ADMIN, ApiServices
from infra.prod.config import OWN_LABELS, ProdStackConfig, ReplicaConfig
from infra.prod.settings import password_secret_id

# Only these survive a URL, a shell and YAML unescaped (RFC 3986 "unreserved"), yet they satisfy
# the instance's password complexity policy, which wants a non-alphanumeric character.
URL_SAFE_SPECIALS = "-_.~"
PASSWORD_LENGTH = 32
SSL_MODE = "ENCRYPTED_ONLY"
# Cloud SQL grows the disk on its own (disk_autoresize), so the configured size is only the first one: sending it
# again after a growth asks for a shrink, which the provider turns into a replacement (blocked by protect, so the
# instance could no longer be changed). terraform-google-sql-db ignores settings[0].disk_size on primary and
# replicas alike (modules/postgresql/main.tf, read_replica.tf); so do we.
PRIMARY_IGNORED_CHANGES = ("settings.diskSize",)
# Replicas take the primary's maintenance window, and the API reports it on them: ignore it as the module does.
# A major version upgrade of the primary upgrades its replicas in place (include_replicas_for_major_version_upgrade):
# their version then follows without a separate patch, as in the provider's own test of that upgrade.
REPLICA_IGNORED_CHANGES = ("settings.diskSize", "settings.maintenanceWindow", "databaseVersion")
READ_REPLICA_INSTANCE = "READ_REPLICA_INSTANCE"


def data_options(parent: pulumi.Resource | None, depends_on: Sequence[pulumi.Resource] = (),
                 ignore_changes: Sequence[str] = ()) -> pulumi.ResourceOptions:
    """Options for resources that hold data: ``protect`` makes Pulumi refuse to delete or replace them.

    Built here, apart from the resource, because Pulumi's mocks never see resource options.
    """
    return pulumi.ResourceOptions(parent=parent, protect=True, depends_on=list(depends_on),
                                  ignore_changes=list(ignore_changes) or None)


def primary_options(parent: pulumi.Resource | None, depends_on: Sequence[pulumi.Resource]) -> pulumi.ResourceOptions:
    """The primary holds the data: protected, and blind to the disk size Cloud SQL grows."""
    return data_options(parent, depends_on, PRIMARY_IGNORED_CHANGES)


def replica_options(parent: pulumi.Resource | None, depends_on: Sequence[pulumi.Resource]) -> pulumi.ResourceOptions:
    """A replica holds no data of its own (turning `replica` off must remove it), but its disk grows too."""
    return pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on),
                                  ignore_changes=list(REPLICA_IGNORED_CHANGES))


def password_length(min_length: int) -> int:
    """Generated passwords satisfy the instance's own policy, however long its minimum."""
    return max(PASSWORD_LENGTH, min_length)


def database_flags(config: ProdStackConfig) -> list[tuple[str, str]]:
    """The instance's PostgreSQL flags: IAM login, slow-query and operational logging, then extra flags."""
    flags: dict[str, str] = {
        "cloudsql.iam_authentication": "on" if config.iam_authentication else "off",
        # Statements slower than this are logged with their duration; -1 turns it off.
        "log_min_duration_statement": str(config.slow_query_ms),
        "log_checkpoints": "on",
        "log_lock_waits": "on",
        "log_connections": "on",
        "log_disconnections": "on",
        # Schema changes leave an audit trail in Cloud Logging; data statements do not (they may carry PII).
        "log_statement": "ddl",
        "log_temp_files": "0",
    }
    if config.max_connections:
        flags["max_connections"] = str(config.max_connections)
    flags.update(config.extra_flags)  # never the three above: config refuses them (rule managed-flag)
    return sorted(flags.items())


def ip_configuration(config: ProdStackConfig) -> gcp.sql.DatabaseInstanceSettingsIpConfigurationArgs:
    """TLS always; never an authorized network: clients come through the Cloud SQL proxy or the private IP."""
    return gcp.sql.DatabaseInstanceSettingsIpConfigurationArgs(
        ipv4_enabled=config.public_ip,
        private_network=config.private_network or None,
        ssl_mode=SSL_MODE,
        authorized_networks=[],
    )


def _common_settings(config: ProdStackConfig, tier: str, availability_type: str) -> dict[str, object]:
    """What primary and replica share. No maintenance window here: read replicas do not take one."""
    common: dict[str, object] = {
        "tier": tier,
        "edition": config.edition,
        "availability_type": availability_type,
        "disk_type": config.disk_type,
        "disk_size": config.disk_size_gb,
        "disk_autoresize": True,
        "disk_autoresize_limit": config.disk_autoresize_limit_gb,
        "ip_configuration": ip_configuration(config),
        "database_flags": [gcp.sql.DatabaseInstanceSettingsDatabaseFlagArgs(name=name, value=value)
                           for name, value in database_flags(config)],
        "insights_config": gcp.sql.DatabaseInstanceSettingsInsightsConfigArgs(
            query_insights_enabled=True,
            query_string_length=1024,
            record_application_tags=True,
            record_client_address=False,
        ),
        "user_labels": stack_labels(config),
    }
    if config.edition == "ENTERPRISE_PLUS":  # the data cache block exists on ENTERPRISE_PLUS only (rules.DATA_CACHE)
        common["data_cache_config"] = gcp.sql.DatabaseInstanceSettingsDataCacheConfigArgs(
            data_cache_enabled=config.data_cache)
    return common


def primary_settings(config: ProdStackConfig) -> gcp.sql.DatabaseInstanceSettingsArgs:
    """The primary's settings: backups with point-in-time recovery, maintenance window, password policy, protection.

    REGIONAL availability needs backups and point-in-time recovery on (provider docs, availability_type): both
    are always on here, whatever the availability.
    """
    return gcp.sql.DatabaseInstanceSettingsArgs(
        **_common_settings(config, config.tier, config.availability_type),  # type: ignore[arg-type]
        deletion_protection_enabled=True,
        # Automated backups outlive the instance: deleting it by mistake is recoverable.
        retain_backups_on_delete=True,
        backup_configuration=gcp.sql.DatabaseInstanceSettingsBackupConfigurationArgs(
            enabled=True,
            point_in_time_recovery_enabled=True,
            start_time=config.backup_start_time,
            location=config.backup_location or None,
            transaction_log_retention_days=config.transaction_log_retention_days,
            backup_retention_settings=gcp.sql.DatabaseInstanceSettingsBackupConfigurationBackupRetentionSettingsArgs(
                retained_backups=config.retained_backups, retention_unit="COUNT"),
        ),
        maintenance_window=gcp.sql.DatabaseInstanceSettingsMaintenanceWindowArgs(
            day=config.maintenance_day, hour=config.maintenance_hour, update_track=config.maintenance_update_track),
        password_validation_policy=gcp.sql.DatabaseInstanceSettingsPasswordValidationPolicyArgs(
            enable_password_policy=True,
            min_length=config.password_min_length,
            complexity="COMPLEXITY_DEFAULT",
            disallow_username_substring=True,
        ),
    )


def replica_settings(config: ProdStackConfig, replica: ReplicaConfig,
                     disk_size: pulumi.Input[int] | None = None) -> gcp.sql.DatabaseInstanceSettingsArgs:
    """A read replica's settings: same network, TLS and flags; no backups, maintenance window or password policy.

    Cloud SQL refuses backups on read replicas and applies the primary's maintenance window and password policy
    to them; terraform-google-sql-db's read_replica.tf declares none of the three. ``disk_size`` is the
    primary's current one: a replica may not be smaller than its primary, whose disk has grown since it was
    created (terraform-google-sql-db#338: adding a replica then failed with the configured size).
    """
    common = _common_settings(config, replica.tier, "ZONAL")
    if disk_size is not None:
        common["disk_size"] = disk_size
    return gcp.sql.DatabaseInstanceSettingsArgs(**common)  # type: ignore[arg-type]


def stack_labels(config: ProdStackConfig) -> dict[str, str]:
    return {**OWN_LABELS, **config.labels}


def secret_id(instance_name: str, user: str) -> str:
    """The Secret Manager id of a user's password (defined in the Pulumi-free settings module)."""
    return password_secret_id(instance_name, user)


@dataclass(frozen=True)
class PasswordUser:
    """A built-in PostgreSQL user whose password lives only in Secret Manager (and encrypted in state)."""

    user: gcp.sql.User
    secret: gcp.secretmanager.Secret


class CloudSqlPostgres(pulumi.ComponentResource):
    """A Cloud SQL for PostgreSQL instance, its application database, users and optional read replica."""

    def __init__(self, name: str, config: ProdStackConfig, apis: ApiServices,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("tether:prod:CloudSqlPostgres", name, None, opts)
        settings = config.settings
        project = settings.gcp_project or None
        self._apis = apis
        instance_apis = (SQL_ADMIN, SERVICE_NETWORKING) if config.private_network else (SQL_ADMIN,)
        self.instance = gcp.sql.DatabaseInstance(
            f"{name}-instance",
            name=settings.instance_name,
            project=project,
            region=settings.region,
            database_version=config.database_version,
            deletion_protection=True,
            # Input only, read by a major version upgrade: replicas are upgraded in place with the primary, instead
            # of a separate patch each. Always set, so that turning the replica on or off changes nothing here.
            include_replicas_for_major_version_upgrade=True,
            settings=primary_settings(config),
            opts=primary_options(self, apis.on(*instance_apis)),
        )
        self.database = gcp.sql.Database(
            f"{name}-database",
            name=settings.database,
            instance=self.instance.name,
            project=project,
            charset="UTF8",
            collation="en_US.UTF8",
            # Dropping the database is never Pulumi's call, even if the resource is removed.
            deletion_policy="ABANDON",
            opts=data_options(self, apis.on(SQL_ADMIN)),
        )
        self.app = self._password_user(name, "app", settings.app_user, config, project, roles=None)
        # pg_read_all_data instead of Cloud SQL's default cloudsqlsuperuser membership (why 14 is the oldest
        # version the config accepts: rules.POSTGRES_VERSIONS).
        self.readonly = self._password_user(name, "readonly", settings.readonly_user, config, project,
                                            roles=["pg_read_all_data"])
        self.replica: gcp.sql.DatabaseInstance | None = None
        if config.replica is not None:
            # No replica_configuration: its fields serve MySQL and external primaries (failover_target is "not
            # supported for Postgres"), and each one forces a new replica when it changes.
            self.replica = gcp.sql.DatabaseInstance(
                f"{name}-replica",
                name=config.replica.name,
                project=project,
                region=config.replica.region,
                database_version=config.database_version,
                master_instance_name=self.instance.name,
                instance_type=READ_REPLICA_INSTANCE,
                deletion_protection=False,
                settings=replica_settings(config, config.replica,
                                          self.instance.settings.apply(
                                              lambda current: current.disk_size or config.disk_size_gb)),
                opts=replica_options(self, [self.database, *apis.on(*instance_apis)]),
            )
        self.connection_name = self.instance.connection_name
        self.private_ip = self.instance.private_ip_address
        self.public_ip = self.instance.public_ip_address
        self.register_outputs({
            "connectionName": self.connection_name,
            "database": self.database.name,
            "appUser": self.app.user.name,
            "readonlyUser": self.readonly.user.name,
            "appPasswordSecret": self.app.secret.secret_id,
            "readonlyPasswordSecret": self.readonly.secret.secret_id,
        })

    def _password_user(self, name: str, role: str, user: str, config: ProdStackConfig, project: str | None,
                       roles: list[str] | None) -> PasswordUser:
        # Raising passwordMinLength above 32 regenerates both passwords on the next deploy (length is part of
        # the random password's identity); the new ones reach Secret Manager as new versions of the secrets.
        password = random.RandomPassword(
            f"{name}-{role}-password",
            length=password_length(config.password_min_length),
            special=True,
            override_special=URL_SAFE_SPECIALS,
            min_lower=2, min_upper=2, min_numeric=2, min_special=2,
            opts=pulumi.ResourceOptions(parent=self),
        )
        sql_user = gcp.sql.User(
            f"{name}-{role}-user",
            name=user,
            instance=self.instance.name,
            project=project,
            type="BUILT_IN",
            password=password.result,
            database_roles=roles,
            # A PostgreSQL role that owns objects cannot be dropped through the API; leave it to SQL.
            deletion_policy="ABANDON",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.database, *self._apis.on(SQL_ADMIN)]),
        )
        secret = gcp.secretmanager.Secret(
            f"{name}-{role}-password-secret",
            secret_id=secret_id(config.settings.instance_name, user),
            project=project,
            replication=gcp.secretmanager.SecretReplicationArgs(auto=gcp.secretmanager.SecretReplicationAutoArgs()),
            labels=stack_labels(config),
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._apis.on(SECRET_MANAGER)),
        )
        gcp.secretmanager.SecretVersion(
            f"{name}-{role}-password-version",
            secret=secret.id,
            secret_data=password.result,
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._apis.on(SECRET_MANAGER)),
        )
        return PasswordUser(user=sql_user, secret=secret)
