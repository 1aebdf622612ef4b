"""The production config as read, value by value, and its own refusals word for word (issue 21).

Mutation testing showed ``tests/pulumi/test_prod_rules.py`` checked which key a bad value is refused for, not the
sentence a person reads nor the values a good config is read into: a wrong reason, a flag read as its opposite or a
setting silently left at its default went unnoticed. Each row here is a whole result, reviewed by hand.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from infra.prod import rules
from infra.prod.config import (
    ConfigValueError,
    ProdStackConfig,
    RedisConfig,
    ReplicaConfig,
    iam_service_account_user,
    load_prod_stack_config,
    prod_stack_config,
    proxy_account_email,
    redis_connect_mode,
    shown,
)
from infra.prod.settings import ProdSettings

BASE = {"gcpProject": "acme-prod"}
PRIVATE_VPC = "projects/acme-prod/global/networks/prod-vpc"
SA = "reporting@acme-prod.iam.gserviceaccount.com"


def config_of(values: dict[str, Any]) -> ProdStackConfig:
    return prod_stack_config({**BASE, **values}.get)


DEFAULT_CONFIG = ProdStackConfig(
    settings=ProdSettings(gcp_project="acme-prod", region="europe-west1", instance_name="app-postgres-prod",
                          database="app", app_user="api_user", readonly_user="readonly", proxy_port=5434),
    postgres_version=15, edition="ENTERPRISE", tier="db-custom-1-3840", high_availability=False, disk_type="PD_SSD",
    disk_size_gb=10, disk_autoresize_limit_gb=100, data_cache=False, backup_start_time="02:00", backup_location="",
    retained_backups=14, transaction_log_retention_days=7, private_network="", maintenance_day=7, maintenance_hour=3,
    maintenance_update_track="stable", slow_query_ms=500, max_connections=0, extra_flags={}, password_min_length=16,
    iam_authentication=True, iam_users=(), iam_service_accounts=(), proxy_account_id="tether-sql-proxy",
    replica=None, redis=None, enable_apis=True, labels={})

# Every key set to something other than its default, in the forms Pulumi and YAML hand over (text, floats, JSON).
EVERY_KEY = {
    "gcpProject": "example.com:acme-prod", "region": "us-central1", "instanceName": "crm-db", "databaseName": "crm",
    "appUser": "crm_api", "readonlyUser": "crm_read", "proxyPort": 6543, "postgresVersion": "16",
    "edition": "enterprise_plus", "tier": "db-perf-optimized-N-4", "highAvailability": "yes", "diskType": "pd_ssd",
    "diskSizeGb": "50", "diskAutoresizeLimitGb": 500.0, "dataCache": "on", "backupStartTime": " 04:30 ",
    "backupLocation": "eu", "retainedBackups": 30, "transactionLogRetentionDays": 14, "privateNetwork": PRIVATE_VPC,
    "maintenanceDay": 2, "maintenanceHour": 5, "maintenanceUpdateTrack": "canary", "slowQueryMs": -1,
    "maxConnections": 400, "databaseFlags": '{"work_mem": 8192, "log_lock_waits": true, "random_page_cost": 1.0}',
    "passwordMinLength": 20, "iamAuthentication": "1", "iamUsers": "ana@example.com, bo@example.com",
    "iamServiceAccounts": ["reporting@acme-prod.example.com.iam.gserviceaccount.com"],
    "proxyServiceAccountId": "crm-proxy", "replica": "true", "replicaRegion": "us-east1", "redis": True,
    "redisName": "crm-cache", "redisTier": "standard_ha", "redisMemoryGb": 5, "redisVersion": "redis_7_0",
    "enableApis": "off", "labels": {"team": "crm", "tier": 1},
}
EVERY_KEY_CONFIG = ProdStackConfig(
    settings=ProdSettings(gcp_project="example.com:acme-prod", region="us-central1", instance_name="crm-db",
                          database="crm", app_user="crm_api", readonly_user="crm_read", proxy_port=6543),
    postgres_version=16, edition="ENTERPRISE_PLUS", tier="db-perf-optimized-N-4", high_availability=True,
    disk_type="PD_SSD", disk_size_gb=50, disk_autoresize_limit_gb=500, data_cache=True, backup_start_time="04:30",
    backup_location="eu", retained_backups=30, transaction_log_retention_days=14, private_network=PRIVATE_VPC,
    maintenance_day=2, maintenance_hour=5, maintenance_update_track="canary", slow_query_ms=-1, max_connections=400,
    extra_flags={"work_mem": "8192", "log_lock_waits": "on", "random_page_cost": "1"}, password_min_length=20,
    iam_authentication=True, iam_users=("ana@example.com", "bo@example.com"),
    iam_service_accounts=("reporting@acme-prod.example.com.iam.gserviceaccount.com",), proxy_account_id="crm-proxy",
    replica=ReplicaConfig(name="crm-db-replica", region="us-east1", tier="db-perf-optimized-N-4"),
    redis=RedisConfig(name="crm-cache", tier="STANDARD_HA", memory_gb=5, version="REDIS_7_0", network=PRIVATE_VPC,
                      connect_mode="PRIVATE_SERVICE_ACCESS"),
    enable_apis=False, labels={"team": "crm", "tier": "1"})


@pytest.mark.parametrize(("values", "expected"), [
    ({}, DEFAULT_CONFIG),
    # An empty value is a missing one: the engine hands unset keys over as "".
    ({key: "" for key in EVERY_KEY if key != "gcpProject"}, DEFAULT_CONFIG),
    (EVERY_KEY, EVERY_KEY_CONFIG),
], ids=["defaults", "empty-values-take-the-defaults", "every-key-set"])
def test_the_whole_config_as_read(values: dict[str, Any], expected: ProdStackConfig) -> None:
    assert config_of(values) == expected


READ = [
    # booleans, in every spelling YAML and Pulumi's text use
    *[({"highAvailability": text}, "high_availability", True) for text in ("true", "True", "YES", "on", "1", " 1 ")],
    *[({"highAvailability": text}, "high_availability", False) for text in ("false", "No", "off", "0", False)],
    ({"highAvailability": True}, "high_availability", True),
    ({"iamAuthentication": "false"}, "iam_authentication", False),
    # lists: JSON text, comma-separated text, blank items dropped, items stripped
    ({"iamUsers": '["ana@example.com", " bo@example.com "]'}, "iam_users", ("ana@example.com", "bo@example.com")),
    ({"iamUsers": " ana@example.com ,, bo@example.com , "}, "iam_users", ("ana@example.com", "bo@example.com")),
    ({"iamUsers": ["", " ana@example.com"]}, "iam_users", ("ana@example.com",)),
    # flag values are written as Cloud SQL takes them
    ({"databaseFlags": {"log_lock_waits": False, "work_mem": 8192.0, "random_page_cost": 1.5, "x.y": "a"}},
     "extra_flags", {"log_lock_waits": "off", "work_mem": "8192", "random_page_cost": "1.5", "x.y": "a"}),
    ({"labels": '{"team": "crm"}'}, "labels", {"team": "crm"}),
    ({"diskSizeGb": "20.0", "diskAutoresizeLimitGb": "20"}, "disk_size_gb", 20),
    # the replica: its region and tier default to the primary's
    ({"replica": True}, "replica", ReplicaConfig("app-postgres-prod-replica", "europe-west1", "db-custom-1-3840")),
    ({"replica": True, "region": "us-east1", "tier": "db-custom-2-7680", "replicaTier": "db-g1-small"}, "replica",
     ReplicaConfig("app-postgres-prod-replica", "us-east1", "db-g1-small")),
    ({"replica": False, "replicaRegion": "us-east1"}, "replica", None),
    # Memorystore: its network and how it connects
    ({"redis": True}, "redis", RedisConfig("app-redis-prod", "BASIC", 1, "REDIS_7_2", "default", "DIRECT_PEERING")),
    ({"redis": True, "redisNetwork": "redis-vpc", "privateNetwork": PRIVATE_VPC, "redisConnectMode": "direct_peering"},
     "redis", RedisConfig("app-redis-prod", "BASIC", 1, "REDIS_7_2", "redis-vpc", "DIRECT_PEERING")),
    ({"redis": True, "redisNetwork": "prod-vpc", "privateNetwork": PRIVATE_VPC}, "redis",
     RedisConfig("app-redis-prod", "BASIC", 1, "REDIS_7_2", "prod-vpc", "PRIVATE_SERVICE_ACCESS")),
    ({"redis": True, "redisNetwork": "other-vpc", "privateNetwork": PRIVATE_VPC}, "redis",
     RedisConfig("app-redis-prod", "BASIC", 1, "REDIS_7_2", "other-vpc", "DIRECT_PEERING")),
    ({"redis": True, "redisConnectMode": "private_service_access"}, "redis",
     RedisConfig("app-redis-prod", "BASIC", 1, "REDIS_7_2", "default", "PRIVATE_SERVICE_ACCESS")),
    ({"redis": "off", "redisName": "Not Checked"}, "redis", None),
]


# Plain ASCII ids: mutmut selects tests again by node id, and one holding an escaped non-ASCII character is then not
# found (pytest exits 4, which mutmut reports as a timeout: a mutant counted as killed that no test judged).
@pytest.mark.parametrize(("values", "field", "expected"), READ, ids=[f"{row[1]}-{n}" for n, row in enumerate(READ)])
def test_values_as_read(values: dict[str, Any], field: str, expected: Any) -> None:
    assert getattr(config_of(values), field) == expected


# A refusal's message, whatever the rule: the rule's requirement and source come from RULES.
MESSAGE = ("config key tether-prod:{key} is {value}: {reason}. Rule {rule}: {requirement} (source: {source}). "
           "A value that works: {key}: {fix}")


REFUSALS = [
    ({"diskSizeGb": "twenty"}, "diskSizeGb", '"twenty"', "it is not a whole number", "whole-number", "10"),
    ({"maintenanceHour": 2.5}, "maintenanceHour", "2.5", "it is not a whole number", "whole-number", "3"),
    ({"maintenanceDay": True}, "maintenanceDay", "true", "it is not a whole number", "whole-number", "7"),
    ({"highAvailability": "maybe"}, "highAvailability", '"maybe"', "it is not a boolean", "boolean", "false"),
    ({"enableApis": 2}, "enableApis", "2", "it is not a boolean", "boolean", "true"),
    ({"iamUsers": {"a": "b"}}, "iamUsers", '{"a": "b"}', "it is not a list of strings", "string-list", "[]"),
    ({"iamServiceAccounts": '[1]'}, "iamServiceAccounts", '"[1]"', "it is not a list of strings", "string-list",
     "[]"),
    ({"labels": ["x"]}, "labels", '["x"]', "it is not a mapping", "string-map", "{}"),
    ({"edition": "standard"}, "edition", '"standard"', "it is none of ENTERPRISE, ENTERPRISE_PLUS", "edition",
     '"ENTERPRISE"'),
    ({"redis": True, "redisTier": "premium"}, "redisTier", '"premium"', "it is none of BASIC, STANDARD_HA",
     "redis-tier", '"BASIC"'),
    ({"dataCache": True}, "dataCache", "true", "data cache is an ENTERPRISE_PLUS feature", "data-cache-edition",
     "false"),
    ({"diskSizeGb": 200, "diskAutoresizeLimitGb": 100}, "diskAutoresizeLimitGb", "100",
     "it is below diskSizeGb (200)", "disk-autoresize-limit", "200"),
    ({"maintenanceDay": 9}, "maintenanceDay", "9", "9 is outside 1 to 7", "maintenance-day", "7"),
    ({"maintenanceHour": -1}, "maintenanceHour", "-1", "-1 is outside 0 to 23", "maintenance-hour", "0"),
    ({"retainedBackups": 0}, "retainedBackups", "0", "0 is outside 1 to 365", "retained-backups", "8"),
    ({"retainedBackups": 366, "transactionLogRetentionDays": 3}, "retainedBackups", "366",
     "366 is outside 1 to 365", "retained-backups", "365"),
    ({"slowQueryMs": 2147483648}, "slowQueryMs", "2147483648", "2147483648 is outside -1 to 2147483647",
     "slow-query-ms", "2147483647"),
    ({"maxConnections": 1}, "maxConnections", "1", "1 is under 14", "max-connections", "14"),
    ({"maxConnections": 13}, "maxConnections", "13", "13 is under 14", "max-connections", "14"),
    ({"iamServiceAccounts": [SA], "iamAuthentication": "no"}, "iamAuthentication", '"no"',
     "IAM users cannot log in without it", "iam-authentication", "true"),
    ({"redis": True, "redisConnectMode": "peering"}, "redisConnectMode", '"peering"',
     "Memorystore knows no such mode", "redis-connect-mode", '""'),
    # the read-only user is not offered the app user's name
    ({"readonlyUser": "Api-User"}, "readonlyUser", '"Api-User"', "it is no plain PostgreSQL identifier", "user-name",
     '"readonly"'),
    # the replica's region is offered as the primary's
    ({"region": "us-east1", "replica": True, "replicaRegion": "mars"}, "replicaRegion", '"mars"',
     "it is no region name", "region", '"us-east1"'),
    ({"replica": True, "replicaTier": "db-custom-3-7680"}, "replicaTier", '"db-custom-3-7680"',
     "3 vCPUs is neither 1 nor an even number from 2 to 96", "custom-machine", '"db-custom-4-7680"'),
    # the project is named by its key even when it comes from gcp:project
    ({"gcpProject": "", "gcp:project": "Acme"}, "gcpProject", '"Acme"', "it is no Google Cloud project id",
     "project-id", '"my-project-123"'),
    ({"labels": {"équipe": "Données"}}, "labels", '{"équipe": "Données"}',
     "équipe: 'Données' is no Google Cloud label", "labels", "{}"),
]


@pytest.mark.parametrize(("values", "key", "value", "reason", "rule", "fix"), REFUSALS,
                         ids=[f"{row[1]}-{n}" for n, row in enumerate(REFUSALS)])
def test_refusals_word_for_word(values: dict[str, Any], key: str, value: str, reason: str, rule: str,
                                fix: str) -> None:
    with pytest.raises(ConfigValueError) as raised:
        config_of(values)
    found = rules.RULES[rule]
    assert str(raised.value) == MESSAGE.format(key=key, value=value, reason=reason, rule=rule,
                                               requirement=found.requirement, source=found.source, fix=fix)
    assert (raised.value.key, raised.value.rule) == (key, found)


@pytest.mark.parametrize(("value", "text"), [
    ("équipe", '"équipe"'), (dt.date(2026, 12, 7), '"2026-12-07"'), ({"a": [1, True, None]}, '{"a": [1, true, null]}'),
    ("", '""'),
], ids=["non-ascii", "date", "nested", "empty"])
def test_values_are_shown_as_the_stack_file_would_hold_them(value: Any, text: str) -> None:
    assert shown(value) == text


@pytest.mark.parametrize(("account_id", "project", "email"), [
    ("tether-sql-proxy", "acme-prod", "tether-sql-proxy@acme-prod.iam.gserviceaccount.com"),
    ("tether-sql-proxy", "example.com:acme-prod", "tether-sql-proxy@acme-prod.example.com.iam.gserviceaccount.com"),
])
def test_proxy_account_email(account_id: str, project: str, email: str) -> None:
    assert proxy_account_email(account_id, project) == email


@pytest.mark.parametrize(("email", "user"), [
    ("reporting@acme-prod.iam.gserviceaccount.com", "reporting@acme-prod.iam"),
    ("123-compute@developer.gserviceaccount.com", "123-compute@developer"),
    ("gserviceaccount.com@x.gserviceaccount.com", "gserviceaccount.com@x"),
])
def test_iam_service_account_user(email: str, user: str) -> None:
    assert iam_service_account_user(email) == user


@pytest.mark.parametrize(("redis_network", "private_network", "mode"), [
    ("default", "", "DIRECT_PEERING"),
    ("prod-vpc", PRIVATE_VPC, "PRIVATE_SERVICE_ACCESS"),
    ("https://www.googleapis.com/compute/v1/" + PRIVATE_VPC, "prod-vpc", "PRIVATE_SERVICE_ACCESS"),
    ("projects/other/global/networks/prod-vpc", PRIVATE_VPC, "DIRECT_PEERING"),
    ("other-vpc", PRIVATE_VPC, "DIRECT_PEERING"),
])
def test_redis_connect_mode(redis_network: str, private_network: str, mode: str) -> None:
    assert redis_connect_mode(redis_network, private_network, "acme-prod") == mode


def test_the_stack_file_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text("config:\n  tether-prod:gcpProject: acme-prod\n  tether-prod:highAvailability: true\n"
                    "  gcp:project: ignored-here\n")
    assert load_prod_stack_config(path) == ProdStackConfig(**{**vars(DEFAULT_CONFIG), "high_availability": True})
    path.write_text("config:\n  tether-prod:gcpProject: acme-prod\n  tether-prod:diskType: SSD\n")
    with pytest.raises(ValueError) as raised:
        load_prod_stack_config(path)
    rule = rules.DISK_TYPE
    assert str(raised.value) == (
        f'{path}: config key tether-prod:diskType is "SSD": it is no disk type this stack declares. Rule disk-type: '
        f'{rule.requirement} (source: {rule.source}). A value that works: diskType: "PD_SSD". Fix it '
        "(stacks/prod/Pulumi.yaml documents every key and its default) and run the command again.")


def test_a_missing_stack_file_reads_as_empty(tmp_path: Path) -> None:
    """Without a file there is no project: the refusal names the file the project belongs in."""
    path = tmp_path / "Pulumi.prod.yaml"
    with pytest.raises(ValueError) as raised:
        load_prod_stack_config(path)
    assert str(raised.value).startswith(f'{path}: config key tether-prod:gcpProject is "": the stack needs the id of '
                                        "its Google Cloud project. ")
