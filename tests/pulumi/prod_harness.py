"""Runs the prod program under Pulumi's mocks and keeps what a real engine would receive for each resource.

Mocks never act on resource options, but the SDK still sends them to the resource monitor: ``RecordingMonitor``
keeps every ``RegisterResourceRequest`` (dependencies as URNs, ``protect``, ``ignoreChanges``,
``replaceOnChanges``), so tests check the options the program really passes, not a copy of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor

from infra.prod.config import prod_stack_config
from infra.prod.settings import PROJECT_NAME
from infra.prod.stack import build_prod_stack

PROJECT = "acme-prod"
BASE = {"gcpProject": PROJECT}

SQL_INSTANCE = "gcp:sql/databaseInstance:DatabaseInstance"
SQL_DATABASE = "gcp:sql/database:Database"
SQL_USER = "gcp:sql/user:User"
PASSWORD = "random:index/randomPassword:RandomPassword"
SECRET = "gcp:secretmanager/secret:Secret"
SECRET_VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
ACCOUNT = "gcp:serviceaccount/account:Account"
IAM_MEMBER = "gcp:projects/iAMMember:IAMMember"
SERVICE = "gcp:projects/service:Service"
REDIS = "gcp:redis/instance:Instance"


def mock_password(name: str) -> str:
    return f"Mock-pw.{name}"


class RecordingMocks(pulumi.runtime.Mocks):
    """Echo inputs as state (camelCase), fill in what Google would compute, remember every resource."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        state = dict(args.inputs)
        if args.typ == PASSWORD:
            state["result"] = mock_password(args.name)
        elif args.typ == ACCOUNT:
            state["email"] = f"{state['accountId']}@{state['project']}.iam.gserviceaccount.com"
        elif args.typ == SQL_INSTANCE:
            ip = state["settings"]["ipConfiguration"]
            state["connectionName"] = f"{state['project']}:{state['region']}:{state['name']}"
            state["publicIpAddress"] = "34.1.2.3" if ip.get("ipv4Enabled") else ""
            state["privateIpAddress"] = "10.20.0.3" if ip.get("privateNetwork") else ""
        elif args.typ == REDIS:
            state.update(host="10.30.0.4", port=6378, authString="mock-redis-auth",
                         serverCaCerts=[{"cert": "-----BEGIN CERTIFICATE-----mock"}])
        elif args.typ == SECRET:
            state["name"] = f"projects/{state['project']}/secrets/{state['secretId']}"
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


class RecordingMonitor(MockMonitor):
    """The mock resource monitor, keeping each registration request as the engine would get it."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.requests: dict[str, Any] = {}

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method keeps its name
        response = super().RegisterResource(request)
        self.requests[response.urn] = request
        return response


@dataclass(frozen=True)
class Registration:
    """One resource as the engine would receive it: identity, inputs and the options it acts on."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    dependencies: frozenset[str]
    protect: bool
    ignore_changes: tuple[str, ...]
    replace_on_changes: tuple[str, ...]
    delete_before_replace: bool


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def unwrap(value: Any) -> Any:
    return value["value"] if is_secret(value) else value


@dataclass
class Deployment:
    """What the program registered, as the engine would receive it, and the resolved stack outputs."""

    resources: list[pulumi.runtime.MockResourceArgs]
    registrations: dict[str, Registration]  # by resource name (unique in this stack)
    outputs: dict[str, Any]

    def of_type(self, typ: str) -> list[dict[str, Any]]:
        return [args.inputs for args in self.resources if args.typ == typ]

    def named(self, name: str) -> Registration:
        return self.registrations[name]

    def by_urn(self, urn: str) -> Registration:
        (found,) = [registration for registration in self.registrations.values() if registration.urn == urn]
        return found

    @property
    def primary(self) -> dict[str, Any]:
        return self.named("postgres-instance").inputs

    @property
    def settings(self) -> dict[str, Any]:
        return self.primary["settings"]

    def flags(self, instance: dict[str, Any] | None = None) -> dict[str, str]:
        settings = (instance or self.primary)["settings"]
        return {flag["name"]: flag["value"] for flag in settings["databaseFlags"]}

    def user(self, name: str) -> dict[str, Any]:
        (found,) = [user for user in self.of_type(SQL_USER) if unwrap(user["name"]) == name]
        return found

    def custom_resources(self) -> list[Registration]:
        return [registration for registration in self.registrations.values() if registration.custom]


def run_program(values: dict[str, Any] | None = None,
                program: Callable[[], dict[str, Any]] | None = None) -> Deployment:
    """Run the prod program (or ``program``) for ``BASE`` plus ``values`` under fresh mocks."""
    mocks = RecordingMocks()
    monitor = RecordingMonitor(mocks)
    # Fresh mocks per run: the dev stack's tests install theirs in the same process.
    pulumi.runtime.set_mocks(mocks, project=PROJECT_NAME, stack="prod", preview=False, monitor=monitor)
    build = program or (lambda: build_prod_stack(prod_stack_config({**BASE, **(values or {})}.get)))
    captured: dict[str, Any] = {}

    @pulumi.runtime.test
    def declare() -> pulumi.Output[Any]:
        outputs = build()
        return pulumi.Output.all(**outputs).apply(captured.update)

    declare()
    inputs = {args.name: args for args in mocks.resources}
    registrations = {}
    for urn, request in monitor.requests.items():
        if request.type == "pulumi:pulumi:Stack":
            continue
        mock_args = inputs.get(request.name)
        registrations[request.name] = Registration(
            urn=urn, type=request.type, name=request.name, parent=request.parent, custom=bool(request.custom),
            inputs=dict(mock_args.inputs) if mock_args is not None else {},
            dependencies=frozenset(request.dependencies), protect=bool(request.protect),
            ignore_changes=tuple(request.ignoreChanges), replace_on_changes=tuple(request.replaceOnChanges),
            delete_before_replace=bool(request.deleteBeforeReplace))
    return Deployment(mocks.resources, registrations, captured)
