"""The hardening rules the policy pack enforces on the prod stack, as pure checks over resource properties.

Each check takes the properties Pulumi hands a policy (camelCase, as the engine sees them) and returns
its violations as sentences; ``policy/__main__.py`` only wraps them into a pulumi-policy pack.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pulumi_policy import Policy

PACK_NAME = "tether-prod-hardening"
SQL_INSTANCE = "gcp:sql/databaseInstance:DatabaseInstance"
REDIS_INSTANCE = "gcp:redis/instance:Instance"
SECURE_SSL_MODES = ("ENCRYPTED_ONLY", "TRUSTED_CLIENT_CERTIFICATE_REQUIRED")


@dataclass(frozen=True)
class Subject:
    """One resource as a policy sees it: its type token, its properties, and whether it is protected."""

    resource_type: str
    props: Mapping[str, Any] = field(default_factory=dict)
    protect: bool = False

    def get(self, *path: str) -> Any:
        """The value at ``path`` in the properties, or None where any step is missing."""
        value: Any = self.props
        for key in path:
            if not isinstance(value, Mapping):
                return None
            value = value.get(key)
        return value

    @property
    def is_replica(self) -> bool:
        """A read replica names its primary; an empty or blank ``masterInstanceName`` is a primary's.

        The engine hands a primary's state over with ``masterInstanceName: ""``: counting that as a replica
        would skip the backup and deletion-protection rules for the very instance that holds the data.
        """
        master = self.props.get("masterInstanceName")
        return isinstance(master, str) and master.strip() != ""


Check = Callable[[Subject], list[str]]


def backups_with_point_in_time_recovery(subject: Subject) -> list[str]:
    """A primary keeps automated backups and the write-ahead log for point-in-time recovery."""
    if subject.is_replica:  # Cloud SQL refuses backups on read replicas; the primary's cover them
        return []
    problems = []
    if subject.get("settings", "backupConfiguration", "enabled") is not True:
        problems.append("automated backups are off: set settings.backupConfiguration.enabled to true")
    if subject.get("settings", "backupConfiguration", "pointInTimeRecoveryEnabled") is not True:
        problems.append("point-in-time recovery is off: set "
                        "settings.backupConfiguration.pointInTimeRecoveryEnabled to true")
    return problems


def ssl_required(subject: Subject) -> list[str]:
    """Every connection is encrypted: ``sslMode`` refuses plain-text clients."""
    mode = subject.get("settings", "ipConfiguration", "sslMode")
    if mode in SECURE_SSL_MODES:
        return []
    return [f"settings.ipConfiguration.sslMode is {mode!r}: it must be one of " + ", ".join(SECURE_SSL_MODES)
            + " so that no client connects without TLS"]


def no_open_networks(subject: Subject) -> list[str]:
    """No authorized network opens the instance to the whole internet."""
    networks = subject.get("settings", "ipConfiguration", "authorizedNetworks") or []
    problems = []
    for network in networks:
        value = str(network.get("value", "")) if isinstance(network, Mapping) else str(network)
        if _is_whole_internet(value):
            problems.append(f"authorized network {value!r} opens the instance to the whole internet: reach it "
                            "through the Cloud SQL proxy or the private IP instead")
    return problems


def _is_whole_internet(value: str) -> bool:
    try:
        return ipaddress.ip_network(value.strip(), strict=False).prefixlen == 0
    except ValueError:
        return value.strip() in {"0.0.0.0/0", "::/0", "*"}


def deletion_protected(subject: Subject) -> list[str]:
    """A primary cannot be deleted by Pulumi, by the API, or by a removed resource."""
    if subject.is_replica:  # a replica holds no data of its own and may be removed
        return []
    problems = []
    if subject.get("deletionProtection") is not True:
        problems.append("deletionProtection is not true: Pulumi could delete the instance")
    if subject.get("settings", "deletionProtectionEnabled") is not True:
        problems.append("settings.deletionProtectionEnabled is not true: the Cloud SQL API could delete "
                        "the instance")
    if not subject.protect:
        problems.append("the resource is not declared with protect=True")
    return problems


def redis_auth_and_tls(subject: Subject) -> list[str]:
    """Memorystore asks for AUTH and encrypts traffic in transit."""
    problems = []
    if subject.get("authEnabled") is not True:
        problems.append("authEnabled is not true: any host on the network could use Redis")
    if subject.get("transitEncryptionMode") != "SERVER_AUTHENTICATION":
        problems.append(f"transitEncryptionMode is {subject.get('transitEncryptionMode')!r}: it must be "
                        "SERVER_AUTHENTICATION (TLS)")
    return problems


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    resource_type: str
    check: Check


RULES: tuple[Rule, ...] = (
    Rule("cloudsql-backups-and-pitr", "Cloud SQL primaries keep automated backups with point-in-time recovery.",
         SQL_INSTANCE, backups_with_point_in_time_recovery),
    Rule("cloudsql-ssl-required", "Cloud SQL instances refuse unencrypted connections.", SQL_INSTANCE, ssl_required),
    Rule("cloudsql-no-open-network", "No Cloud SQL authorized network is 0.0.0.0/0 (or ::/0).", SQL_INSTANCE,
         no_open_networks),
    Rule("cloudsql-deletion-protection", "Cloud SQL primaries have deletion protection and protect=True.",
         SQL_INSTANCE, deletion_protected),
    Rule("memorystore-auth-and-tls", "Memorystore Redis has AUTH and in-transit encryption.", REDIS_INSTANCE,
         redis_auth_and_tls),
)


def violations(subject: Subject) -> dict[str, list[str]]:
    """Every rule's violations for ``subject``, by rule name (rules for other types are skipped)."""
    found = {rule.name: rule.check(subject) for rule in RULES if rule.resource_type == subject.resource_type}
    return {name: problems for name, problems in found.items() if problems}


def build_policies() -> list[Policy]:
    """The rules as mandatory pulumi-policy policies (importing this starts no server; PolicyPack does)."""
    from pulumi_policy import EnforcementLevel, ResourceValidationPolicy

    def validator(rule: Rule) -> Callable[[Any, Callable[..., None]], None]:
        def validate(args: Any, report_violation: Callable[..., None]) -> None:
            if args.resource_type != rule.resource_type:
                return
            protect = bool(getattr(args.opts, "protect", False)) if args.opts is not None else False
            for problem in rule.check(Subject(args.resource_type, args.props, protect)):
                report_violation(f"{args.name}: {problem}", None)

        return validate

    return [ResourceValidationPolicy(name=rule.name, description=rule.description, validate=validator(rule),
                                     enforcement_level=EnforcementLevel.MANDATORY) for rule in RULES]
