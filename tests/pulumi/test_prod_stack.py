"""The prod stack's Pulumi program under Pulumi's mocks: every hardening property, per config, and its outputs."""

from __future__ import annotations

import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from prod_harness import (
    ACCOUNT,
    BASE,
    IAM_MEMBER,
    PASSWORD,
    PROJECT,
    REDIS,
    SECRET,
    SECRET_VERSION,
    SERVICE,
    SQL_DATABASE,
    SQL_INSTANCE,
    SQL_USER,
    Deployment,
    is_secret,
    mock_password,
    run_program,
    unwrap,
)
from pulumi.runtime.config import CONFIG

from infra.policy_rules import Subject, violations
from infra.prod.cloudsql import URL_SAFE_SPECIALS, data_options
from infra.prod.config import DEFAULTS, ConfigValueError, prod_stack_config
from infra.prod.settings import DEFAULTS as SETTINGS_DEFAULTS
from infra.prod.settings import PROJECT_NAME, load_prod_settings, read_prod_stack_file
from infra.prod.stack import build_prod_stack

ROOT = Path(__file__).resolve().parents[2]
STACK_DIR = ROOT / "stacks" / "prod"

Deploy = Callable[..., Deployment]


@pytest.fixture
def deploy(monkeypatch: pytest.MonkeyPatch) -> Deploy:
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    return run_program


# --- the instance --------------------------------------------------------------------------------

def test_instance_defaults_are_the_documented_sizing(deploy: Deploy) -> None:
    stack = deploy()
    assert stack.primary["databaseVersion"] == "POSTGRES_15"
    assert stack.primary["region"] == "europe-west1"
    assert stack.primary["name"] == "app-postgres-prod"
    assert stack.primary["project"] == PROJECT
    assert stack.settings["edition"] == "ENTERPRISE"
    assert stack.settings["tier"] == "db-custom-1-3840"
    assert stack.settings["availabilityType"] == "ZONAL"
    assert stack.settings["diskType"] == "PD_SSD"
    assert stack.settings["diskSize"] == 10
    assert stack.settings["diskAutoresize"] is True
    assert stack.settings["diskAutoresizeLimit"] == 100  # arrives as 100.0: mocks hand numbers over as floats


def test_backups_with_point_in_time_recovery(deploy: Deploy) -> None:
    backup = deploy().settings["backupConfiguration"]
    assert backup["enabled"] is True
    assert backup["pointInTimeRecoveryEnabled"] is True
    assert backup["startTime"] == "02:00"
    assert backup["transactionLogRetentionDays"] == 7
    assert backup["backupRetentionSettings"] == {"retainedBackups": 14, "retentionUnit": "COUNT"}
    assert "location" not in backup  # Cloud SQL picks the nearest multi-region


def test_tls_only_and_no_authorized_network(deploy: Deploy) -> None:
    ip = deploy().settings["ipConfiguration"]
    assert ip["sslMode"] == "ENCRYPTED_ONLY"
    assert ip["authorizedNetworks"] == []
    assert ip["ipv4Enabled"] is True  # a public IP for the proxy only: nothing is authorized on it
    assert "privateNetwork" not in ip


def test_private_network_turns_the_public_ip_off(deploy: Deploy) -> None:
    network = "projects/acme-prod/global/networks/prod-vpc"
    stack = deploy({"privateNetwork": network, "redis": True})
    ip = stack.settings["ipConfiguration"]
    assert ip["ipv4Enabled"] is False
    assert ip["privateNetwork"] == network
    assert stack.outputs["privateIp"] == "10.20.0.3"
    assert stack.outputs["publicIp"] == ""
    (redis,) = stack.of_type(REDIS)
    assert redis["authorizedNetwork"] == network
    assert redis["connectMode"] == "PRIVATE_SERVICE_ACCESS"
    assert "servicenetworking.googleapis.com" in {api["service"] for api in stack.of_type(SERVICE)}


def test_insights_maintenance_and_password_policy(deploy: Deploy) -> None:
    settings = deploy().settings
    assert settings["insightsConfig"]["queryInsightsEnabled"] is True
    assert settings["insightsConfig"]["recordApplicationTags"] is True
    assert settings["maintenanceWindow"] == {"day": 7, "hour": 3, "updateTrack": "stable"}
    assert settings["passwordValidationPolicy"] == {
        "enablePasswordPolicy": True, "minLength": 16, "complexity": "COMPLEXITY_DEFAULT",
        "disallowUsernameSubstring": True}


def test_database_flags_turn_on_iam_login_and_slow_query_logging(deploy: Deploy) -> None:
    flags = deploy().flags()
    assert flags["cloudsql.iam_authentication"] == "on"
    assert flags["log_min_duration_statement"] == "500"
    assert flags["log_checkpoints"] == "on"
    assert flags["log_lock_waits"] == "on"
    assert "max_connections" not in flags  # the tier's default (100 for 3.75 GB) unless configured


def test_flag_overrides_and_max_connections(deploy: Deploy) -> None:
    flags = deploy({"slowQueryMs": 250, "maxConnections": 150,
                    "databaseFlags": {"work_mem": 8192, "log_lock_waits": False}}).flags()
    assert flags["log_min_duration_statement"] == "250"
    assert flags["max_connections"] == "150"
    assert flags["work_mem"] == "8192"
    assert flags["log_lock_waits"] == "off"


def test_deletion_protection_in_google_and_in_pulumi(deploy: Deploy) -> None:
    stack = deploy()
    assert stack.primary["deletionProtection"] is True
    assert stack.settings["deletionProtectionEnabled"] is True
    assert stack.settings["retainBackupsOnDelete"] is True
    assert stack.named("postgres-instance").protect is True
    assert stack.named("postgres-database").protect is True
    assert stack.named("postgres-app-user").protect is False  # only what holds data is protected


def test_data_options_protect() -> None:
    options = data_options(None)
    assert options.protect is True
    assert options.parent is None


# --- database, users, secrets --------------------------------------------------------------------

def test_database_is_never_dropped_by_pulumi(deploy: Deploy) -> None:
    (database,) = deploy().of_type(SQL_DATABASE)
    assert database["name"] == "app"
    assert database["instance"] == "app-postgres-prod"
    assert database["deletionPolicy"] == "ABANDON"
    assert database["charset"] == "UTF8"


def test_users_have_random_secret_passwords(deploy: Deploy) -> None:
    stack = deploy()
    app, readonly = stack.user("api_user"), stack.user("readonly")
    for user, resource in ((app, "postgres-app-password"), (readonly, "postgres-readonly-password")):
        assert user["type"] == "BUILT_IN"
        assert is_secret(user["password"]), "the password must reach the engine as a secret"
        assert unwrap(user["password"]) == mock_password(resource)
        assert user["deletionPolicy"] == "ABANDON"
    assert readonly["databaseRoles"] == ["pg_read_all_data"]
    assert "databaseRoles" not in app
    for password in stack.of_type(PASSWORD):
        assert password["length"] == 32
        assert password["overrideSpecial"] == URL_SAFE_SPECIALS
        assert password["minSpecial"] >= 1 and password["minUpper"] >= 1 and password["minNumeric"] >= 1


@pytest.mark.parametrize("min_length", [8, 16, 32, 33, 48, 64])
def test_generated_passwords_meet_the_instance_password_policy(deploy: Deploy, min_length: int) -> None:
    stack = deploy({"passwordMinLength": min_length})
    policy = stack.settings["passwordValidationPolicy"]
    assert policy["minLength"] == min_length
    assert policy["complexity"] == "COMPLEXITY_DEFAULT"
    passwords = stack.of_type(PASSWORD)
    assert len(passwords) == 2
    for password in passwords:
        assert password["length"] >= policy["minLength"]  # else creating the users fails
        assert password["length"] >= 32
        # COMPLEXITY_DEFAULT wants lowercase, uppercase, digits and a non-alphanumeric character.
        assert password["special"] is True
        assert min(password["minLower"], password["minUpper"], password["minNumeric"], password["minSpecial"]) >= 1


def test_readonly_role_needs_postgres_14(deploy: Deploy) -> None:
    """Before 14 there is no pg_read_all_data, and Cloud SQL makes a user without roles a cloudsqlsuperuser."""
    assert deploy({"postgresVersion": 14}).user("readonly")["databaseRoles"] == ["pg_read_all_data"]
    with pytest.raises(ConfigValueError, match="read-only user could not be made read-only"):
        deploy({"postgresVersion": 13})


def test_passwords_are_stored_in_secret_manager(deploy: Deploy) -> None:
    stack = deploy()
    secrets = {secret["secretId"]: secret for secret in stack.of_type(SECRET)}
    assert set(secrets) == {"app-postgres-prod-api_user-password", "app-postgres-prod-readonly-password"}
    assert all(secret["replication"] == {"auto": {}} for secret in secrets.values())
    versions = {version["secret"]: version for version in stack.of_type(SECRET_VERSION)}
    app_version = versions["postgres-app-password-secret-id"]
    assert is_secret(app_version["secretData"])
    assert unwrap(app_version["secretData"]) == mock_password("postgres-app-password")
    assert stack.outputs["appPasswordSecret"] == "app-postgres-prod-api_user-password"
    assert stack.outputs["readonlyPasswordSecret"] == "app-postgres-prod-readonly-password"


def test_no_output_carries_a_password(deploy: Deploy) -> None:
    stack = deploy({"redis": True})
    passwords = [mock_password("postgres-app-password"), mock_password("postgres-readonly-password"),
                 "mock-redis-auth"]
    text = repr(stack.outputs)
    assert not [password for password in passwords if password in text]


def test_outputs(deploy: Deploy) -> None:
    outputs = deploy().outputs
    assert outputs["connectionName"] == f"{PROJECT}:europe-west1:app-postgres-prod"
    assert outputs["database"] == "app"
    assert outputs["appUser"] == "api_user"
    assert outputs["readonlyUser"] == "readonly"
    assert outputs["publicIp"] == "34.1.2.3"
    assert outputs["proxyServiceAccount"] == f"tether-sql-proxy@{PROJECT}.iam.gserviceaccount.com"
    assert outputs["proxyIamUser"] == f"tether-sql-proxy@{PROJECT}.iam"
    assert outputs["proxyPort"] == 5434
    assert "replicaConnectionName" not in outputs
    assert "redisHost" not in outputs


# --- access ----------------------------------------------------------------------------------------

def grants(stack: Deployment) -> set[tuple[str, str]]:
    return {(member["member"], member["role"]) for member in stack.of_type(IAM_MEMBER)}


def test_proxy_account_may_connect_and_log_in_with_iam(deploy: Deploy) -> None:
    stack = deploy()
    (account,) = stack.of_type(ACCOUNT)
    assert account["accountId"] == "tether-sql-proxy"
    member = f"serviceAccount:tether-sql-proxy@{PROJECT}.iam.gserviceaccount.com"
    assert grants(stack) == {(member, "roles/cloudsql.client"), (member, "roles/cloudsql.instanceUser")}
    for grant in stack.of_type(IAM_MEMBER):
        assert f"projects/{PROJECT}/instances/app-postgres-prod" in grant["condition"]["expression"]
    iam_user = stack.user(f"tether-sql-proxy@{PROJECT}.iam")
    assert iam_user["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"


def test_iam_users_and_service_accounts(deploy: Deploy) -> None:
    robot = f"reporting@{PROJECT}.iam.gserviceaccount.com"
    stack = deploy({"iamUsers": ["ana@example.com"], "iamServiceAccounts": [robot]})
    assert stack.user("ana@example.com")["type"] == "CLOUD_IAM_USER"
    assert stack.user(f"reporting@{PROJECT}.iam")["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
    assert ("user:ana@example.com", "roles/cloudsql.instanceUser") in grants(stack)
    assert (f"serviceAccount:{robot}", "roles/cloudsql.client") in grants(stack)
    assert sorted(stack.outputs["iamUsers"]) == sorted(
        [f"tether-sql-proxy@{PROJECT}.iam", "ana@example.com", f"reporting@{PROJECT}.iam"])


def test_without_iam_authentication(deploy: Deploy) -> None:
    stack = deploy({"iamAuthentication": False})
    assert stack.flags()["cloudsql.iam_authentication"] == "off"
    assert {role for _, role in grants(stack)} == {"roles/cloudsql.client"}
    assert [user["type"] for user in stack.of_type(SQL_USER)] == ["BUILT_IN", "BUILT_IN"]
    assert stack.outputs["proxyIamUser"] == ""


# --- config changes change the program ---------------------------------------------------------------

@pytest.mark.parametrize(("values", "path", "expected"), [
    ({"highAvailability": True}, ("settings", "availabilityType"), "REGIONAL"),
    ({"highAvailability": "true"}, ("settings", "availabilityType"), "REGIONAL"),
    ({"tier": "db-custom-2-7680"}, ("settings", "tier"), "db-custom-2-7680"),
    ({"postgresVersion": 16}, ("databaseVersion",), "POSTGRES_16"),
    ({"postgresVersion": "17"}, ("databaseVersion",), "POSTGRES_17"),
    ({"edition": "enterprise_plus", "tier": "db-perf-optimized-N-2"}, ("settings", "edition"), "ENTERPRISE_PLUS"),
    ({"region": "us-central1"}, ("region",), "us-central1"),
    ({"retainedBackups": 30}, ("settings", "backupConfiguration", "backupRetentionSettings", "retainedBackups"), 30),
    ({"transactionLogRetentionDays": 3}, ("settings", "backupConfiguration", "transactionLogRetentionDays"), 3),
    ({"diskAutoresizeLimitGb": 500}, ("settings", "diskAutoresizeLimit"), 500),
    ({"maintenanceDay": 2, "maintenanceHour": 22}, ("settings", "maintenanceWindow", "hour"), 22),
], ids=["ha", "ha-as-text", "tier", "version", "version-as-text", "enterprise-plus", "region", "retained-backups",
        "log-retention", "disk-limit", "maintenance"])
def test_config_changes_the_instance(deploy: Deploy, values: dict[str, Any], path: tuple[str, ...],
                                     expected: Any) -> None:
    value: Any = deploy(values).primary
    for key in path:
        value = value[key]
    assert value == expected


def test_read_replica_on_and_off(deploy: Deploy) -> None:
    assert len(deploy().of_type(SQL_INSTANCE)) == 1
    stack = deploy({"replica": True, "replicaTier": "db-custom-2-7680", "replicaRegion": "europe-west4"})
    replica = stack.named("postgres-replica").inputs
    assert replica["name"] == "app-postgres-prod-replica"
    assert replica["masterInstanceName"] == "app-postgres-prod"
    assert replica["instanceType"] == "READ_REPLICA_INSTANCE"
    assert replica["region"] == "europe-west4"
    assert replica["databaseVersion"] == "POSTGRES_15"
    assert replica["settings"]["tier"] == "db-custom-2-7680"
    assert replica["settings"]["ipConfiguration"]["sslMode"] == "ENCRYPTED_ONLY"
    assert replica["settings"]["ipConfiguration"]["authorizedNetworks"] == []
    # Read replicas take no backups, maintenance window or password policy (the primary's apply), and
    # replica_configuration serves MySQL only (failover_target: "not supported for Postgres").
    for absent in ("backupConfiguration", "maintenanceWindow", "passwordValidationPolicy"):
        assert absent not in replica["settings"], absent
    assert "replicaConfiguration" not in replica
    assert stack.named("postgres-replica").protect is False
    assert stack.flags(replica)["cloudsql.iam_authentication"] == "on"
    assert stack.outputs["replicaConnectionName"] == f"{PROJECT}:europe-west4:app-postgres-prod-replica"
    assert "app-postgres-prod-replica" in stack.of_type(IAM_MEMBER)[0]["condition"]["expression"]


def test_memorystore_redis_on_and_off(deploy: Deploy) -> None:
    assert deploy().of_type(REDIS) == []
    stack = deploy({"redis": True, "redisTier": "STANDARD_HA", "redisMemoryGb": 2})
    (redis,) = stack.of_type(REDIS)
    assert redis["authEnabled"] is True
    assert redis["transitEncryptionMode"] == "SERVER_AUTHENTICATION"
    assert redis["tier"] == "STANDARD_HA"
    assert redis["memorySizeGb"] == 2
    assert redis["redisVersion"] == "REDIS_7_2"
    assert redis["authorizedNetwork"] == "default"
    assert redis["connectMode"] == "DIRECT_PEERING"
    assert redis["persistenceConfig"]["persistenceMode"] == "RDB"
    assert redis["maintenancePolicy"]["weeklyMaintenanceWindows"][0]["day"] == "SUNDAY"
    auth_version = [v for v in stack.of_type(SECRET_VERSION) if v["secret"] == "redis-auth-secret-id"]
    assert unwrap(auth_version[0]["secretData"]) == "mock-redis-auth"
    assert stack.outputs["redisHost"] == "10.30.0.4"
    assert stack.outputs["redisPort"] == 6378
    assert stack.outputs["redisAuthSecret"] == "app-redis-prod-auth"
    assert stack.outputs["redisCaCertificate"].startswith("-----BEGIN CERTIFICATE-----")


VPC = "projects/acme-prod/global/networks/prod-vpc"


@pytest.mark.parametrize(("values", "mode"), [
    ({"privateNetwork": VPC}, "PRIVATE_SERVICE_ACCESS"),  # Redis joins the VPC Cloud SQL reaches privately
    ({"privateNetwork": VPC, "redisNetwork": "prod-vpc"}, "PRIVATE_SERVICE_ACCESS"),  # the same VPC, by name
    ({"privateNetwork": VPC, "redisNetwork": "https://www.googleapis.com/compute/v1/" + VPC},
     "PRIVATE_SERVICE_ACCESS"),
    ({"privateNetwork": VPC, "redisNetwork": "cache-vpc"}, "DIRECT_PEERING"),  # no private services access there
    ({"redisNetwork": VPC}, "DIRECT_PEERING"),
    ({"redisNetwork": "cache-vpc", "redisConnectMode": "private_service_access"}, "PRIVATE_SERVICE_ACCESS"),
    ({"privateNetwork": VPC, "redisConnectMode": "DIRECT_PEERING"}, "DIRECT_PEERING"),
], ids=["private-network", "same-vpc-by-name", "same-vpc-self-link", "other-vpc", "no-private-network",
        "explicit-psa", "explicit-peering"])
def test_redis_connect_mode_follows_the_network_redis_joins(deploy: Deploy, values: dict[str, Any],
                                                            mode: str) -> None:
    stack = deploy({"redis": True, **values})
    (redis,) = stack.of_type(REDIS)
    assert redis["connectMode"] == mode
    needs_networking = mode == "PRIVATE_SERVICE_ACCESS" or "privateNetwork" in values
    assert ("servicenetworking.googleapis.com" in {api["service"] for api in stack.of_type(SERVICE)}) \
        == needs_networking


def test_apis_are_switched_on_and_never_off(deploy: Deploy) -> None:
    apis = deploy().of_type(SERVICE)
    assert {api["service"] for api in apis} >= {"sqladmin.googleapis.com", "secretmanager.googleapis.com"}
    assert all(api["disableOnDestroy"] is False for api in apis)
    assert deploy({"enableApis": False}).of_type(SERVICE) == []


def test_every_mocked_resource_passes_the_policy_pack(deploy: Deploy) -> None:
    stack = deploy({"replica": True, "redis": True})
    checked = 0
    for resource in stack.custom_resources():
        found = violations(Subject(resource.type, resource.inputs, resource.protect))
        assert found == {}, f"{resource.name}: {found}"
        checked += resource.type in {SQL_INSTANCE, REDIS}
    assert checked == 3


def test_the_shipped_stack_file_deploys_and_passes_the_policy_pack(deploy: Deploy) -> None:
    shipped = read_prod_stack_file(STACK_DIR / "Pulumi.prod.yaml")
    for extra in ({}, {"replica": True, "redis": True}):
        stack = deploy({**shipped, "gcpProject": PROJECT, **extra})
        for resource in stack.custom_resources():
            assert violations(Subject(resource.type, resource.inputs, resource.protect)) == {}, resource.name


# --- reading the config --------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "key"), [
    ({"gcpProject": ""}, "gcpProject"),
    ({"postgresVersion": 19}, "postgresVersion"),
    ({"postgresVersion": "fifteen"}, "postgresVersion"),
    ({"edition": "STANDARD"}, "edition"),
    ({"tier": "n1-standard-1"}, "tier"),
    ({"edition": "ENTERPRISE_PLUS"}, "tier"),
    ({"transactionLogRetentionDays": 8}, "transactionLogRetentionDays"),
    ({"diskAutoresizeLimitGb": 5}, "diskAutoresizeLimitGb"),
    ({"diskSizeGb": 200, "diskAutoresizeLimitGb": 100}, "diskAutoresizeLimitGb"),
    ({"highAvailability": "maybe"}, "highAvailability"),
    ({"backupStartTime": "25:00"}, "backupStartTime"),
    ({"maintenanceDay": 0}, "maintenanceDay"),
    ({"iamUsers": "not json ["}, "iamUsers"),
    ({"iamUsers": ["robot@acme-prod.iam.gserviceaccount.com"]}, "iamUsers"),
    ({"iamServiceAccounts": ["ana@example.com"]}, "iamServiceAccounts"),
    ({"iamUsers": ["ana@example.com"], "iamAuthentication": False}, "iamAuthentication"),
    ({"proxyServiceAccountId": "Proxy"}, "proxyServiceAccountId"),
    ({"instanceName": "App_DB"}, "instanceName"),
    ({"redis": True, "redisTier": "PREMIUM"}, "redisTier"),
    ({"databaseFlags": ["work_mem"]}, "databaseFlags"),
], ids=lambda value: str(value) if isinstance(value, str) else None)
def test_bad_config_names_the_key(deploy: Deploy, values: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigValueError, match=f"{PROJECT_NAME}:{key}"):
        build_prod_stack(prod_stack_config({**BASE, **values}.get))


def test_values_arrive_as_pulumi_config_text() -> None:
    as_text = prod_stack_config({**BASE, "iamUsers": '["ana@example.com"]', "replica": "true",
                                 "diskSizeGb": "20", "labels": '{"team": "crm"}'}.get)
    assert as_text.iam_users == ("ana@example.com",)
    assert as_text.replica is not None
    assert as_text.disk_size_gb == 20
    assert as_text.labels == {"team": "crm"}


def test_stack_file_spells_out_the_defaults() -> None:
    document = yaml.safe_load((STACK_DIR / "Pulumi.prod.yaml").read_text())
    values = {key.split(":", 1)[1]: value for key, value in document["config"].items()}
    defaults = {**SETTINGS_DEFAULTS, **DEFAULTS}
    assert {key: value for key, value in values.items() if value != defaults[key]} == {}
    assert load_prod_settings(STACK_DIR / "Pulumi.prod.yaml").instance_name == "app-postgres-prod"


def test_every_key_is_documented_in_pulumi_yaml() -> None:
    documented = (STACK_DIR / "Pulumi.yaml").read_text()
    project = yaml.safe_load(documented)
    assert project["name"] == PROJECT_NAME
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "uv", "virtualenv": "../../.venv"}}
    missing = [key for key in {**SETTINGS_DEFAULTS, **DEFAULTS} if f"#   {key} " not in documented]
    assert missing == []


# --- the program file as `pulumi up` runs it ---------------------------------------------------------

def test_main_program_exports_the_outputs(deploy: Deploy, monkeypatch: pytest.MonkeyPatch) -> None:
    exported: dict[str, Any] = {}
    monkeypatch.setattr(pulumi, "export", lambda name, value: exported.__setitem__(name, value))
    token = CONFIG.set({f"{PROJECT_NAME}:gcpProject": PROJECT, f"{PROJECT_NAME}:highAvailability": "true"})
    try:
        def program() -> dict[str, Any]:
            runpy.run_path(str(STACK_DIR / "__main__.py"), run_name="__main__")
            return exported

        stack = deploy(program=program)
    finally:
        CONFIG.reset(token)
    assert stack.settings["availabilityType"] == "REGIONAL"
    assert stack.outputs["connectionName"] == f"{PROJECT}:europe-west1:app-postgres-prod"


def test_main_program_without_project_fails_with_one_message(deploy: Deploy) -> None:
    token = CONFIG.set({})
    try:
        with pytest.raises(pulumi.RunError, match="gcpProject"):
            runpy.run_path(str(STACK_DIR / "__main__.py"), run_name="__main__")
    finally:
        CONFIG.reset(token)
