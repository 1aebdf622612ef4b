"""One PostgreSQL server of the dev stack: a Docker container with a generated password and a named volume."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from infra.dev.network import published_ip
from infra.dev.settings import PostgresService

PASSWORD_LENGTH = 32


@dataclass
class PostgresArgs:
    service: PostgresService
    image: pulumi.Input[str]  # image ID, from a docker.RemoteImage
    major_version: int  # decides where the image keeps its data
    network: pulumi.Input[str]  # Docker network name
    bind_address: str  # host address the port is published on (loopback only)


def data_directory(major_version: int) -> str:
    """Where the volume goes: the official image moved its data volume in 18 and refuses the old path there."""
    return "/var/lib/postgresql" if major_version >= 18 else "/var/lib/postgresql/data"


def readiness_test(service: PostgresService) -> list[str]:
    """The health check: pg_isready over TCP.

    Over TCP and not the socket because on first start the image initialises the cluster with a
    temporary socket-only server, which would report ready before the real server listens.
    """
    return ["CMD", "pg_isready", "-h", "127.0.0.1", "-p", str(service.internal_port),
            "-U", service.user, "-d", service.database]


class Postgres(pulumi.ComponentResource):
    """A PostgreSQL container on the dev network, published on the loopback address only."""

    password: pulumi.Output[str]
    container: docker.Container
    volume: docker.Volume

    def __init__(self, name: str, args: PostgresArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("tether:dev:Postgres", name, None, opts)
        service = args.service
        self._service = service
        self._host = published_ip(args.bind_address)

        # No special characters: the password goes into URLs and conninfo strings unescaped by other tools.
        generated = random.RandomPassword(
            f"{name}-password", length=PASSWORD_LENGTH, special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.password = pulumi.Output.secret(generated.result)
        # The image reads these only to initialise an empty volume: a new password later needs ALTER ROLE too.
        environment: pulumi.Output[list[str]] = pulumi.Output.secret(generated.result.apply(
            lambda password: [f"POSTGRES_DB={service.database}", f"POSTGRES_USER={service.user}",
                              f"POSTGRES_PASSWORD={password}"]))
        self.volume = docker.Volume(f"{name}-data", name=service.volume, opts=pulumi.ResourceOptions(parent=self))
        self.container = docker.Container(
            f"{name}-container",
            name=service.name,
            image=args.image,
            envs=environment,
            ports=[docker.ContainerPortArgs(internal=service.internal_port, external=service.host_port,
                                            ip=self._host, protocol="tcp")],
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name,
                                                container_path=data_directory(args.major_version))],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.network, aliases=[service.name])],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=readiness_test(service), interval="10s", timeout="5s", retries=5,
                start_period="60s", start_interval="1s",
            ),
            restart="unless-stopped",
            wait=True,  # `pulumi up` returns once the server answers, so the tasks can connect right away
            wait_timeout=180,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"containerName": self.container.name, "volumeName": self.volume.name,
                               **self.endpoint()})

    def endpoint(self) -> dict[str, Any]:
        """The stack output for this server, in the shape ``tether.endpoints.parse_outputs`` reads."""
        return {
            "host": self._host,
            "port": self._service.host_port,
            "database": self._service.database,
            "user": self._service.user,
            "password": self.password,
            "internalHost": self._service.name,
            "internalPort": self._service.internal_port,
        }
