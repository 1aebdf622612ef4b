"""The policy pack's verdicts word for word, and the pack's wiring (issue 21, mutation testing).

A violation's sentence is what a person reads in `pulumi preview`: each rule's exact message is checked here.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pulumi_policy import EnforcementLevel

from infra.policy_rules import (
    REDIS_INSTANCE,
    RULES,
    SQL_INSTANCE,
    Subject,
    _is_whole_internet,
    build_policies,
    violations,
)


def _instance(**settings: Any) -> dict[str, Any]:
    return {"settings": settings}


@pytest.mark.parametrize(("props", "protect", "expected"), [
    (_instance(), False, {
        "cloudsql-backups-and-pitr": [
            "automated backups are off: set settings.backupConfiguration.enabled to true",
            "point-in-time recovery is off: set settings.backupConfiguration.pointInTimeRecoveryEnabled to true"],
        "cloudsql-ssl-required": [
            "settings.ipConfiguration.sslMode is None: it must be one of ENCRYPTED_ONLY, "
            "TRUSTED_CLIENT_CERTIFICATE_REQUIRED so that no client connects without TLS"],
        "cloudsql-deletion-protection": [
            "deletionProtection is not true: Pulumi could delete the instance",
            "settings.deletionProtectionEnabled is not true: the Cloud SQL API could delete the instance",
            "the resource is not declared with protect=True"]}),
    ({"deletionProtection": True, "settings": {
        "deletionProtectionEnabled": True, "backupConfiguration": {"enabled": True, "pointInTimeRecoveryEnabled": True},
        "ipConfiguration": {"sslMode": "TRUSTED_CLIENT_CERTIFICATE_REQUIRED", "authorizedNetworks": [
            {"value": "10.0.0.0/8"}, {"value": "0.0.0.0/0"}, "::/0", {"name": "no value"}]}}}, True, {
        "cloudsql-no-open-network": [
            "authorized network '0.0.0.0/0' opens the instance to the whole internet: reach it through the Cloud SQL "
            "proxy or the private IP instead",
            "authorized network '::/0' opens the instance to the whole internet: reach it through the Cloud SQL "
            "proxy or the private IP instead"]}),
], ids=["bare-primary", "open-networks"])
def test_sql_instance_messages(props, protect, expected):
    assert violations(Subject(SQL_INSTANCE, props, protect)) == expected


@pytest.mark.parametrize(("props", "expected"), [
    ({}, ["authEnabled is not true: any host on the network could use Redis",
          "transitEncryptionMode is None: it must be SERVER_AUTHENTICATION (TLS)"]),
    ({"authEnabled": True, "transitEncryptionMode": "DISABLED"},
     ["transitEncryptionMode is 'DISABLED': it must be SERVER_AUTHENTICATION (TLS)"]),
    ({"authEnabled": "true", "transitEncryptionMode": "SERVER_AUTHENTICATION"},
     ["authEnabled is not true: any host on the network could use Redis"]),
    ({"authEnabled": True, "transitEncryptionMode": "SERVER_AUTHENTICATION"}, []),
], ids=["bare", "no-tls", "auth-as-text", "hardened"])
def test_redis_messages(props, expected):
    assert violations(Subject(REDIS_INSTANCE, props)).get("memorystore-auth-and-tls", []) == expected


@pytest.mark.parametrize(("value", "whole"), [
    ("0.0.0.0/0", True), ("::/0", True), (" 0.0.0.0/0 ", True), ("1.2.3.4/0", True), ("*", True), (" * ", True),
    ("0.0.0.0/1", False), ("10.0.0.0/8", False), ("::/1", False), ("", False), ("anywhere", False),
    ("0.0.0.0/0/0", False),
], ids=lambda value: repr(value) if isinstance(value, str) else str(value))
def test_is_whole_internet(value, whole):
    assert _is_whole_internet(value) is whole


def _args(resource_type: str, props: dict[str, Any], opts: Any) -> SimpleNamespace:
    return SimpleNamespace(resource_type=resource_type, props=props, opts=opts, name="db")


@pytest.mark.parametrize(("opts", "protected"), [
    (SimpleNamespace(protect=True), True), (SimpleNamespace(protect=False), False), (SimpleNamespace(), False),
    (None, False),
], ids=["protected", "not-protected", "no-protect-option", "no-options"])
def test_pack_reads_protect_from_the_resource_options(opts, protected):
    policy = next(policy for policy in build_policies() if policy.name == "cloudsql-deletion-protection")
    reported: list[tuple[Any, ...]] = []
    props = {"deletionProtection": True, "settings": {"deletionProtectionEnabled": True}}
    policy.validate(_args(SQL_INSTANCE, props, opts), lambda *args: reported.append(args))
    assert reported == ([] if protected else [("db: the resource is not declared with protect=True", None)])


def test_pack_policies_skip_other_resource_types():
    reported: list[tuple[Any, ...]] = []
    for policy in build_policies():
        policy.validate(_args("gcp:storage/bucket:Bucket", {}, None), lambda *args: reported.append(args))
    assert reported == []


def test_pack_policies_carry_each_rule_word_for_word():
    """`pulumi preview --policy-pack` lists each policy's name and description: they are the rules' own."""
    assert [(policy.name, policy.description, policy.enforcement_level) for policy in build_policies()] == [
        (rule.name, rule.description, EnforcementLevel.MANDATORY) for rule in RULES]


@pytest.mark.parametrize(("resource_type", "props", "opts"), [
    (REDIS_INSTANCE, {"authEnabled": True, "transitEncryptionMode": "SERVER_AUTHENTICATION"}, None),
    (SQL_INSTANCE, {"deletionProtection": True, "settings": {
        "deletionProtectionEnabled": True, "backupConfiguration": {"enabled": True, "pointInTimeRecoveryEnabled": True},
        "ipConfiguration": {"sslMode": "ENCRYPTED_ONLY", "authorizedNetworks": [{"value": "10.0.0.0/8"}]}}},
     SimpleNamespace(protect=True)),
], ids=["redis", "cloudsql"])
def test_pack_reports_nothing_for_hardened_resources(resource_type, props, opts):
    """Each check hands the pack a list to iterate, empty when the resource is hardened."""
    reported: list[tuple[Any, ...]] = []
    for policy in build_policies():
        policy.validate(_args(resource_type, props, opts), lambda *args: reported.append(args))
    assert reported == []


@pytest.mark.parametrize("props", [{"settings": "db-custom-1-3840"}, {"settings": {"ipConfiguration": ["x"]}}],
                         ids=["settings-not-a-mapping", "ip-configuration-not-a-mapping"])
def test_a_path_through_a_value_that_is_no_mapping_reads_as_missing(props):
    assert Subject(SQL_INSTANCE, props).get("settings", "ipConfiguration", "sslMode") is None
