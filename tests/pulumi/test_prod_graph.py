"""The prod program's resource graph over a grid of configurations, and its upgrade path, as the engine sees them.

Each run records the registration requests the engine would receive (prod_harness.RecordingMonitor): the
dependencies (URNs), ``protect``, ``ignoreChanges`` and ``replaceOnChanges`` the program really passes.

What would replace an instance comes from the provider, not from Pulumi: the Terraform provider marks some
fields ForceNew (and the bridge turns them into replacements). The lists below are copied from its sources,
cited next to them; a change there is one to copy here.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from prod_harness import REDIS, SERVICE, SQL_INSTANCE, Deployment, Registration, is_secret, run_program

from infra.policy_rules import Subject, violations

VPC = "projects/acme-prod/global/networks/prod-vpc"

# The API each Google resource type calls (Google's API per product); a new resource type must be added here,
# or the graph test fails: nothing may call an API without waiting for the Service that enables it.
API_OF_TYPE = {
    SQL_INSTANCE: "sqladmin.googleapis.com",
    "gcp:sql/database:Database": "sqladmin.googleapis.com",
    "gcp:sql/user:User": "sqladmin.googleapis.com",
    "gcp:secretmanager/secret:Secret": "secretmanager.googleapis.com",
    "gcp:secretmanager/secretVersion:SecretVersion": "secretmanager.googleapis.com",
    "gcp:serviceaccount/account:Account": "iam.googleapis.com",
    "gcp:projects/iAMMember:IAMMember": "cloudresourcemanager.googleapis.com",
    REDIS: "redis.googleapis.com",
}
SERVICE_NETWORKING = "servicenetworking.googleapis.com"

# terraform-provider-google google/services/sql/resource_sql_database_instance.go: ForceNew on region, project,
# name, encryption_key_name, settings.disk_type, settings.collation, settings.time_zone and every
# replica_configuration field; CustomizeDiff forces a new instance when master_instance_name changes or the disk
# shrinks (compute.IsDiskShrinkage), and when private_network is removed.
SQL_REPLACING = ("region", "project", "name", "encryptionKeyName", "masterInstanceName", "replicaConfiguration",
                 "settings.diskType", "settings.collation", "settings.timeZone")
# magic-modules mmv1/products/redis/Instance.yaml: immutable name, region, locationId, alternativeLocationId,
# tier, authorizedNetwork, connectMode, reservedIpRange, transitEncryptionMode, customerManagedKey,
# readReplicasMode.
REDIS_REPLACING = ("name", "region", "locationId", "alternativeLocationId", "tier", "authorizedNetwork",
                   "connectMode", "reservedIpRange", "transitEncryptionMode", "customerManagedKey",
                   "readReplicasMode")
REPLACING = {SQL_INSTANCE: SQL_REPLACING, REDIS: REDIS_REPLACING}

GRID = list(itertools.product(("ENTERPRISE", "ENTERPRISE_PLUS"), (False, True), (False, True), (False, True),
                              (False, True)))


def grid_values(edition: str, high_availability: bool, replica: bool, redis: bool, private: bool
                ) -> dict[str, Any]:
    values: dict[str, Any] = {"edition": edition, "highAvailability": high_availability, "replica": replica,
                              "redis": redis, "privateNetwork": VPC if private else ""}
    if edition == "ENTERPRISE_PLUS":
        values.update(tier="db-perf-optimized-N-2", dataCache=True, transactionLogRetentionDays=14, retainedBackups=21)
    return values


def grid_id(point: tuple[Any, ...]) -> str:
    edition, high_availability, replica, redis, private = point
    return "-".join([edition.lower(), "regional" if high_availability else "zonal",
                     *(name for name, on in (("replica", replica), ("redis", redis), ("private", private)) if on)])


def services(stack: Deployment) -> dict[str, str]:
    """API name -> URN of the Service resource that enables it."""
    return {registration.inputs["service"]: registration.urn for registration in stack.custom_resources()
            if registration.type == SERVICE}


def expected_apis(registration: Registration, values: dict[str, Any]) -> set[str]:
    apis = {API_OF_TYPE[registration.type]}
    private_instance = registration.type == SQL_INSTANCE and values.get("privateNetwork")
    private_redis = registration.type == REDIS and registration.inputs["connectMode"] == "PRIVATE_SERVICE_ACCESS"
    if private_instance or private_redis:
        apis.add(SERVICE_NETWORKING)  # private services access: the peering Cloud SQL / Memorystore use
    return apis


@functools.cache
def deployed(point: tuple[Any, ...]) -> Deployment:
    """One run per grid point, shared by the checks below (mocks keep no state between runs)."""
    return run_program(grid_values(*point))


def instances(stack: Deployment) -> list[Registration]:
    return [registration for registration in stack.custom_resources() if registration.type == SQL_INSTANCE]


@pytest.mark.parametrize("point", GRID, ids=grid_id)
def test_every_api_call_waits_for_the_service_that_enables_it(point: tuple[Any, ...]) -> None:
    stack, values = deployed(point), grid_values(*point)
    enabled = services(stack)
    checked = 0
    for registration in stack.custom_resources():
        if registration.type.startswith("gcp:") and registration.type != SERVICE:
            assert registration.type in API_OF_TYPE, f"{registration.type}: which API does it call?"
            for api in expected_apis(registration, values):
                assert enabled[api] in registration.dependencies, f"{registration.name} does not wait for {api}"
            checked += 1
    assert checked >= 12


@pytest.mark.parametrize("point", GRID, ids=grid_id)
def test_no_replica_carries_a_maintenance_window_or_backups(point: tuple[Any, ...]) -> None:
    stack, values = deployed(point), grid_values(*point)
    replicas = [instance for instance in instances(stack) if instance.inputs.get("masterInstanceName")]
    assert len(replicas) == (1 if values["replica"] else 0)
    for replica in replicas:
        settings = replica.inputs["settings"]
        for absent in ("backupConfiguration", "maintenanceWindow", "passwordValidationPolicy"):
            assert absent not in settings, absent
        assert "replicaConfiguration" not in replica.inputs  # MySQL's; failover_target is not for PostgreSQL
        assert replica.protect is False  # a replica holds no data of its own


@pytest.mark.parametrize("point", GRID, ids=grid_id)
def test_the_grown_disk_size_is_never_sent_again(point: tuple[Any, ...]) -> None:
    for instance in instances(deployed(point)):
        assert "settings.diskSize" in instance.ignore_changes, instance.name
        assert instance.replace_on_changes == () and not instance.delete_before_replace


@pytest.mark.parametrize("point", GRID, ids=grid_id)
def test_the_primary_and_the_policy_pack(point: tuple[Any, ...]) -> None:
    stack, values = deployed(point), grid_values(*point)
    (primary,) = [instance for instance in instances(stack) if not instance.inputs.get("masterInstanceName")]
    settings = primary.inputs["settings"]
    assert primary.protect is True
    backup = settings["backupConfiguration"]
    # REGIONAL needs backups and point-in-time recovery (provider docs, availability_type): always on.
    assert backup["enabled"] is True and backup["pointInTimeRecoveryEnabled"] is True
    assert settings["availabilityType"] == ("REGIONAL" if values["highAvailability"] else "ZONAL")
    assert settings["maintenanceWindow"]["updateTrack"] == "stable"
    for instance in instances(stack):
        assert ("dataCacheConfig" in instance.inputs["settings"]) == (values["edition"] == "ENTERPRISE_PLUS")
    for registration in stack.custom_resources():
        found = violations(Subject(registration.type, registration.inputs, registration.protect))
        assert found == {}, f"{registration.name}: {found}"


def test_without_managed_apis_nothing_waits_for_a_service() -> None:
    stack = run_program({"enableApis": False, "redis": True, "replica": True})
    assert services(stack) == {}
    assert all(registration.type != SERVICE for registration in stack.registrations.values())


# --- the upgrade path: changes to an existing stack update the instance in place ---------------------------------

def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and value and not is_secret(value):
        for key, item in value.items():
            yield from flatten(item, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, value


def changed_paths(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    old, new = dict(flatten(before)), dict(flatten(after))
    return {path for path in old.keys() | new.keys() if old.get(path) != new.get(path)}


def replacing_changes(before: Registration, after: Registration) -> set[str]:
    """The changes that would replace ``before`` by ``after`` rather than update it (empty: an update)."""
    if before.urn != after.urn:
        return {"urn"}
    changed = {path for path in changed_paths(before.inputs, after.inputs)
               if not any(path == ignored or path.startswith(ignored + ".") for ignored in after.ignore_changes)}
    triggers = (*REPLACING[after.type], *after.replace_on_changes)
    return {path for path in changed if any(path == field or path.startswith(field + ".") for field in triggers)}


UPGRADES = [
    ("tier", {}, {"tier": "db-custom-2-7680"}, {"settings.tier"}),
    ("add-replica", {}, {"replica": True}, set()),
    ("redis-on", {}, {"redis": True}, set()),
    ("high-availability", {}, {"highAvailability": True}, {"settings.availabilityType"}),
    ("enterprise-plus", {}, {"edition": "ENTERPRISE_PLUS", "tier": "db-perf-optimized-N-2", "dataCache": True},
     {"settings.edition", "settings.tier", "settings.dataCacheConfig.dataCacheEnabled"}),
    ("private-ip", {}, {"privateNetwork": VPC}, {"settings.ipConfiguration.ipv4Enabled",
                                                 "settings.ipConfiguration.privateNetwork"}),
    ("major-version", {}, {"postgresVersion": 16}, {"databaseVersion"}),
    ("disk-size", {}, {"diskSizeGb": 50}, set()),  # ignored: the grown disk is never shrunk
    ("backups", {}, {"retainedBackups": 30, "transactionLogRetentionDays": 3},
     {"settings.backupConfiguration.backupRetentionSettings.retainedBackups",
      "settings.backupConfiguration.transactionLogRetentionDays"}),
]


@pytest.mark.parametrize(("before", "after", "expected"), [(b, a, e) for _, b, a, e in UPGRADES],
                         ids=[name for name, *_ in UPGRADES])
def test_upgrades_update_the_instance_in_place(before: dict[str, Any], after: dict[str, Any],
                                               expected: set[str]) -> None:
    old, new = run_program(before).named("postgres-instance"), run_program(after).named("postgres-instance")
    assert replacing_changes(old, new) == set()
    ignored = {path for path in changed_paths(old.inputs, new.inputs) if path.startswith("settings.diskSize")}
    assert changed_paths(old.inputs, new.inputs) - ignored == expected


def test_redis_resizes_and_upgrades_in_place() -> None:
    old = run_program({"redis": True}).named("redis-instance")
    new = run_program({"redis": True, "redisMemoryGb": 5, "redisVersion": "REDIS_7_0"}).named("redis-instance")
    assert replacing_changes(old, new) == set()
    assert changed_paths(old.inputs, new.inputs) == {"memorySizeGb", "redisVersion"}


@pytest.mark.parametrize(("after", "replaced"), [
    ({"diskType": "PD_HDD"}, {"settings.diskType"}),
    ({"region": "europe-west4"}, {"region"}),
    ({"instanceName": "app-postgres-2"}, {"name"}),
], ids=["disk-type", "region", "name"])
def test_the_upgrade_check_sees_a_replacement(after: dict[str, Any], replaced: set[str]) -> None:
    """The check above can fail: these changes would replace the instance (which protect=True refuses)."""
    old, new = run_program({}).named("postgres-instance"), run_program(after).named("postgres-instance")
    assert replacing_changes(old, new) == replaced


def test_adding_a_replica_keeps_every_existing_resource() -> None:
    before, after = run_program({}), run_program({"replica": True})
    assert set(before.registrations) <= set(after.registrations)
    for name, registration in before.registrations.items():
        assert after.registrations[name].urn == registration.urn, name
    # The grants' IAM condition names the replica too: the provider replaces them, creating the new grant first.
    assert all(not registration.delete_before_replace for registration in after.registrations.values())


def test_a_replica_added_after_the_disk_grew_asks_for_the_primarys_current_size(monkeypatch) -> None:
    """A replica may not be smaller than its primary: the configured size is stale once Cloud SQL has grown the disk
    (terraform-google-sql-db#338), so the replica takes the size the primary reports."""
    import prod_harness

    echo = prod_harness.RecordingMocks.new_resource

    def grown(self, args):
        resource_id, state = echo(self, args)
        if args.typ == SQL_INSTANCE and not state.get("masterInstanceName"):
            state["settings"] = {**state["settings"], "diskSize": 250}
        return resource_id, state

    monkeypatch.setattr(prod_harness.RecordingMocks, "new_resource", grown)
    stack = run_program({"replica": True, "diskSizeGb": 10})
    (primary,) = [instance for instance in instances(stack) if not instance.inputs.get("masterInstanceName")]
    (replica,) = [instance for instance in instances(stack) if instance.inputs.get("masterInstanceName")]
    assert primary.inputs["settings"]["diskSize"] == 10  # what the config asks for at creation
    assert replica.inputs["settings"]["diskSize"] == 250


def test_a_major_version_upgrade_takes_the_replica_along() -> None:
    for values in ({}, {"replica": True}):
        stack = run_program(values)
        for instance in instances(stack):
            if instance.inputs.get("masterInstanceName"):
                assert "databaseVersion" in instance.ignore_changes  # upgraded in place with the primary
            else:
                assert instance.inputs["includeReplicasForMajorVersionUpgrade"] is True


def test_redis_is_protected_like_the_sql_instance() -> None:
    """Its tier, network and connect mode force a new instance (an empty cache, new host and AUTH string)."""
    assert run_program({"redis": True}).named("redis-instance").protect is True
