"""The dev stack's Redis: a Docker container with a generated password and an append-only file on a volume."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from infra.dev.network import published_ip
from infra.dev.settings import RedisService

PASSWORD_LENGTH = 32
DATA_DIRECTORY = "/data"  # the official image's working directory and declared volume


@dataclass
class RedisArgs:
    service: RedisService
    image: pulumi.Input[str]  # image ID, from a docker.RemoteImage
    network: pulumi.Input[str]  # Docker network name
    bind_address: str  # host address the port is published on (loopback only)


def server_command(service: RedisService) -> list[str]:
    """The container command: redis-server reading `requirepass` from stdin, so no argv ever holds the password.

    `docker inspect` shows only the variable's name, and the process list shows no password even before
    Redis rewrites its title. It still goes through the image's entrypoint, which drops root for `redis`.
    """
    appendonly = "yes" if service.appendonly else "no"
    script = (f"exec docker-entrypoint.sh redis-server - --appendonly {appendonly} <<EOF\n"
              'requirepass "$REDIS_PASSWORD"\n'
              "EOF\n")
    return ["sh", "-c", script]


def health_test() -> list[str]:
    """The health check: an authenticated PING (REDISCLI_AUTH is in the environment).

    redis-cli exits 0 even when the reply is an error such as NOAUTH, so the reply itself is checked.
    """
    return ["CMD-SHELL", "redis-cli ping | grep -q PONG"]


class Redis(pulumi.ComponentResource):
    """A Redis container on the dev network, published on the loopback address only."""

    password: pulumi.Output[str]
    container: docker.Container
    volume: docker.Volume

    def __init__(self, name: str, args: RedisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("tether:dev:Redis", name, None, opts)
        service = args.service
        self._service = service
        self._host = published_ip(args.bind_address)

        generated = random.RandomPassword(
            f"{name}-password", length=PASSWORD_LENGTH, special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.password = pulumi.Output.secret(generated.result)
        # The server reads REDIS_PASSWORD (see server_command); redis-cli, in the health check, REDISCLI_AUTH.
        environment: pulumi.Output[list[str]] = pulumi.Output.secret(generated.result.apply(
            lambda password: [f"REDIS_PASSWORD={password}", f"REDISCLI_AUTH={password}"]))
        self.volume = docker.Volume(f"{name}-data", name=service.volume, opts=pulumi.ResourceOptions(parent=self))
        self.container = docker.Container(
            f"{name}-container",
            name=service.name,
            image=args.image,
            command=server_command(service),
            envs=environment,
            ports=[docker.ContainerPortArgs(internal=service.internal_port, external=service.host_port,
                                            ip=self._host, protocol="tcp")],
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name, container_path=DATA_DIRECTORY)],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.network, aliases=[service.name])],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=health_test(), interval="10s", timeout="5s", retries=5,
                start_period="30s", start_interval="1s",
            ),
            restart="unless-stopped",
            wait=True,
            wait_timeout=120,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"containerName": self.container.name, "volumeName": self.volume.name,
                               **self.endpoint()})

    def endpoint(self) -> dict[str, Any]:
        """The stack output for Redis, in the shape ``tether.endpoints.parse_outputs`` reads."""
        return {
            "host": self._host,
            "port": self._service.host_port,
            "password": self.password,
            "internalHost": self._service.name,
            "internalPort": self._service.internal_port,
        }
