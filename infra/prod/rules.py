"""What Google Cloud accepts for every value the prod stack's config takes: one rule per constraint, with its source.

Pure (no Pulumi import). ``infra/prod/config.py`` reads the values and applies these rules before any cloud call;
``tests/pulumi/test_prod_rules.py`` gives every rule in ``RULES`` a valid and an invalid case. When Google changes a
limit, the rule and its source change here, nowhere else. Each check returns None when the value is fine, or a
``Refusal``: why it is wrong and a value that works, so that the error can say what to do.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# --- where the rules come from ---------------------------------------------------------------------------------
# The installed provider's docstrings are the first source (the Python SDK mirrors the Terraform provider's docs).
PROVIDER_SQL = "pulumi-gcp, gcp.sql.DatabaseInstanceSettings*Args docstrings (pulumi_gcp/sql/_inputs.py)"
PROVIDER_SQL_INSTANCE = "pulumi-gcp, gcp.sql.DatabaseInstanceArgs docstrings (pulumi_gcp/sql/database_instance.py)"
PROVIDER_SQL_SOURCE = ("terraform-provider-google, google/services/sql/resource_sql_database_instance.go "
                       "(privateNetworkLinkRegex)")
PROVIDER_REDIS = "pulumi-gcp, gcp.redis.InstanceArgs docstrings (pulumi_gcp/redis/instance.py)"
PROVIDER_ACCOUNT = "pulumi-gcp, gcp.serviceaccount.AccountArgs.account_id docstring"
PROVIDER_LABELS = "pulumi-gcp, gcp.secretmanager.SecretArgs.labels docstring (Google's label syntax)"
SQL_SETTINGS = "https://cloud.google.com/sql/docs/postgres/instance-settings"
SQL_MACHINES = "https://cloud.google.com/sql/docs/postgres/machine-series-overview"
SQL_QUOTAS = "https://cloud.google.com/sql/docs/quotas (storage up to 64 TB)"
SQL_BACKUPS = "https://cloud.google.com/sql/docs/postgres/backup-recovery/backups (retain 1 to 365)"
SQL_BACKUP_LOCATION = "https://cloud.google.com/sql/docs/postgres/backup-recovery/backing-up#locationbackups"
SQL_FLAGS = "https://cloud.google.com/sql/docs/postgres/flags"
SQL_IAM = "https://cloud.google.com/sql/docs/postgres/iam-authentication"
SQL_USERS = "https://cloud.google.com/sql/docs/postgres/users"
TF_MODULE_PR_785 = ("terraform-google-sql-db PR #785: the API answers 'backup retention should be > transaction log "
                    "retention'")
TF_MODULE_DATA_CACHE = "terraform-google-sql-db modules/postgresql/main.tf (data_cache_config only on ENTERPRISE_PLUS)"
REDIS_CREATE = ("https://cloud.google.com/memorystore/docs/redis/reference/rest/v1/projects.locations.instances/"
                "create (instanceId)")
REDIS_VERSIONS = "https://cloud.google.com/memorystore/docs/redis/supported-versions"
REDIS_TIERS = "https://cloud.google.com/memorystore/docs/redis/redis-tiers (max primary size 300 GB)"
IAM_ACCOUNT_TYPES = "https://cloud.google.com/iam/docs/service-account-types"
PROJECT_IDS = "https://cloud.google.com/resource-manager/docs/creating-managing-projects (project ID rules)"
REGIONS = "https://cloud.google.com/compute/docs/regions-zones (region and zone names)"
POSTGRES_IDENTIFIERS = ("PostgreSQL docs, 4.1.1 Identifiers (63 bytes) and CREATE ROLE (pg_ is reserved); "
                        + SQL_USERS)
TETHER = "this stack's own rule (infra/prod/config.py)"


@dataclass(frozen=True)
class Rule:
    """One constraint on config values: a stable name, what is required, and where that comes from."""

    name: str
    requirement: str
    source: str


@dataclass(frozen=True)
class Refusal:
    """Why a value breaks a rule, and a value that would work instead."""

    rule: Rule
    reason: str
    fix: Any


RULES: dict[str, Rule] = {}


def _rule(name: str, requirement: str, source: str) -> Rule:
    rule = Rule(name, requirement, source)
    RULES[name] = rule
    return rule


# --- the shapes of values (the config file's own format) -------------------------------------------------------
WHOLE_NUMBER = _rule("whole-number", "a whole number", TETHER)
BOOLEAN = _rule("boolean", "true or false", TETHER)
STRING_LIST = _rule("string-list", "a list of strings, e.g. [\"a@example.com\"]", TETHER)
STRING_MAP = _rule("string-map", "a mapping of names to values, e.g. {work_mem: \"8192\"}", TETHER)

# --- where it lives ---------------------------------------------------------------------------------------------
PROJECT_ID = _rule("project-id", "a Google Cloud project id: 6 to 30 lowercase letters, digits or hyphens, starting "
                   "with a letter and not ending with a hyphen (domain-scoped projects: DOMAIN:ID)", PROJECT_IDS)
REGION = _rule("region", "a region name such as europe-west1 (a zone such as europe-west1-b is not a region)", REGIONS)
BACKUP_LOCATION = _rule("backup-location", "empty (the nearest multi-region), a multi-region (asia, eu, us) or a "
                        "region such as europe-west1", SQL_BACKUP_LOCATION)

# --- the instance -----------------------------------------------------------------------------------------------
INSTANCE_NAME_MAX = 98
INSTANCE_NAME = _rule("instance-name", "lowercase letters, digits and hyphens, starting with a letter, at most "
                      f"{INSTANCE_NAME_MAX} characters (the read replica's name adds -replica)", SQL_SETTINGS)
# Cloud SQL runs POSTGRES_9_6 to POSTGRES_18, but the read-only user is only read-only from 14 on: it gets
# pg_read_all_data instead of Cloud SQL's default cloudsqlsuperuser membership, which lets a user write everywhere.
POSTGRES_VERSIONS = range(14, 19)
POSTGRES_VERSION = _rule("postgres-version", "a PostgreSQL major version from 14 to 18 (Cloud SQL runs older ones, "
                         "but before 14 the read-only user could not be made read-only: pg_read_all_data is new in "
                         "14, and Cloud SQL makes every other user a member of cloudsqlsuperuser)",
                         PROVIDER_SQL_INSTANCE + " (database_version); "
                         "https://cloud.google.com/sql/docs/postgres/db-versions")
EDITIONS = ("ENTERPRISE", "ENTERPRISE_PLUS")
EDITION = _rule("edition", "ENTERPRISE or ENTERPRISE_PLUS", PROVIDER_SQL + " (edition)")
# ENTERPRISE runs PostgreSQL on shared-core or custom machines only ("Postgres supports only shared-core machine
# types, and custom machine types"); the N4 series needs Hyperdisk Balanced storage, which this stack does not offer.
SHARED_CORE_TIERS = ("db-f1-micro", "db-g1-small")
TIER_ENTERPRISE = _rule("tier-enterprise", "on edition ENTERPRISE: db-f1-micro, db-g1-small or "
                        "db-custom-<vCPUs>-<memory MB>", PROVIDER_SQL + " (tier, edition)")
CUSTOM_MACHINE = _rule("custom-machine", "db-custom-N-M: N is 1 or an even number up to 96; M (MB) is a multiple of "
                       "256, at least 3840, and from 0.9 to 6.5 GB per vCPU", SQL_SETTINGS + " (Cores, Memory)")
# ENTERPRISE_PLUS runs predefined N2 machines (1 vCPU : 8 GB); the C4A series needs Hyperdisk Balanced storage.
N2_VCPUS = (2, 4, 8, 16, 32, 48, 64, 80, 96, 128)
TIER_ENTERPRISE_PLUS = _rule("tier-enterprise-plus", "on edition ENTERPRISE_PLUS: db-perf-optimized-N-<vCPUs> with "
                             + ", ".join(map(str, N2_VCPUS)) + " vCPUs", SQL_MACHINES + " (N2 machine types)")
DISK_TYPES = ("PD_SSD", "PD_HDD")
DISK_TYPE = _rule("disk-type", "PD_SSD or PD_HDD; ENTERPRISE_PLUS (N2 machines) runs on SSD only",
                  PROVIDER_SQL + " (disk_type); " + SQL_MACHINES + " (storage options)")
DISK_MIN_GB, DISK_MAX_GB = 10, 65536
DISK_SIZE = _rule("disk-size", f"{DISK_MIN_GB} to {DISK_MAX_GB} GB", PROVIDER_SQL + " (disk_size); " + SQL_QUOTAS)
DISK_LIMIT = _rule("disk-autoresize-limit", f"at least diskSizeGb and at most {DISK_MAX_GB} GB: the disk only grows "
                   "up to the limit", PROVIDER_SQL + " (disk_autoresize_limit); " + SQL_QUOTAS)
DATA_CACHE = _rule("data-cache-edition", "dataCache true needs edition ENTERPRISE_PLUS",
                   PROVIDER_SQL + " (data_cache_config); " + TF_MODULE_DATA_CACHE)
PRIVATE_NETWORK = _rule("private-network", "empty, or a VPC as projects/PROJECT/global/networks/NAME (or its "
                        "https://www.googleapis.com/compute/v1/... self link)", PROVIDER_SQL_SOURCE)
MAX_CONNECTIONS_MIN, MAX_CONNECTIONS_MAX = 14, 262143
MAX_CONNECTIONS = _rule("max-connections", f"0 (Cloud SQL's default for the tier's memory) or "
                        f"{MAX_CONNECTIONS_MIN} to {MAX_CONNECTIONS_MAX}", SQL_FLAGS + " (max_connections)")
SLOW_QUERY_MS = _rule("slow-query-ms", "-1 (off) or 0 to 2147483647 milliseconds",
                      SQL_FLAGS + " (log_min_duration_statement)")
# Flags the stack derives from other keys: a second place to set them would silently lose to one of the two.
MANAGED_FLAGS = {"cloudsql.iam_authentication": "iamAuthentication", "log_min_duration_statement": "slowQueryMs",
                 "max_connections": "maxConnections"}
MANAGED_FLAG = _rule("managed-flag", "databaseFlags may not set " + ", ".join(MANAGED_FLAGS) + ": their keys ("
                     + ", ".join(MANAGED_FLAGS.values()) + ") set them", TETHER)
FLAG_NAME = _rule("flag-name", "PostgreSQL flag names: lowercase letters, digits, underscores and dots; values not "
                  "empty", SQL_FLAGS)

# --- backups and maintenance ------------------------------------------------------------------------------------
RETAINED_BACKUPS = _rule("retained-backups", "1 to 365 automated backups", SQL_BACKUPS)
LOG_RETENTION_MAX = {"ENTERPRISE": 7, "ENTERPRISE_PLUS": 35}
LOG_RETENTION = _rule("log-retention", "1 to 7 days on ENTERPRISE, 1 to 35 on ENTERPRISE_PLUS",
                      PROVIDER_SQL + " (transaction_log_retention_days)")
BACKUPS_OVER_LOGS = _rule("backups-exceed-log-retention", "retainedBackups greater than transactionLogRetentionDays",
                          TF_MODULE_PR_785)
BACKUP_START = _rule("backup-start-time", "a UTC time as HH:MM", PROVIDER_SQL + " (backup_configuration.start_time)")
MAINTENANCE_DAY = _rule("maintenance-day", "1 (Monday) to 7 (Sunday)", PROVIDER_SQL + " (maintenance_window.day)")
MAINTENANCE_HOUR = _rule("maintenance-hour", "0 to 23 (UTC)", PROVIDER_SQL + " (maintenance_window.hour)")
UPDATE_TRACKS = ("canary", "stable", "week5")
UPDATE_TRACK = _rule("maintenance-update-track", "canary, stable or week5",
                     PROVIDER_SQL + " (maintenance_window.update_track)")

# --- users and who may log in -----------------------------------------------------------------------------------
RESERVED_DATABASES = ("postgres", "cloudsqladmin", "template0", "template1")
DATABASE_NAME = _rule("database-name", "lowercase letters, digits and underscores, starting with a letter or an "
                      "underscore, at most 63 characters, and none of " + ", ".join(RESERVED_DATABASES),
                      POSTGRES_IDENTIFIERS)
RESERVED_USERS = ("postgres", "cloudsqlsuperuser", "cloudsqladmin", "cloudsqlagent", "cloudsqliamuser",
                  "cloudsqliamserviceaccount", "cloudsqlreplica", "public")
USER_NAME = _rule("user-name", "lowercase letters, digits and underscores, starting with a letter or an underscore, "
                  "at most 63 characters, not starting with pg_, none of Cloud SQL's own roles (postgres, "
                  "cloudsqlsuperuser...), and appUser and readonlyUser apart", POSTGRES_IDENTIFIERS)
PASSWORD_MIN, PASSWORD_MAX = 8, 64
PASSWORD_MIN_LENGTH = _rule("password-min-length", f"{PASSWORD_MIN} to {PASSWORD_MAX} characters (Cloud SQL takes "
                            "any length; the generated passwords are at least this long)",
                            TETHER + "; " + PROVIDER_SQL + " (password_validation_policy.min_length)")
IAM_USER = _rule("iam-user-email", "people's Google account emails (NAME@DOMAIN); service accounts go in "
                 "iamServiceAccounts", SQL_IAM)
SERVICE_ACCOUNT = _rule("service-account-email", "service account emails: NAME@PROJECT.iam.gserviceaccount.com "
                        "(user-managed), PROJECT_NUMBER-compute@developer.gserviceaccount.com (Compute Engine "
                        "default) or PROJECT_ID@appspot.gserviceaccount.com (App Engine default)", IAM_ACCOUNT_TYPES)
IAM_DUPLICATE = _rule("iam-duplicate", "each principal once: no email twice, and not the proxy's own account (the "
                      "stack adds it)", TETHER + " (each email becomes one Cloud SQL user)")
IAM_AUTHENTICATION = _rule("iam-authentication", "iamUsers and iamServiceAccounts need iamAuthentication true "
                           "(the cloudsql.iam_authentication flag)", SQL_IAM)
ACCOUNT_ID = _rule("service-account-id", "6 to 30 lowercase letters, digits or hyphens, starting with a letter and "
                   "ending with a letter or a digit", PROVIDER_ACCOUNT)

# --- Memorystore for Redis --------------------------------------------------------------------------------------
REDIS_NAME = _rule("redis-name", "1 to 40 lowercase letters, digits or hyphens, starting with a letter and ending "
                   "with a letter or a digit", REDIS_CREATE)
REDIS_TIERS_ALLOWED = ("BASIC", "STANDARD_HA")
REDIS_TIER = _rule("redis-tier", "BASIC or STANDARD_HA", PROVIDER_REDIS + " (tier)")
REDIS_MEMORY = _rule("redis-memory", "1 to 300 GB", REDIS_TIERS)
REDIS_VERSIONS_ALLOWED = ("REDIS_3_2", "REDIS_4_0", "REDIS_5_0", "REDIS_6_X", "REDIS_7_0", "REDIS_7_2")
REDIS_VERSION = _rule("redis-version", ", ".join(REDIS_VERSIONS_ALLOWED), REDIS_VERSIONS)
REDIS_NETWORK = _rule("redis-network", "empty (privateNetwork, else the project's default VPC), a VPC name, "
                      "projects/PROJECT/global/networks/NAME or its self link",
                      PROVIDER_REDIS + " (authorized_network)")
CONNECT_MODES = ("DIRECT_PEERING", "PRIVATE_SERVICE_ACCESS")
REDIS_CONNECT_MODE = _rule("redis-connect-mode", "empty (chosen from the network Redis joins), DIRECT_PEERING or "
                           "PRIVATE_SERVICE_ACCESS", PROVIDER_REDIS + " (connect_mode)")

# --- labels -----------------------------------------------------------------------------------------------------
MAX_LABELS = 64
LABELS = _rule("labels", "keys of 1 to 63 characters starting with a lowercase letter; keys and values of lowercase "
               f"letters, digits, underscores and hyphens, values at most 63 characters; at most {MAX_LABELS} labels "
               "with the stack's own three", PROVIDER_LABELS)


# --- checks -----------------------------------------------------------------------------------------------------

# Project ids and service account ids share one shape: 6 to 30 characters, a letter first, no hyphen last.
_ID_6_30 = r"[a-z][-a-z0-9]{4,28}[a-z0-9]"
_PROJECT_ID = re.compile(rf"^(?:[a-z0-9][-a-z0-9.]*[a-z0-9]:)?{_ID_6_30}$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_ZONE = re.compile(r"^([a-z]+-[a-z]+[0-9]+)-[a-z]$")
_MULTI_REGIONS = ("asia", "eu", "us")
_INSTANCE_NAME = re.compile(r"^[a-z][-a-z0-9]*$")
_CUSTOM_TIER = re.compile(r"^db-custom-(\d+)-(\d+)$")
_N2_TIER = re.compile(r"^db-perf-optimized-N-(\d+)$")
_LEGACY_TIER = re.compile(r"^db-n1-(standard|highmem)-(\d+)$")
_NETWORK_NAME = r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"
_NETWORK_PATH = re.compile(rf"^(?:https?://.+/)?projects/([^/]+)/global/networks/({_NETWORK_NAME})$")
_BARE_NETWORK = re.compile(rf"^{_NETWORK_NAME}$")
_HH_MM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_FLAG_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
_DOMAIN_LABEL = r"[A-Za-z0-9](?:[-A-Za-z0-9]*[A-Za-z0-9])?"
_EMAIL = re.compile(rf"^[^@\s]+@{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})+$")
_ACCOUNT_ID = re.compile(rf"^{_ID_6_30}$")
# NAME@PROJECT.iam..., or NAME@PROJECT.DOMAIN.iam... for a domain-scoped DOMAIN:PROJECT
_USER_MANAGED_ACCOUNT = re.compile(
    rf"^{_ID_6_30}@{_ID_6_30}(?:\.[a-z0-9][-a-z0-9.]*[a-z0-9])?\.iam\.gserviceaccount\.com$")
_COMPUTE_DEFAULT_ACCOUNT = re.compile(r"^\d+-compute@developer\.gserviceaccount\.com$")
_APP_ENGINE_DEFAULT_ACCOUNT = re.compile(rf"^{_ID_6_30}@appspot\.gserviceaccount\.com$")
SERVICE_ACCOUNT_DOMAIN = ".gserviceaccount.com"
_REDIS_NAME = re.compile(r"^[a-z](?:[-a-z0-9]{0,38}[a-z0-9])?$")


def _slug(text: str, allowed: str = "a-z0-9-") -> str:
    """``text`` lowercased with every run of characters outside ``allowed`` turned into one hyphen."""
    return re.sub(rf"[^{allowed}]+", "-", text.lower()).strip("-")


def check_project_id(project: str) -> Refusal | None:
    if _PROJECT_ID.match(project):
        return None
    slug = _slug(project)
    fix = slug if _PROJECT_ID.match(slug) else "my-project-123"
    return Refusal(PROJECT_ID, "it is no Google Cloud project id" if project
                   else "the stack needs the id of its Google Cloud project", fix)


def check_region(region: str, default: str = "europe-west1") -> Refusal | None:
    if _REGION.match(region):
        return None
    zone = _ZONE.match(region)
    if zone:
        return Refusal(REGION, f"{region} is a zone; its region is {zone.group(1)}", zone.group(1))
    return Refusal(REGION, "it is no region name", default)


def check_backup_location(location: str) -> Refusal | None:
    if not location or location in _MULTI_REGIONS or _REGION.match(location):
        return None
    zone = _ZONE.match(location)
    return Refusal(BACKUP_LOCATION, "it is neither a region nor a multi-region", zone.group(1) if zone else "")


def check_instance_name(name: str, with_replica: bool) -> Refusal | None:
    longest = len(name) + (len("-replica") if with_replica else 0)
    if _INSTANCE_NAME.match(name) and longest <= INSTANCE_NAME_MAX:
        return None
    slug = _slug(name)
    if not slug or not slug[0].isalpha():
        slug = f"pg-{slug}".strip("-")
    fix = slug[:INSTANCE_NAME_MAX - (len("-replica") if with_replica else 0)].rstrip("-")
    # A name too long on its own is not blamed on a replica the stack does not declare.
    reason = ((f"with -replica it has {longest} characters" if with_replica else f"it has {longest} characters")
              if _INSTANCE_NAME.match(name) else "it holds characters Cloud SQL does not take in an instance id")
    return Refusal(INSTANCE_NAME, reason, fix)


def check_tier(tier: str, edition: str) -> Refusal | None:
    """The tier is one Cloud SQL runs PostgreSQL on, in ``edition`` (ENTERPRISE or ENTERPRISE_PLUS)."""
    return _enterprise_plus_tier(tier) if edition == "ENTERPRISE_PLUS" else _enterprise_tier(tier)


def _enterprise_tier(tier: str) -> Refusal | None:
    if tier in SHARED_CORE_TIERS:
        return None
    custom = _CUSTOM_TIER.match(tier)
    if custom:
        return check_custom_machine(int(custom.group(1)), int(custom.group(2)))
    n2 = _N2_TIER.match(tier)
    if n2:
        vcpus = min(int(n2.group(1)), 96)
        return Refusal(TIER_ENTERPRISE, f"{tier} needs edition ENTERPRISE_PLUS (set edition ENTERPRISE_PLUS, or "
                       "take the ENTERPRISE machine closest to it)", _custom_tier(vcpus, 6656 * vcpus))
    legacy = _LEGACY_TIER.match(tier)
    if legacy:  # Cloud SQL for PostgreSQL never ran the n1 machine types: their custom equivalent
        vcpus = _custom_vcpus(int(legacy.group(2)))
        per_vcpu = 3840 if legacy.group(1) == "standard" else 6656
        return Refusal(TIER_ENTERPRISE, "PostgreSQL runs only shared-core and custom machine types",
                       _custom_tier(vcpus, per_vcpu * vcpus))
    return Refusal(TIER_ENTERPRISE, "it is no Cloud SQL for PostgreSQL machine type", "db-custom-1-3840")


def check_custom_machine(vcpus: int, memory_mb: int) -> Refusal | None:
    problems = []
    if not (vcpus == 1 or (vcpus % 2 == 0 and 2 <= vcpus <= 96)):
        problems.append(f"{vcpus} vCPUs is neither 1 nor an even number from 2 to 96")
    if memory_mb % 256:
        problems.append(f"{memory_mb} MB is no multiple of 256")
    if memory_mb < 3840:
        problems.append(f"{memory_mb} MB is under 3840 MB")
    if memory_mb * 10 < 9216 * vcpus:  # 0.9 GB = 921.6 MB per vCPU, in whole numbers
        problems.append(f"{memory_mb} MB is under 0.9 GB per vCPU")
    if memory_mb > 6656 * vcpus:
        problems.append(f"{memory_mb} MB is over 6.5 GB per vCPU")
    if not problems:
        return None
    fixed = _custom_vcpus(vcpus)
    return Refusal(CUSTOM_MACHINE, "; ".join(problems), _custom_tier(fixed, memory_mb))


def _custom_vcpus(vcpus: int) -> int:
    return 1 if vcpus <= 1 else min(96, vcpus + vcpus % 2)


def _custom_tier(vcpus: int, memory_mb: int) -> str:
    """The valid custom machine with ``vcpus`` whose memory is closest to ``memory_mb``."""
    low = max(3840, 256 * math.ceil(921.6 * vcpus / 256))
    high = 6656 * vcpus
    rounded = 256 * round(memory_mb / 256)
    return f"db-custom-{vcpus}-{min(max(rounded, low), high)}"


def _enterprise_plus_tier(tier: str) -> Refusal | None:
    n2 = _N2_TIER.match(tier)
    if n2 and int(n2.group(1)) in N2_VCPUS:
        return None
    wanted = 2
    custom = _CUSTOM_TIER.match(tier)
    if n2 or custom:
        wanted = int((n2 or custom).group(1))  # type: ignore[union-attr]
    fix = f"db-perf-optimized-N-{next((v for v in N2_VCPUS if v >= wanted), N2_VCPUS[-1])}"
    if n2:
        return Refusal(TIER_ENTERPRISE_PLUS, f"N2 machines come with {', '.join(map(str, N2_VCPUS))} vCPUs", fix)
    if tier.startswith(("db-c4a-", "db-n4-")):
        return Refusal(TIER_ENTERPRISE_PLUS, "C4A and N4 machines need Hyperdisk Balanced storage, which this stack "
                       "does not declare", fix)
    if custom or tier in SHARED_CORE_TIERS:
        return Refusal(TIER_ENTERPRISE_PLUS, f"{tier} runs only on edition ENTERPRISE (set edition ENTERPRISE, or "
                       "take the ENTERPRISE_PLUS machine closest to it)", fix)
    return Refusal(TIER_ENTERPRISE_PLUS, "it is no Cloud SQL for PostgreSQL machine type", fix)


def check_disk_type(disk_type: str, edition: str) -> Refusal | None:
    if disk_type not in DISK_TYPES:
        return Refusal(DISK_TYPE, "it is no disk type this stack declares", "PD_SSD")
    if edition == "ENTERPRISE_PLUS" and disk_type != "PD_SSD":
        return Refusal(DISK_TYPE, "ENTERPRISE_PLUS machines run on SSD only", "PD_SSD")
    return None


def check_private_network(network: str, project: str) -> Refusal | None:
    if not network or _NETWORK_PATH.match(network):
        return None
    if _BARE_NETWORK.match(network):
        return Refusal(PRIVATE_NETWORK, "Cloud SQL needs the VPC's path, not a bare name",
                       f"projects/{project.rpartition(':')[2]}/global/networks/{network}")
    return Refusal(PRIVATE_NETWORK, "it is no VPC network path", "")


def network_identity(network: str, project: str) -> tuple[str, str]:
    """(project, name) of a VPC given as a name, a projects/... path or a self link; names belong to ``project``."""
    path = _NETWORK_PATH.match(network)
    return (path.group(1), path.group(2)) if path else (project, network)


def check_redis_network(network: str) -> Refusal | None:
    if not network or _BARE_NETWORK.match(network) or _NETWORK_PATH.match(network):
        return None
    return Refusal(REDIS_NETWORK, "it is neither a VPC name nor a VPC path", "default")


def check_flags(flags: Mapping[str, str]) -> Refusal | None:
    for name, value in flags.items():
        if name in MANAGED_FLAGS:
            rest = {key: item for key, item in flags.items() if key != name}
            return Refusal(MANAGED_FLAG, f"{name} is set by {MANAGED_FLAGS[name]}: set that key instead", rest)
        if not _FLAG_NAME.match(name) or value == "":
            rest = {key: item for key, item in flags.items() if key != name}
            return Refusal(FLAG_NAME, f"{name!r} = {value!r} is no flag setting", rest)
    return None


def check_backups_over_logs(retained_backups: int, log_days: int) -> Refusal | None:
    if retained_backups > log_days:
        return None
    return Refusal(BACKUPS_OVER_LOGS, f"Cloud SQL refuses to keep no more backups than days of transaction logs "
                   f"(transactionLogRetentionDays is {log_days}): raise retainedBackups, or lower "
                   "transactionLogRetentionDays", log_days + 1)


def check_backup_start(start: str) -> Refusal | None:
    return None if _HH_MM.match(start) else Refusal(BACKUP_START, "it is no HH:MM time", "02:00")


def check_update_track(track: str) -> Refusal | None:
    if track in UPDATE_TRACKS:
        return None
    fix = track.lower() if track.lower() in UPDATE_TRACKS else "stable"
    return Refusal(UPDATE_TRACK, "Cloud SQL knows no such update track", fix)


def check_database_name(name: str) -> Refusal | None:
    if _IDENTIFIER.match(name) and name not in RESERVED_DATABASES:
        return None
    if name in RESERVED_DATABASES:
        return Refusal(DATABASE_NAME, f"{name} is Cloud SQL's own database", "app")
    # An empty slug is no identifier either: "app" is offered below.
    fix = _slug(name, "a-z0-9_").replace("-", "_")[:63]
    return Refusal(DATABASE_NAME, "it is no plain PostgreSQL identifier",
                   fix if _IDENTIFIER.match(fix) and fix not in RESERVED_DATABASES else "app")


def check_user_name(name: str, other: str, default: str) -> Refusal | None:
    if name == other:
        return Refusal(USER_NAME, f"appUser and readonlyUser are both {name}", default if default != other
                       else f"{name}_2"[:63])
    if _IDENTIFIER.match(name) and not name.startswith("pg_") and name not in RESERVED_USERS:
        return None
    if name.startswith("pg_") or name in RESERVED_USERS:
        return Refusal(USER_NAME, f"{name} is a role PostgreSQL or Cloud SQL reserves", default)
    fix = _slug(name, "a-z0-9_").replace("-", "_")[:63]
    return Refusal(USER_NAME, "it is no plain PostgreSQL identifier",
                   fix if _IDENTIFIER.match(fix) and fix not in (other, *RESERVED_USERS) else default)


def is_service_account(email: str) -> bool:
    return email.endswith(SERVICE_ACCOUNT_DOMAIN)


def check_iam_users(emails: tuple[str, ...]) -> Refusal | None:
    for email in emails:
        if is_service_account(email):
            return Refusal(IAM_USER, f"{email} is a service account: move it to iamServiceAccounts",
                           [item for item in emails if item != email])
        if not _EMAIL.match(email):
            return Refusal(IAM_USER, f"{email} is no email address", [item for item in emails if item != email])
    return _check_unique("iamUsers", emails)


def check_service_accounts(emails: tuple[str, ...], proxy_email: str) -> Refusal | None:
    for email in emails:
        if _USER_MANAGED_ACCOUNT.match(email) or _COMPUTE_DEFAULT_ACCOUNT.match(email) \
                or _APP_ENGINE_DEFAULT_ACCOUNT.match(email):
            continue
        rest = [item for item in emails if item != email]
        local, _, domain = email.partition("@")
        candidate = f"{local}@{domain}.iam{SERVICE_ACCOUNT_DOMAIN}"
        if domain and "." not in domain and _USER_MANAGED_ACCOUNT.match(candidate):
            return Refusal(SERVICE_ACCOUNT, f"{email} misses its domain", [*rest, candidate])
        if not is_service_account(email) and _EMAIL.match(email):
            return Refusal(SERVICE_ACCOUNT, f"{email} is a person's account: move it to iamUsers", rest)
        return Refusal(SERVICE_ACCOUNT, f"{email} is no service account email", rest)
    if proxy_email in emails:
        return Refusal(IAM_DUPLICATE, f"{proxy_email} is the proxy's account, which the stack already adds",
                       [item for item in emails if item != proxy_email])
    return _check_unique("iamServiceAccounts", emails)


def _check_unique(key: str, emails: tuple[str, ...]) -> Refusal | None:
    seen = [email.lower() for email in emails]
    twice = sorted({email for email in seen if seen.count(email) > 1})
    if not twice:
        return None
    unique: list[str] = []
    for email in emails:
        if email.lower() not in {kept.lower() for kept in unique}:
            unique.append(email)
    return Refusal(IAM_DUPLICATE, f"{key} lists {', '.join(twice)} more than once", unique)


def check_account_id(account_id: str) -> Refusal | None:
    if _ACCOUNT_ID.match(account_id):
        return None
    slug = _slug(account_id)[:30].rstrip("-")
    return Refusal(ACCOUNT_ID, f"it has {len(account_id)} characters" if _slug(account_id) == account_id
                   else "it holds characters a service account id does not take",
                   slug if _ACCOUNT_ID.match(slug) else "tether-sql-proxy")


def check_redis_name(name: str) -> Refusal | None:
    if _REDIS_NAME.match(name):
        return None
    slug = _slug(name)[:40].rstrip("-")
    return Refusal(REDIS_NAME, "it is no Memorystore instance id",
                   slug if _REDIS_NAME.match(slug) else "app-redis-prod")


def check_redis_version(version: str) -> Refusal | None:
    if version in REDIS_VERSIONS_ALLOWED:
        return None
    digits = re.findall(r"\d+|x", version.lower())
    # Without digits the guess is "REDIS_", no version: the latest is offered below.
    guess = "REDIS_" + "_".join(digits[:2]).upper()
    if guess == "REDIS_6_2" or guess == "REDIS_6":
        guess = "REDIS_6_X"
    return Refusal(REDIS_VERSION, "Memorystore runs no such version",
                   guess if guess in REDIS_VERSIONS_ALLOWED else "REDIS_7_2")


def _label_text(text: str) -> bool:
    """Lowercase (or caseless) letters, digits, underscores and hyphens, at most 63 characters."""
    return len(text) <= 63 and all(ch in "_-" or ch.isdigit() or (ch.isalpha() and not ch.isupper()) for ch in text)


def check_labels(labels: Mapping[str, str], own: int) -> Refusal | None:
    for key, value in labels.items():
        if not (key and key[0].isalpha() and _label_text(key) and _label_text(value)):
            rest = {name: item for name, item in labels.items() if name != key}
            return Refusal(LABELS, f"{key}: {value!r} is no Google Cloud label", rest)
    if len(labels) + own > MAX_LABELS:
        return Refusal(LABELS, f"{len(labels)} labels and the stack's {own} exceed {MAX_LABELS}",
                       dict(list(labels.items())[:MAX_LABELS - own]))
    return None
