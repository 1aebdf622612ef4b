"""Every setting of the prod stack read from one lookup, checked against Google's rules, with its default.

No Pulumi import: the Pulumi program passes a lookup over ``pulumi.Config``; the invoke tasks read the stack file
through ``load_prod_stack_config`` and refuse a bad value before any cloud call; tests pass a dict's ``get``. Values
may arrive as YAML types or as the strings Pulumi hands over ("true", "7", '["a@b.c"]'). Each key is documented in
``stacks/prod/Pulumi.yaml``; the rules themselves, with their sources, live in ``infra/prod/rules.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.prod import rules
from infra.prod.rules import Refusal, Rule
from infra.prod.settings import PROJECT_NAME, ProdSettings, prod_settings, read_prod_stack_file
from infra.stackfile import with_fix_hint

Lookup = Callable[[str], Any]

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
    "dataCache": False,
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
    "redisConnectMode": "",
    "enableApis": True,
    "labels": {},
}

# The labels the stack puts on everything (``stack_labels`` adds the configured ones).
OWN_LABELS = {"app": "tether", "stack": "prod", "managed-by": "pulumi"}


class ConfigValueError(ValueError):
    """A config key holds a value the stack or Google Cloud cannot use.

    The message is one paragraph naming the key, the value, the rule (with its source) and a value that works;
    ``key``, ``value``, ``rule`` and ``fix`` carry the same for code.
    """

    def __init__(self, key: str, value: Any, refusal: Refusal) -> None:
        self.key, self.value, self.rule, self.fix = key, value, refusal.rule, refusal.fix
        super().__init__(
            f"config key {PROJECT_NAME}:{key} is {shown(value)}: {refusal.reason}. Rule {refusal.rule.name}: "
            f"{refusal.rule.requirement} (source: {refusal.rule.source}). "
            f"A value that works: {key}: {shown(refusal.fix)}")


def shown(value: Any) -> str:
    """A value as it would be written in the stack file (JSON is YAML too)."""
    return json.dumps(value, ensure_ascii=False, default=str)


@dataclass(frozen=True)
class _Reader:
    lookup: Lookup

    def raw(self, key: str) -> Any:
        value = self.lookup(key)
        return DEFAULTS[key] if value is None or value == "" else value

    def text(self, key: str) -> str:
        return str(self.raw(key)).strip()

    def refuse(self, key: str, refusal: Refusal | None) -> None:
        if refusal is not None:
            raise ConfigValueError(key, self.raw(key), refusal)

    def integer(self, key: str, rule: Rule, low: int, high: int,
                suggest: Callable[[int], int] | None = None) -> int:
        """A whole number from ``low`` to ``high``; ``suggest`` turns a bad one into one that works."""
        raw = self.raw(key)
        number = _number(raw)
        if number is None:
            raise ConfigValueError(key, raw, Refusal(rules.WHOLE_NUMBER, "it is not a whole number", DEFAULTS[key]))
        if not low <= number <= high:
            clamped = min(max(int(number), low), high)
            self.refuse(key, Refusal(rule, f"{int(number)} is outside {low} to {high}",
                                     suggest(int(number)) if suggest else clamped))
        return int(number)

    def flag(self, key: str) -> bool:
        raw = self.raw(key)
        if isinstance(raw, bool):
            return raw
        if str(raw).strip().lower() in {"true", "yes", "on", "1"}:
            return True
        if str(raw).strip().lower() in {"false", "no", "off", "0"}:
            return False
        raise ConfigValueError(key, raw, Refusal(rules.BOOLEAN, "it is not a boolean", DEFAULTS[key]))

    def choice(self, key: str, rule: Rule, choices: tuple[str, ...]) -> str:
        value = self.text(key).upper()
        if value not in choices:
            self.refuse(key, Refusal(rule, "it is none of " + ", ".join(choices), DEFAULTS[key]))
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
            self.refuse(key, Refusal(rules.STRING_LIST, "it is not a list of strings", DEFAULTS[key]))
        return tuple(item.strip() for item in value if item.strip())

    def mapping(self, key: str) -> dict[str, str]:
        value = self._structured(key)
        if not isinstance(value, dict):
            self.refuse(key, Refusal(rules.STRING_MAP, "it is not a mapping", DEFAULTS[key]))
        return {str(name): _flag_text(item) for name, item in value.items()}


def _number(raw: Any) -> float | None:
    """``raw`` as a whole number (Pulumi may hand numbers over as strings or floats), else None."""
    if isinstance(raw, bool):  # YAML's `yes` is no number, though Python would count it as 1
        return None
    try:
        number = float(raw)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number.is_integer() else None


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
    network: str  # VPC the instance is reachable from (name, projects/... path or self link)
    connect_mode: str  # DIRECT_PEERING or PRIVATE_SERVICE_ACCESS, for the network above


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
    data_cache: bool
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

    @property
    def needs_private_services_access(self) -> bool:
        """Cloud SQL on a private IP, or Redis through private services access, need servicenetworking."""
        return bool(self.private_network) or (self.redis is not None
                                               and self.redis.connect_mode == "PRIVATE_SERVICE_ACCESS")


def iam_service_account_user(email: str) -> str:
    """The PostgreSQL user name Cloud SQL gives an IAM service account: its email minus the domain suffix."""
    return email.removesuffix(rules.SERVICE_ACCOUNT_DOMAIN)


def proxy_account_email(account_id: str, project: str) -> str:
    """The email Google gives a user-managed service account (a domain-scoped DOMAIN:ID becomes ID.DOMAIN)."""
    domain, _, project_id = project.rpartition(":")
    return f"{account_id}@{project_id}{'.' + domain if domain else ''}.iam{rules.SERVICE_ACCOUNT_DOMAIN}"


def load_prod_stack_config(path: Path) -> ProdStackConfig:
    """The whole prod config as ``stacks/prod/Pulumi.prod.yaml`` declares it, checked by every rule.

    Any problem is a ``ValueError`` whose one-paragraph message names the file, the key, the rule and a value
    that works, so the tasks can refuse a preview or a deploy before Pulumi or Google is called.
    """
    try:
        values = read_prod_stack_file(path) if path.exists() else {}
        return prod_stack_config(values.get)
    except ValueError as error:
        raise with_fix_hint(path, error, "stacks/prod/Pulumi.yaml") from None


def prod_stack_config(lookup: Lookup) -> ProdStackConfig:
    """Read and check every prod key (missing keys take ``DEFAULTS``); raise ``ConfigValueError`` on bad ones."""
    read = _Reader(lookup)
    settings = prod_settings(lookup)
    project = settings.gcp_project
    refusal = rules.check_project_id(project)
    if refusal is not None:  # the value may come from gcp:project, so name it rather than the key's raw value
        raise ConfigValueError("gcpProject", project, refusal)
    read.refuse("region", rules.check_region(settings.region))
    replica = read.flag("replica")
    read.refuse("instanceName", rules.check_instance_name(settings.instance_name, with_replica=replica))
    read.refuse("databaseName", rules.check_database_name(settings.database))
    read.refuse("appUser", rules.check_user_name(settings.app_user, settings.readonly_user, "api_user"))
    read.refuse("readonlyUser", rules.check_user_name(settings.readonly_user, settings.app_user, "readonly"))
    edition = read.choice("edition", rules.EDITION, rules.EDITIONS)
    tier = read.text("tier")
    read.refuse("tier", rules.check_tier(tier, edition))
    data_cache = read.flag("dataCache")
    if data_cache and edition != "ENTERPRISE_PLUS":
        read.refuse("dataCache", Refusal(rules.DATA_CACHE, "data cache is an ENTERPRISE_PLUS feature", False))
    disk_type = read.text("diskType").upper()
    read.refuse("diskType", rules.check_disk_type(disk_type, edition))
    disk_size = read.integer("diskSizeGb", rules.DISK_SIZE, rules.DISK_MIN_GB, rules.DISK_MAX_GB)
    disk_limit = read.integer("diskAutoresizeLimitGb", rules.DISK_LIMIT, rules.DISK_MIN_GB, rules.DISK_MAX_GB)
    if disk_limit < disk_size:
        read.refuse("diskAutoresizeLimitGb", Refusal(rules.DISK_LIMIT, f"it is below diskSizeGb ({disk_size})",
                                                     disk_size))
    backup_start = read.text("backupStartTime")
    read.refuse("backupStartTime", rules.check_backup_start(backup_start))
    backup_location = read.text("backupLocation")
    read.refuse("backupLocation", rules.check_backup_location(backup_location))
    max_log_days = rules.LOG_RETENTION_MAX[edition]
    log_days = read.integer("transactionLogRetentionDays", rules.LOG_RETENTION, 1, max_log_days)
    retained_backups = read.integer("retainedBackups", rules.RETAINED_BACKUPS, 1, 365,
                                    suggest=lambda wanted: min(max(wanted, log_days + 1), 365))
    read.refuse("retainedBackups", rules.check_backups_over_logs(retained_backups, log_days))
    private_network = read.text("privateNetwork")
    read.refuse("privateNetwork", rules.check_private_network(private_network, project))
    track = read.text("maintenanceUpdateTrack")
    read.refuse("maintenanceUpdateTrack", rules.check_update_track(track))
    max_connections = read.integer("maxConnections", rules.MAX_CONNECTIONS, 0, rules.MAX_CONNECTIONS_MAX)
    if 0 < max_connections < rules.MAX_CONNECTIONS_MIN:
        read.refuse("maxConnections", Refusal(rules.MAX_CONNECTIONS, f"{max_connections} is under "
                                              f"{rules.MAX_CONNECTIONS_MIN}", rules.MAX_CONNECTIONS_MIN))
    extra_flags = read.mapping("databaseFlags")
    read.refuse("databaseFlags", rules.check_flags(extra_flags))
    account_id = read.text("proxyServiceAccountId")
    read.refuse("proxyServiceAccountId", rules.check_account_id(account_id))
    iam_users = read.strings("iamUsers")
    read.refuse("iamUsers", rules.check_iam_users(iam_users))
    iam_service_accounts = read.strings("iamServiceAccounts")
    read.refuse("iamServiceAccounts", rules.check_service_accounts(
        iam_service_accounts, proxy_account_email(account_id, project)))
    iam_authentication = read.flag("iamAuthentication")
    if (iam_users or iam_service_accounts) and not iam_authentication:
        read.refuse("iamAuthentication", Refusal(rules.IAM_AUTHENTICATION, "IAM users cannot log in without it",
                                                 True))
    labels = read.mapping("labels")
    read.refuse("labels", rules.check_labels(labels, len(OWN_LABELS)))
    return ProdStackConfig(
        settings=settings,
        postgres_version=read.integer("postgresVersion", rules.POSTGRES_VERSION, rules.POSTGRES_VERSIONS.start,
                                      rules.POSTGRES_VERSIONS.stop - 1),
        edition=edition,
        tier=tier,
        high_availability=read.flag("highAvailability"),
        disk_type=disk_type,
        disk_size_gb=disk_size,
        disk_autoresize_limit_gb=disk_limit,
        data_cache=data_cache,
        backup_start_time=backup_start,
        backup_location=backup_location,
        retained_backups=retained_backups,
        transaction_log_retention_days=log_days,
        private_network=private_network,
        maintenance_day=read.integer("maintenanceDay", rules.MAINTENANCE_DAY, 1, 7),
        maintenance_hour=read.integer("maintenanceHour", rules.MAINTENANCE_HOUR, 0, 23),
        maintenance_update_track=track,
        slow_query_ms=read.integer("slowQueryMs", rules.SLOW_QUERY_MS, -1, 2_147_483_647),
        max_connections=max_connections,
        extra_flags=extra_flags,
        password_min_length=read.integer("passwordMinLength", rules.PASSWORD_MIN_LENGTH, rules.PASSWORD_MIN,
                                         rules.PASSWORD_MAX),
        iam_authentication=iam_authentication,
        iam_users=iam_users,
        iam_service_accounts=iam_service_accounts,
        proxy_account_id=account_id,
        replica=_replica(read, settings, tier, edition) if replica else None,
        redis=_redis(read, settings, private_network),
        enable_apis=read.flag("enableApis"),
        labels=labels,
    )


def _replica(read: _Reader, settings: ProdSettings, tier: str, edition: str) -> ReplicaConfig:
    region = read.text("replicaRegion") or settings.region
    read.refuse("replicaRegion", rules.check_region(region, settings.region))
    replica_tier = read.text("replicaTier") or tier
    read.refuse("replicaTier", rules.check_tier(replica_tier, edition))
    return ReplicaConfig(name=f"{settings.instance_name}-replica", region=region, tier=replica_tier)


def _redis(read: _Reader, settings: ProdSettings, private_network: str) -> RedisConfig | None:
    if not read.flag("redis"):
        return None
    name = read.text("redisName")
    read.refuse("redisName", rules.check_redis_name(name))
    version = read.text("redisVersion").upper()
    read.refuse("redisVersion", rules.check_redis_version(version))
    network = read.text("redisNetwork")
    read.refuse("redisNetwork", rules.check_redis_network(network))
    network = network or private_network or "default"
    explicit_mode = read.text("redisConnectMode").upper()
    if explicit_mode and explicit_mode not in rules.CONNECT_MODES:
        read.refuse("redisConnectMode", Refusal(rules.REDIS_CONNECT_MODE, "Memorystore knows no such mode", ""))
    return RedisConfig(
        name=name,
        tier=read.choice("redisTier", rules.REDIS_TIER, rules.REDIS_TIERS_ALLOWED),
        memory_gb=read.integer("redisMemoryGb", rules.REDIS_MEMORY, 1, 300),
        version=version,
        network=network,
        connect_mode=explicit_mode or redis_connect_mode(network, private_network, settings.gcp_project),
    )


def redis_connect_mode(redis_network: str, private_network: str, project: str) -> str:
    """Private services access when Redis joins the VPC Cloud SQL already reaches that way, else direct peering.

    Private services access needs a servicenetworking connection on the VPC; the stack can only count on one
    where Cloud SQL's private IP needs it too. Any other VPC gets Memorystore's default, direct peering.
    """
    if private_network and (rules.network_identity(redis_network, project)
                            == rules.network_identity(private_network, project)):
        return "PRIVATE_SERVICE_ACCESS"
    return "DIRECT_PEERING"
