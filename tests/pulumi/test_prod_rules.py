"""Every rule of infra/prod/rules.py, table-driven: a valid and an invalid case each, and errors that say what works.

A refused value's error must name the key, the value, the rule and a value that works; the test then puts that
value in and checks the whole config passes, so a suggested fix can never be one Google would refuse too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from infra.prod import rules
from infra.prod.config import ConfigValueError, ProdStackConfig, prod_stack_config, shown
from infra.prod.settings import PROJECT_NAME

BASE = {"gcpProject": "acme-prod"}
PLUS = {"edition": "ENTERPRISE_PLUS", "tier": "db-perf-optimized-N-2"}
SA = "reporting@acme-prod.iam.gserviceaccount.com"
PRIVATE_VPC = "projects/acme-prod/global/networks/prod-vpc"


@dataclass(frozen=True)
class Case:
    rule: str
    values: dict[str, Any]
    key: str = ""  # for an invalid case: the key the error names
    fix: Any = field(default=None)  # for an invalid case, when the test pins the suggested value

    @property
    def valid(self) -> bool:
        return not self.key


def ok(rule: str, **values: Any) -> Case:
    return Case(rule, values)


def bad(rule: str, key: str, values: dict[str, Any], fix: Any = None) -> Case:
    return Case(rule, values, key, fix)


CASES: list[Case] = [
    # shapes of values
    ok("whole-number", diskSizeGb="20", retainedBackups=30.0),
    bad("whole-number", "diskSizeGb", {"diskSizeGb": "twenty"}, 10),
    bad("whole-number", "maintenanceDay", {"maintenanceDay": True}),  # YAML's yes is no day number
    bad("whole-number", "retainedBackups", {"retainedBackups": 14.5}),
    ok("boolean", highAvailability="yes", replica="false", redis="on"),
    bad("boolean", "highAvailability", {"highAvailability": "maybe"}, False),
    ok("string-list", iamUsers='["ana@example.com"]'),
    ok("string-list", iamUsers="ana@example.com, bo@example.com"),
    bad("string-list", "iamUsers", {"iamUsers": {"ana": "example.com"}}, []),
    bad("string-list", "iamServiceAccounts", {"iamServiceAccounts": [1, 2]}),
    ok("string-map", labels='{"team": "crm"}', databaseFlags={"work_mem": 8192}),
    bad("string-map", "databaseFlags", {"databaseFlags": ["work_mem"]}, {}),
    # where it lives
    ok("project-id", gcpProject="acme-prod"),
    ok("project-id", gcpProject="example.com:acme-prod"),
    ok("project-id", **{"gcpProject": "", "gcp:project": "acme-prod"}),
    bad("project-id", "gcpProject", {"gcpProject": ""}),
    bad("project-id", "gcpProject", {"gcpProject": "Acme_Prod"}, "acme-prod"),
    bad("project-id", "gcpProject", {"gcpProject": "acme"}),
    bad("project-id", "gcpProject", {"gcpProject": "acme-prod-"}, "acme-prod"),
    bad("project-id", "gcpProject", {"gcpProject": "", "gcp:project": "1acme"}),
    ok("region", region="europe-west1"),
    ok("region", region="northamerica-northeast2", replica=True, replicaRegion="us-central1"),
    bad("region", "region", {"region": "europe-west1-b"}, "europe-west1"),
    bad("region", "region", {"region": "Europe West"}),
    bad("region", "replicaRegion", {"replica": True, "replicaRegion": "us-central1-a"}, "us-central1"),
    ok("backup-location", backupLocation="eu"),
    ok("backup-location", backupLocation="europe-west3"),
    bad("backup-location", "backupLocation", {"backupLocation": "europe"}, ""),
    bad("backup-location", "backupLocation", {"backupLocation": "europe-west1-b"}, "europe-west1"),
    # the instance
    ok("instance-name", instanceName="a"),
    ok("instance-name", instanceName="db-" + "x" * 95),  # 98 characters, no replica
    bad("instance-name", "instanceName", {"instanceName": "App_DB"}, "app-db"),
    bad("instance-name", "instanceName", {"instanceName": "1db"}, "pg-1db"),
    bad("instance-name", "instanceName", {"instanceName": "db-" + "x" * 92, "replica": True}),
    ok("postgres-version", postgresVersion=14),
    ok("postgres-version", postgresVersion="18"),
    bad("postgres-version", "postgresVersion", {"postgresVersion": 13}, 14),  # no read-only user before 14
    bad("postgres-version", "postgresVersion", {"postgresVersion": 19}, 18),
    ok("edition", edition="enterprise_plus", tier="db-perf-optimized-N-2"),
    bad("edition", "edition", {"edition": "STANDARD"}, "ENTERPRISE"),
    ok("tier-enterprise", tier="db-f1-micro"),
    ok("tier-enterprise", tier="db-g1-small"),
    bad("tier-enterprise", "tier", {"tier": "db-n1-standard-2"}, "db-custom-2-7680"),
    bad("tier-enterprise", "tier", {"tier": "db-n1-highmem-4"}, "db-custom-4-26624"),
    bad("tier-enterprise", "tier", {"tier": "db-perf-optimized-N-8"}, "db-custom-8-53248"),
    bad("tier-enterprise", "tier", {"tier": "n1-standard-1"}, "db-custom-1-3840"),
    bad("tier-enterprise", "replicaTier", {"replica": True, "replicaTier": "db-perf-optimized-N-2"},
        "db-custom-2-13312"),
    ok("custom-machine", tier="db-custom-1-3840"),
    ok("custom-machine", tier="db-custom-2-13312"),  # 6.5 GB per vCPU, the most
    ok("custom-machine", tier="db-custom-96-638976"),
    ok("custom-machine", tier="db-custom-96-88576"),  # 0.9 GB per vCPU, rounded up to 256 MB
    bad("custom-machine", "tier", {"tier": "db-custom-3-7680"}, "db-custom-4-7680"),
    bad("custom-machine", "tier", {"tier": "db-custom-1-3000"}, "db-custom-1-3840"),
    bad("custom-machine", "tier", {"tier": "db-custom-2-14000"}, "db-custom-2-13312"),
    bad("custom-machine", "tier", {"tier": "db-custom-96-86016"}, "db-custom-96-88576"),
    bad("custom-machine", "tier", {"tier": "db-custom-128-524288"}, "db-custom-96-524288"),
    ok("tier-enterprise-plus", edition="ENTERPRISE_PLUS", tier="db-perf-optimized-N-128"),
    bad("tier-enterprise-plus", "tier", {**PLUS, "tier": "db-perf-optimized-N-6"}, "db-perf-optimized-N-8"),
    bad("tier-enterprise-plus", "tier", {**PLUS, "tier": "db-custom-2-7680"}, "db-perf-optimized-N-2"),
    bad("tier-enterprise-plus", "tier", {**PLUS, "tier": "db-f1-micro"}, "db-perf-optimized-N-2"),
    bad("tier-enterprise-plus", "tier", {**PLUS, "tier": "db-c4a-highmem-4"}, "db-perf-optimized-N-2"),
    bad("tier-enterprise-plus", "tier", {"edition": "ENTERPRISE_PLUS"}, "db-perf-optimized-N-2"),
    ok("disk-type", diskType="PD_HDD"),
    ok("disk-type", diskType="pd_ssd", **PLUS),
    bad("disk-type", "diskType", {"diskType": "HYPERDISK_BALANCED"}, "PD_SSD"),
    bad("disk-type", "diskType", {**PLUS, "diskType": "PD_HDD"}, "PD_SSD"),
    ok("disk-size", diskSizeGb=10),
    ok("disk-size", diskSizeGb=65536, diskAutoresizeLimitGb=65536),
    bad("disk-size", "diskSizeGb", {"diskSizeGb": 9}, 10),
    bad("disk-size", "diskSizeGb", {"diskSizeGb": 70000, "diskAutoresizeLimitGb": 65536}, 65536),
    ok("disk-autoresize-limit", diskSizeGb=50, diskAutoresizeLimitGb=50),
    bad("disk-autoresize-limit", "diskAutoresizeLimitGb", {"diskSizeGb": 200, "diskAutoresizeLimitGb": 100}, 200),
    bad("disk-autoresize-limit", "diskAutoresizeLimitGb", {"diskAutoresizeLimitGb": 5}, 10),
    ok("data-cache-edition", dataCache=True, **PLUS),
    bad("data-cache-edition", "dataCache", {"dataCache": True}, False),
    ok("private-network", privateNetwork=PRIVATE_VPC),
    ok("private-network", privateNetwork="https://www.googleapis.com/compute/v1/" + PRIVATE_VPC),
    bad("private-network", "privateNetwork", {"privateNetwork": "prod-vpc"}, PRIVATE_VPC),
    bad("private-network", "privateNetwork", {"privateNetwork": "projects/acme-prod/networks/prod-vpc"}, ""),
    ok("max-connections", maxConnections=14),
    ok("max-connections", maxConnections=262143),
    bad("max-connections", "maxConnections", {"maxConnections": 5}, 14),
    bad("max-connections", "maxConnections", {"maxConnections": 300000}, 262143),
    ok("slow-query-ms", slowQueryMs=-1),
    ok("slow-query-ms", slowQueryMs=2147483647),
    bad("slow-query-ms", "slowQueryMs", {"slowQueryMs": -2}, -1),
    ok("managed-flag", databaseFlags={"work_mem": "8192", "log_lock_waits": False}),
    bad("managed-flag", "databaseFlags", {"databaseFlags": {"max_connections": "200", "work_mem": "8192"}},
        {"work_mem": "8192"}),
    bad("managed-flag", "databaseFlags", {"databaseFlags": {"cloudsql.iam_authentication": "off"}}, {}),
    ok("flag-name", databaseFlags={"pg_stat_statements.track": "all"}),
    bad("flag-name", "databaseFlags", {"databaseFlags": {"Work-Mem": "1"}}, {}),
    bad("flag-name", "databaseFlags", {"databaseFlags": {"work_mem": ""}}, {}),
    # backups and maintenance
    ok("retained-backups", retainedBackups=365),
    ok("retained-backups", retainedBackups=2, transactionLogRetentionDays=1),
    bad("retained-backups", "retainedBackups", {"retainedBackups": 400}, 365),
    bad("retained-backups", "retainedBackups", {"retainedBackups": 0}, 8),
    ok("log-retention", transactionLogRetentionDays=1),
    ok("log-retention", **PLUS, transactionLogRetentionDays=35, retainedBackups=36),
    bad("log-retention", "transactionLogRetentionDays", {"transactionLogRetentionDays": 8}, 7),
    bad("log-retention", "transactionLogRetentionDays", {**PLUS, "transactionLogRetentionDays": 36,
                                                         "retainedBackups": 40}, 35),
    bad("log-retention", "transactionLogRetentionDays", {"transactionLogRetentionDays": 0}, 1),
    ok("backups-exceed-log-retention", retainedBackups=8, transactionLogRetentionDays=7),
    bad("backups-exceed-log-retention", "retainedBackups", {"retainedBackups": 7}, 8),
    bad("backups-exceed-log-retention", "retainedBackups", {"retainedBackups": 3, "transactionLogRetentionDays": 5},
        6),
    bad("backups-exceed-log-retention", "retainedBackups", {**PLUS, "retainedBackups": 30,
                                                            "transactionLogRetentionDays": 35}, 36),
    ok("backup-start-time", backupStartTime="23:59"),
    bad("backup-start-time", "backupStartTime", {"backupStartTime": "25:00"}, "02:00"),
    bad("backup-start-time", "backupStartTime", {"backupStartTime": "2:00"}, "02:00"),
    ok("maintenance-day", maintenanceDay=1),
    bad("maintenance-day", "maintenanceDay", {"maintenanceDay": 0}, 1),
    bad("maintenance-day", "maintenanceDay", {"maintenanceDay": 8}, 7),
    ok("maintenance-hour", maintenanceHour=0),
    bad("maintenance-hour", "maintenanceHour", {"maintenanceHour": 24}, 23),
    ok("maintenance-update-track", maintenanceUpdateTrack="canary"),
    ok("maintenance-update-track", maintenanceUpdateTrack="week5"),
    bad("maintenance-update-track", "maintenanceUpdateTrack", {"maintenanceUpdateTrack": "STABLE"}, "stable"),
    bad("maintenance-update-track", "maintenanceUpdateTrack", {"maintenanceUpdateTrack": "week2"}, "stable"),
    # users and who may log in
    ok("database-name", databaseName="_app2"),
    bad("database-name", "databaseName", {"databaseName": "postgres"}, "app"),
    bad("database-name", "databaseName", {"databaseName": "App-DB"}, "app_db"),
    bad("database-name", "databaseName", {"databaseName": "a" * 64}),
    ok("user-name", appUser="svc_api", readonlyUser="svc_read"),
    bad("user-name", "appUser", {"appUser": "pg_app"}, "api_user"),
    bad("user-name", "appUser", {"appUser": "readonly"}, "api_user"),
    bad("user-name", "appUser", {"appUser": "api-user"}, "api_user"),
    bad("user-name", "readonlyUser", {"readonlyUser": "cloudsqlsuperuser"}, "readonly"),
    ok("password-min-length", passwordMinLength=8),
    ok("password-min-length", passwordMinLength=64),
    bad("password-min-length", "passwordMinLength", {"passwordMinLength": 7}, 8),
    bad("password-min-length", "passwordMinLength", {"passwordMinLength": 65}, 64),
    ok("iam-user-email", iamUsers=["ana@example.com", "bo.b+x@sub.example.org"]),
    bad("iam-user-email", "iamUsers", {"iamUsers": [SA]}, []),
    bad("iam-user-email", "iamUsers", {"iamUsers": ["ana", "bo@example.com"]}, ["bo@example.com"]),
    ok("service-account-email", iamServiceAccounts=[SA, "123456789-compute@developer.gserviceaccount.com",
                                                    "acme-prod@appspot.gserviceaccount.com",
                                                    "service-123@gcp-sa-cloudsql.iam.gserviceaccount.com"]),
    bad("service-account-email", "iamServiceAccounts", {"iamServiceAccounts": ["ana@example.com"]}, []),
    bad("service-account-email", "iamServiceAccounts", {"iamServiceAccounts": ["reporting@acme-prod"]}, [SA]),
    bad("service-account-email", "iamServiceAccounts",
        {"iamServiceAccounts": ["compute@developer.gserviceaccount.com"]}, []),
    ok("iam-duplicate", iamUsers=["ana@example.com", "bo@example.com"], iamServiceAccounts=[SA]),
    bad("iam-duplicate", "iamUsers", {"iamUsers": ["ana@example.com", "Ana@example.com"]}, ["ana@example.com"]),
    bad("iam-duplicate", "iamServiceAccounts", {"iamServiceAccounts": [SA, SA]}, [SA]),
    bad("iam-duplicate", "iamServiceAccounts",
        {"iamServiceAccounts": ["tether-sql-proxy@acme-prod.iam.gserviceaccount.com"]}, []),
    ok("iam-authentication", iamAuthentication=False),
    bad("iam-authentication", "iamAuthentication", {"iamUsers": ["ana@example.com"], "iamAuthentication": False},
        True),
    ok("service-account-id", proxyServiceAccountId="abcdef"),
    bad("service-account-id", "proxyServiceAccountId", {"proxyServiceAccountId": "Proxy"}, "tether-sql-proxy"),
    bad("service-account-id", "proxyServiceAccountId", {"proxyServiceAccountId": "sql_proxy"}, "sql-proxy"),
    bad("service-account-id", "proxyServiceAccountId", {"proxyServiceAccountId": "p" * 31}, "p" * 30),
    # Memorystore for Redis
    ok("redis-name", redis=True, redisName="r"),
    bad("redis-name", "redisName", {"redis": True, "redisName": "App_Redis"}, "app-redis"),
    bad("redis-name", "redisName", {"redis": True, "redisName": "redis-"}, "redis"),
    bad("redis-name", "redisName", {"redis": True, "redisName": "r" * 41}, "r" * 40),
    ok("redis-tier", redis=True, redisTier="standard_ha"),
    bad("redis-tier", "redisTier", {"redis": True, "redisTier": "PREMIUM"}, "BASIC"),
    ok("redis-memory", redis=True, redisMemoryGb=300),
    bad("redis-memory", "redisMemoryGb", {"redis": True, "redisMemoryGb": 0}, 1),
    bad("redis-memory", "redisMemoryGb", {"redis": True, "redisMemoryGb": 301}, 300),
    ok("redis-version", redis=True, redisVersion="REDIS_6_X"),
    ok("redis-version", redis=True, redisVersion="redis_3_2"),
    bad("redis-version", "redisVersion", {"redis": True, "redisVersion": "REDIS_6_2"}, "REDIS_6_X"),
    bad("redis-version", "redisVersion", {"redis": True, "redisVersion": "7.2"}, "REDIS_7_2"),
    bad("redis-version", "redisVersion", {"redis": True, "redisVersion": "REDIS_8_0"}, "REDIS_7_2"),
    ok("redis-network", redis=True, redisNetwork="default"),
    ok("redis-network", redis=True, redisNetwork=PRIVATE_VPC),
    bad("redis-network", "redisNetwork", {"redis": True, "redisNetwork": "Prod VPC"}, "default"),
    ok("redis-connect-mode", redis=True, redisConnectMode="private_service_access"),
    bad("redis-connect-mode", "redisConnectMode", {"redis": True, "redisConnectMode": "VPC_PEERING"}, ""),
    # labels
    ok("labels", labels={"team": "crm", "cost-center": "42", "équipe": "données", "empty": ""}),
    bad("labels", "labels", {"labels": {"Team": "crm"}}, {}),
    bad("labels", "labels", {"labels": {"team": "CRM", "env": "prod"}}, {"env": "prod"}),
    bad("labels", "labels", {"labels": {"1team": "x"}}, {}),
    bad("labels", "labels", {"labels": {f"l{n}": "x" for n in range(62)}}, {f"l{n}": "x" for n in range(61)}),
]


def config_of(values: dict[str, Any]) -> ProdStackConfig:
    return prod_stack_config({**BASE, **values}.get)


def case_id(case: Case) -> str:
    detail = ",".join(f"{key}={value!r}"[:40] for key, value in case.values.items())
    return f"{case.rule}:{'ok' if case.valid else 'refused'}:{detail}"


def test_every_rule_has_a_valid_and_an_invalid_case() -> None:
    assert {case.rule for case in CASES if case.valid} == set(rules.RULES)
    assert {case.rule for case in CASES if not case.valid} == set(rules.RULES)


def test_every_rule_cites_a_source() -> None:
    for rule in rules.RULES.values():
        assert rule.requirement.strip() and rule.source.strip(), rule.name


@pytest.mark.parametrize("case", [case for case in CASES if case.valid], ids=case_id)
def test_valid_values_pass(case: Case) -> None:
    config_of(case.values)


@pytest.mark.parametrize("case", [case for case in CASES if not case.valid], ids=case_id)
def test_invalid_values_are_refused_with_a_value_that_works(case: Case) -> None:
    with pytest.raises(ConfigValueError) as raised:
        config_of(case.values)
    error = raised.value
    assert (error.rule.name, error.key) == (case.rule, case.key)
    message = str(error)
    for part in (f"{PROJECT_NAME}:{case.key}", shown(error.value), error.rule.name, error.rule.source,
                 f"A value that works: {case.key}: {shown(error.fix)}"):
        assert part in message, part
    assert "\n" not in message  # one paragraph
    if case.fix is not None:
        assert error.fix == case.fix
    config_of({**case.values, case.key: error.fix})  # the suggestion is really a value that works
