"""Every setting of the prod stack read from one lookup, checked, with its default (no Pulumi import).

The Pulumi program passes a lookup over ``pulumi.Config``; tests pass a dict's ``get``. Values may
arrive as YAML types or as the strings Pulumi hands over ("true", "7", '["a@b.c"]'). Each key is
documented in ``stacks/prod/Pulumi.yaml``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.prod.settings import PROJECT_NAME, ProdSettings, prod_settings

Lookup = Callable[[str], Any]

EDITIONS = ("ENTERPRISE", "ENTERPRISE_PLUS")
REDIS_TIERS = ("BASIC", "STANDARD_HA")
DISK_TYPES = ("PD_SSD", "PD_HDD")

# The smallest dedicated-core machine: 1 vCPU and 3.75 GB. Cloud SQL derives max_connections from
# memory and gives 3.75-6 GB exactly 100; shared_buffers defaults to a third of memory (~1.25 GB),
# so a 1 GB working set stays cached. The shared-core tiers (db-f1-micro, db-g1-small) allow only
# 25/50 connections and carry no SLA.
DEFAULT_TIER = "db-custom-1-3840"

DEFAULTS: Mapping[str, Any] = {
    "postgresVersion": 15,
    # Explicit because the API's default edition depends on the major version (ENTERPRISE_PLUS for 16+),
    # and ENTERPRISE_PLUS does not accept db-custom-* tiers.
    "edition": "ENTERPRISE",
    "tier": DEFAULT_TIER,
    "highAvailability": False,
    "diskType": "PD_SSD",
    "diskSizeGb": 10,
    "diskAutoresizeLimitGb": 100,
    "backupStartTime": "02:00",
    "backupLocation": "",
    "retainedBackups": 14,
    "transactionLogRetentionDays": 7,
    "privateNetwork": "",
    "maintenanceDay": 7,
    "maintenanceHour": 3,
    "maintenanceUpdateTrack": "stable",
    "slowQueryMs": 500,
    "maxConnections": 0,
    "databaseFlags": {},
    "passwordMinLength": 16,
    "iamAuthentication": True,
    "iamUsers": [],
    "iamServiceAccounts": [],
    "proxyServiceAccountId": "tether-sql-proxy",
    "replica": False,
    "replicaRegion": "",
    "replicaTier": "",
    "redis": False,
    "redisName": "app-redis-prod",
    "redisTier": "BASIC",
    "redisMemoryGb": 1,
    "redisVersion": "REDIS_7_2",
    "redisNetwork": "",
    "enableApis": True,
    "labels": {},
}

_ACCOUNT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_INSTANCE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,96}[a-z0-9]$")
_HH_MM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_SERVICE_ACCOUNT_SUFFIX = ".gserviceaccount.com"


class ConfigValueError(ValueError):
    """A config key holds a value the stack cannot use; the message names the key."""


def _problem(key: str, expected: str, raw: Any) -> ConfigValueError:
    return ConfigValueError(f"config key {PROJECT_NAME}:{key} must be {expected}, got {raw!r}")


@dataclass(frozen=True)
class _Reader:
    lookup: Lookup

    def raw(self, key: str) -> Any:
        value = self.lookup(key)
        return DEFAULTS[key] if value is None or value == "" else value

    def text(self, key: str) -> str:
        return str(self.raw(key)).strip()

    def integer(self, key: str, low: int, high: int) -> int:
        raw = self.raw(key)
        try:
            number = float(raw)  # Pulumi may hand numbers over as strings or floats
        except (TypeError, ValueError):
            raise _problem(key, "a whole number", raw) from None
        if isinstance(raw, bool) or number != int(number) or not low <= number <= high:
            raise _problem(key, f"a whole number from {low} to {high}", raw)
        return int(number)

    def flag(self, key: str) -> bool:
        raw = self.raw(key)
        if isinstance(raw, bool):
            return raw
        if str(raw).strip().lower() in {"true", "yes", "on", "1"}:
            return True
        if str(raw).strip().lower() in {"false", "no", "off", "0"}:
            return False
        raise _problem(key, "true or false", raw)

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.text(key).upper()
        if value not in choices:
            raise _problem(key, "one of " + ", ".join(choices), self.raw(key))
        return value

    def _structured(self, key: str) -> Any:
        raw = self.raw(key)
        if isinstance(raw, str):  # pulumi.Config.get returns structured values as JSON text
            try:
                return json.loads(raw)
            except ValueError:
                return [part.strip() for part in raw.split(",") if part.strip()]
        return raw

    def strings(self, key: str) -> tuple[str, ...]:
        value = self._structured(key)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise _problem(key, "a list of strings", self.raw(key))
        return tuple(item.strip() for item in value if item.strip())

    def mapping(self, key: str) -> dict[str, str]:
        value = self._structured(key)
        if not isinstance(value, dict):
            raise _problem(key, "a mapping of names to values", self.raw(key))
        return {str(name): _flag_text(item) for name, item in value.items()}


def _flag_text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class RedisConfig:
    """The optional Memorystore instance."""

    name: str
    tier: str
    memory_gb: int
    version: str
    network: str  # VPC the instance is reachable from (self link, id or name)


@dataclass(frozen=True)
class ReplicaConfig:
    """The optional cross- or same-region read replica."""

    name: str
    region: str
    tier: str


@dataclass(frozen=True)
class ProdStackConfig:
    """Everything the prod program declares, checked once."""

    settings: ProdSettings
    postgres_version: int
    edition: str
    tier: str
    high_availability: bool
    disk_type: str
    disk_size_gb: int
    disk_autoresize_limit_gb: int
    backup_start_time: str
    backup_location: str
    retained_backups: int
    transaction_log_retention_days: int
    private_network: str
    maintenance_day: int
    maintenance_hour: int
    maintenance_update_track: str
    slow_query_ms: int
    max_connections: int  # 0: Cloud SQL's default for the tier's memory
    extra_flags: dict[str, str]
    password_min_length: int
    iam_authentication: bool
    iam_users: tuple[str, ...]
    iam_service_accounts: tuple[str, ...]
    proxy_account_id: str
    replica: ReplicaConfig | None
    redis: RedisConfig | None
    enable_apis: bool
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def database_version(self) -> str:
        return f"POSTGRES_{self.postgres_version}"

    @property
    def availability_type(self) -> str:
        return "REGIONAL" if self.high_availability else "ZONAL"

    @property
    def public_ip(self) -> bool:
        """Public IP only without a private network; it never has authorized networks (proxy only)."""
        return not self.private_network


def iam_service_account_user(email: str) -> str:
    """The PostgreSQL user name Cloud SQL gives an IAM service account: its email minus the domain suffix."""
    return email.removesuffix(_SERVICE_ACCOUNT_SUFFIX)


def prod_stack_config(lookup: Lookup) -> ProdStackConfig:
    """Read and check every prod key (missing keys take ``DEFAULTS``); raise ``ConfigValueError`` on bad ones."""
    read = _Reader(lookup)
    settings = prod_settings(lookup)
    if not _INSTANCE_NAME.match(settings.instance_name):
        raise _problem("instanceName", "lowercase letters, digits and hyphens, starting with a letter",
                       settings.instance_name)
    edition = read.choice("edition", EDITIONS)
    tier = read.text("tier")
    _check_tier(tier, edition, "tier")
    max_log_days = 35 if edition == "ENTERPRISE_PLUS" else 7
    disk_size = read.integer("diskSizeGb", 10, 65536)
    disk_limit = read.integer("diskAutoresizeLimitGb", 10, 65536)
    if disk_limit < disk_size:
        raise ConfigValueError(f"config key {PROJECT_NAME}:diskAutoresizeLimitGb ({disk_limit}) must be at least "
                               f"diskSizeGb ({disk_size}): the disk only grows up to the limit")
    backup_start = read.text("backupStartTime")
    if not _HH_MM.match(backup_start):
        raise _problem("backupStartTime", "a UTC time as HH:MM", backup_start)
    account_id = read.text("proxyServiceAccountId")
    if not _ACCOUNT_ID.match(account_id):
        raise _problem("proxyServiceAccountId", "6-30 lowercase letters, digits or hyphens, starting with a letter",
                       account_id)
    iam_users = read.strings("iamUsers")
    for email in iam_users:
        if "@" not in email or email.endswith(_SERVICE_ACCOUNT_SUFFIX):
            raise _problem("iamUsers", "people's Google account emails (service accounts go in iamServiceAccounts)",
                           email)
    iam_service_accounts = read.strings("iamServiceAccounts")
    for email in iam_service_accounts:
        if not email.endswith(".iam" + _SERVICE_ACCOUNT_SUFFIX):
            raise _problem("iamServiceAccounts", "service account emails (NAME@PROJECT.iam.gserviceaccount.com)", email)
    iam_authentication = read.flag("iamAuthentication")
    if (iam_users or iam_service_accounts) and not iam_authentication:
        raise ConfigValueError(f"config keys {PROJECT_NAME}:iamUsers/iamServiceAccounts need "
                               f"{PROJECT_NAME}:iamAuthentication true: IAM users cannot log in without it")
    private_network = read.text("privateNetwork")
    return ProdStackConfig(
        settings=settings,
        postgres_version=read.integer("postgresVersion", 12, 18),
        edition=edition,
        tier=tier,
        high_availability=read.flag("highAvailability"),
        disk_type=read.choice("diskType", DISK_TYPES),
        disk_size_gb=disk_size,
        disk_autoresize_limit_gb=disk_limit,
        backup_start_time=backup_start,
        backup_location=read.text("backupLocation"),
        retained_backups=read.integer("retainedBackups", 1, 365),
        transaction_log_retention_days=read.integer("transactionLogRetentionDays", 1, max_log_days),
        private_network=private_network,
        maintenance_day=read.integer("maintenanceDay", 1, 7),
        maintenance_hour=read.integer("maintenanceHour", 0, 23),
        maintenance_update_track=read.text("maintenanceUpdateTrack"),
        slow_query_ms=read.integer("slowQueryMs", -1, 3_600_000),
        max_connections=read.integer("maxConnections", 0, 262_143),
        extra_flags=read.mapping("databaseFlags"),
        password_min_length=read.integer("passwordMinLength", 8, 64),
        iam_authentication=iam_authentication,
        iam_users=iam_users,
        iam_service_accounts=iam_service_accounts,
        proxy_account_id=account_id,
        replica=_replica(read, settings, tier, edition),
        redis=_redis(read, private_network),
        enable_apis=read.flag("enableApis"),
        labels=read.mapping("labels"),
    )


def _check_tier(tier: str, edition: str, key: str) -> None:
    if not tier.startswith("db-"):
        raise _problem(key, "a Cloud SQL machine tier such as db-custom-1-3840", tier)
    if edition == "ENTERPRISE_PLUS" and not tier.startswith("db-perf-optimized-"):
        raise ConfigValueError(f"config key {PROJECT_NAME}:{key} is {tier!r}, but edition ENTERPRISE_PLUS only "
                               "runs db-perf-optimized-N-* tiers: pick one, or set edition ENTERPRISE")


def _replica(read: _Reader, settings: ProdSettings, tier: str, edition: str) -> ReplicaConfig | None:
    if not read.flag("replica"):
        return None
    replica_tier = read.text("replicaTier") or tier
    _check_tier(replica_tier, edition, "replicaTier")
    return ReplicaConfig(name=f"{settings.instance_name}-replica",
                         region=read.text("replicaRegion") or settings.region, tier=replica_tier)


def _redis(read: _Reader, private_network: str) -> RedisConfig | None:
    if not read.flag("redis"):
        return None
    version = read.text("redisVersion").upper()
    if not re.match(r"^REDIS_\d+(_\d+)?$", version):
        raise _problem("redisVersion", "a Memorystore version such as REDIS_7_2", version)
    return RedisConfig(
        name=read.text("redisName"),
        tier=read.choice("redisTier", REDIS_TIERS),
        memory_gb=read.integer("redisMemoryGb", 1, 300),
        version=version,
        network=read.text("redisNetwork") or private_network or "default",
    )
