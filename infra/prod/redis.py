"""Production Redis on Memorystore: AUTH on, TLS in transit, RDB snapshots, the AUTH string in Secret Manager."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.prod.apis import REDIS, SECRET_MANAGER, SERVICE_NETWORKING, ApiServices
from infra.prod.cloudsql import stack_labels
from infra.prod.config import ProdStackConfig, RedisConfig

TRANSIT_ENCRYPTION = "SERVER_AUTHENTICATION"
_WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")


def maintenance_day(day: int) -> str:
    """Cloud SQL numbers days 1 (Monday) to 7; Memorystore names them."""
    return _WEEKDAYS[day - 1]


class MemorystoreRedis(pulumi.ComponentResource):
    """A Memorystore for Redis instance reachable only from the VPC, with its AUTH string in Secret Manager."""

    def __init__(self, name: str, config: ProdStackConfig, redis: RedisConfig, apis: ApiServices,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("tether:prod:MemorystoreRedis", name, None, opts)
        project = config.settings.gcp_project or None
        # The connect mode follows the VPC Redis joins (config.redis_connect_mode), not Cloud SQL's.
        redis_apis = (REDIS, SERVICE_NETWORKING) if redis.connect_mode == "PRIVATE_SERVICE_ACCESS" else (REDIS,)
        self.instance = gcp.redis.Instance(
            f"{name}-instance",
            name=redis.name,
            project=project,
            region=config.settings.region,
            tier=redis.tier,
            memory_size_gb=redis.memory_gb,
            redis_version=redis.version,
            authorized_network=redis.network,
            connect_mode=redis.connect_mode,
            auth_enabled=True,
            transit_encryption_mode=TRANSIT_ENCRYPTION,
            persistence_config=gcp.redis.InstancePersistenceConfigArgs(
                persistence_mode="RDB", rdb_snapshot_period="TWELVE_HOURS"),
            maintenance_policy=gcp.redis.InstanceMaintenancePolicyArgs(
                weekly_maintenance_windows=[gcp.redis.InstanceMaintenancePolicyWeeklyMaintenanceWindowArgs(
                    day=maintenance_day(config.maintenance_day),
                    start_time=gcp.redis.InstanceMaintenancePolicyWeeklyMaintenanceWindowStartTimeArgs(
                        hours=config.maintenance_hour, minutes=0),
                )],
            ),
            labels=stack_labels(config),
            # Its name, tier, network, connect mode, region and TLS mode each force a new instance (an empty
            # cache, a new host and AUTH string): protected like the SQL instance, so Pulumi refuses instead.
            opts=pulumi.ResourceOptions(parent=self, protect=True, depends_on=apis.on(*redis_apis)),
        )
        self.auth_secret = gcp.secretmanager.Secret(
            f"{name}-auth-secret",
            secret_id=f"{redis.name}-auth",
            project=project,
            replication=gcp.secretmanager.SecretReplicationArgs(auto=gcp.secretmanager.SecretReplicationAutoArgs()),
            labels=stack_labels(config),
            opts=pulumi.ResourceOptions(parent=self, depends_on=apis.on(SECRET_MANAGER)),
        )
        gcp.secretmanager.SecretVersion(
            f"{name}-auth-version",
            secret=self.auth_secret.id,
            secret_data=self.instance.auth_string,
            opts=pulumi.ResourceOptions(parent=self, depends_on=apis.on(SECRET_MANAGER)),
        )
        self.host = self.instance.host
        self.port = self.instance.port
        # Clients verify the server with this CA (transit encryption is server-authenticated TLS).
        self.ca_certificate = self.instance.server_ca_certs.apply(
            lambda certs: (certs[0].cert or "") if certs else "")
        self.register_outputs({"host": self.host, "port": self.port, "authSecret": self.auth_secret.secret_id})
