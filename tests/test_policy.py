"""The prod hardening policy rules, called directly on property dicts (the pack's entry point starts a server)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from infra.policy_rules import PACK_NAME, REDIS_INSTANCE, RULES, SQL_INSTANCE, Subject, build_policies, violations

ROOT = Path(__file__).resolve().parents[1]


def hardened_instance() -> dict[str, Any]:
    """A primary as the prod program declares it, in the camelCase the engine hands to policies."""
    return {
        "name": "app-postgres-prod",
        "databaseVersion": "POSTGRES_15",
        "deletionProtection": True,
        "settings": {
            "tier": "db-custom-1-3840",
            "deletionProtectionEnabled": True,
            "backupConfiguration": {"enabled": True, "pointInTimeRecoveryEnabled": True,
                                    "transactionLogRetentionDays": 7},
            "ipConfiguration": {"ipv4Enabled": True, "sslMode": "ENCRYPTED_ONLY", "authorizedNetworks": []},
        },
    }


def hardened_redis() -> dict[str, Any]:
    return {"name": "app-redis-prod", "authEnabled": True, "transitEncryptionMode": "SERVER_AUTHENTICATION"}


def weakened(change: Callable[[dict[str, Any]], None], base: Callable[[], dict[str, Any]] = hardened_instance
             ) -> dict[str, Any]:
    props = copy.deepcopy(base())
    change(props)
    return props


def settings(props: dict[str, Any]) -> dict[str, Any]:
    return props["settings"]


def test_hardened_resources_pass() -> None:
    assert violations(Subject(SQL_INSTANCE, hardened_instance(), protect=True)) == {}
    assert violations(Subject(REDIS_INSTANCE, hardened_redis())) == {}


WEAKENED_INSTANCES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("backups-off", lambda p: settings(p)["backupConfiguration"].update(enabled=False), "cloudsql-backups-and-pitr"),
    ("pitr-off", lambda p: settings(p)["backupConfiguration"].update(pointInTimeRecoveryEnabled=False),
     "cloudsql-backups-and-pitr"),
    ("no-backup-configuration", lambda p: settings(p).pop("backupConfiguration"), "cloudsql-backups-and-pitr"),
    ("ssl-allows-plain-text", lambda p: settings(p)["ipConfiguration"].update(
        sslMode="ALLOW_UNENCRYPTED_AND_ENCRYPTED"), "cloudsql-ssl-required"),
    ("ssl-mode-unset", lambda p: settings(p)["ipConfiguration"].pop("sslMode"), "cloudsql-ssl-required"),
    ("open-to-the-internet", lambda p: settings(p)["ipConfiguration"].update(
        authorizedNetworks=[{"name": "office", "value": "203.0.113.0/24"}, {"name": "all", "value": "0.0.0.0/0"}]),
     "cloudsql-no-open-network"),
    ("open-ipv6", lambda p: settings(p)["ipConfiguration"].update(authorizedNetworks=[{"value": "::/0"}]),
     "cloudsql-no-open-network"),
    ("open-host-bits", lambda p: settings(p)["ipConfiguration"].update(authorizedNetworks=[{"value": "10.0.0.1/0"}]),
     "cloudsql-no-open-network"),
    ("pulumi-deletion-protection-off", lambda p: p.update(deletionProtection=False), "cloudsql-deletion-protection"),
    ("pulumi-deletion-protection-unset", lambda p: p.pop("deletionProtection"), "cloudsql-deletion-protection"),
    ("api-deletion-protection-off", lambda p: settings(p).update(deletionProtectionEnabled=False),
     "cloudsql-deletion-protection"),
]


@pytest.mark.parametrize(("change", "rule"), [(change, rule) for _, change, rule in WEAKENED_INSTANCES],
                         ids=[name for name, _, _ in WEAKENED_INSTANCES])
def test_each_weakened_instance_is_rejected(change: Callable[[dict[str, Any]], None], rule: str) -> None:
    found = violations(Subject(SQL_INSTANCE, weakened(change), protect=True))
    assert list(found) == [rule]
    assert all(problem.strip() for problem in found[rule])


def test_unprotected_instance_is_rejected() -> None:
    found = violations(Subject(SQL_INSTANCE, hardened_instance(), protect=False))
    assert found == {"cloudsql-deletion-protection": ["the resource is not declared with protect=True"]}


def test_a_narrow_authorized_network_is_not_the_internet() -> None:
    props = weakened(lambda p: settings(p)["ipConfiguration"].update(authorizedNetworks=[{"value": "203.0.113.7/32"}]))
    assert violations(Subject(SQL_INSTANCE, props, protect=True)) == {}


def test_read_replica_needs_tls_but_not_backups_or_protection() -> None:
    def as_replica(props: dict[str, Any]) -> None:
        props["masterInstanceName"] = "app-postgres-prod"
        props["deletionProtection"] = False
        settings(props)["backupConfiguration"] = {"enabled": False}

    assert violations(Subject(SQL_INSTANCE, weakened(as_replica))) == {}
    def as_open_replica(props: dict[str, Any]) -> None:
        as_replica(props)
        settings(props)["ipConfiguration"]["sslMode"] = ""

    open_replica = weakened(as_open_replica)
    assert list(violations(Subject(SQL_INSTANCE, open_replica))) == ["cloudsql-ssl-required"]


@pytest.mark.parametrize("master", ["", "   ", None], ids=["empty", "blank", "null"])
def test_a_primary_with_an_empty_master_name_is_still_a_primary(master: str | None) -> None:
    """The engine reports a primary's masterInstanceName as "": backups and protection still apply to it."""
    def as_unnamed_primary(props: dict[str, Any]) -> None:
        props["masterInstanceName"] = master
        props["deletionProtection"] = False
        settings(props)["backupConfiguration"] = {"enabled": False}

    found = violations(Subject(SQL_INSTANCE, weakened(as_unnamed_primary), protect=False))
    assert set(found) == {"cloudsql-backups-and-pitr", "cloudsql-deletion-protection"}
    assert "automated backups are off: set settings.backupConfiguration.enabled to true" in \
        found["cloudsql-backups-and-pitr"]


@pytest.mark.parametrize("change", [
    lambda p: p.update(authEnabled=False),
    lambda p: p.pop("authEnabled"),
    lambda p: p.update(transitEncryptionMode="DISABLED"),
], ids=["auth-off", "auth-unset", "no-tls"])
def test_weakened_redis_is_rejected(change: Callable[[dict[str, Any]], None]) -> None:
    assert list(violations(Subject(REDIS_INSTANCE, weakened(change, hardened_redis)))) == ["memorystore-auth-and-tls"]


def test_other_resource_types_are_left_alone() -> None:
    assert violations(Subject("gcp:storage/bucket:Bucket", {"settings": {}})) == {}


def resource_args(resource_type: str, props: dict[str, Any], protect: bool) -> ResourceValidationArgs:
    options = PolicyResourceOptions(protect=protect, ignore_changes=[], delete_before_replace=None, aliases=[],
                                    custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[])
    return ResourceValidationArgs(resource_type=resource_type, props=props,
                                  urn=f"urn:pulumi:prod::tether-prod::{resource_type}::postgres-instance",
                                  name="postgres-instance", opts=options, provider=None)


def run_policies(args: ResourceValidationArgs) -> dict[str, list[str]]:
    reported: dict[str, list[str]] = {}
    for policy in build_policies():
        assert isinstance(policy, ResourceValidationPolicy)
        messages: list[str] = []

        def report(message: str, urn: str | None = None, found: list[str] = messages) -> None:
            found.append(message)

        validate = policy.validate
        assert callable(validate)
        validate(args, report)
        if messages:
            reported[policy.name] = messages
    return reported


def test_pack_policies_report_through_pulumi_policy() -> None:
    policies = build_policies()
    assert [policy.name for policy in policies] == [rule.name for rule in RULES]
    assert all(policy.enforcement_level == EnforcementLevel.MANDATORY for policy in policies)
    assert run_policies(resource_args(SQL_INSTANCE, hardened_instance(), protect=True)) == {}
    weak = weakened(lambda p: settings(p)["ipConfiguration"].update(sslMode="ALLOW_UNENCRYPTED_AND_ENCRYPTED"))
    reported = run_policies(resource_args(SQL_INSTANCE, weak, protect=False))
    assert set(reported) == {"cloudsql-ssl-required", "cloudsql-deletion-protection"}
    assert all(message.startswith("postgres-instance: ") for message in reported["cloudsql-ssl-required"])


def test_pack_files() -> None:
    pack = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert pack["runtime"] == {"name": "python", "options": {"toolchain": "uv", "virtualenv": "../.venv"}}
    entry_point = (ROOT / "policy" / "__main__.py").read_text()
    assert "build_policies()" in entry_point and PACK_NAME == "tether-prod-hardening"
