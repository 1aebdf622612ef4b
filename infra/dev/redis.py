"""The dev stack's Redis: a Docker container with a generated password and an append-only file on a volume.

The password reaches the container as a root-only file uploaded before it starts, never as an environment
variable: `docker inspect` prints a container's whole environment (Config.Env), values included.
"""

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
# Read by root only: the container's shell (before the image's entrypoint drops to `redis`) and the health check.
# In /run, which every base image has: the upload creates no directory of its own.
PASSWORD_FILE = "/run/redis-password"  # noqa: S105 - a path, not a password
PASSWORD_FILE_MODE = "0400"  # noqa: S105 - a file mode


@dataclass
class RedisArgs:
    service: RedisService
    image: pulumi.Input[str]  # image ID, from a docker.RemoteImage
    network: pulumi.Input[str]  # Docker network name
    bind_address: str  # host address the port is published on (loopback only)


def server_command(service: RedisService, password_file: str = PASSWORD_FILE) -> list[str]:
    """The container command: redis-server reading `requirepass` from stdin, itself read from the password file.

    Neither an argv nor the container's environment ever holds the password: `docker inspect` shows only this
    command, and the process list shows no password even before Redis rewrites its title. It still goes
    through the image's entrypoint, which drops root for `redis` after the file has been read.
    """
    appendonly = "yes" if service.appendonly else "no"
    script = (f"exec docker-entrypoint.sh redis-server - --appendonly {appendonly} <<EOF\n"
              f'requirepass "$(cat {password_file})"\n'
              "EOF\n")
    return ["sh", "-c", script]


def health_test(password_file: str = PASSWORD_FILE) -> list[str]:
    """The health check: an authenticated PING, with REDISCLI_AUTH set for redis-cli alone from the file.

    redis-cli exits 0 even when the reply is an error such as NOAUTH, so the reply itself is checked.
    """
    return ["CMD-SHELL", f'REDISCLI_AUTH="$(cat {password_file})" redis-cli ping | grep -q PONG']


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
        self.volume = docker.Volume(f"{name}-data", name=service.volume, opts=pulumi.ResourceOptions(parent=self))
        self.container = docker.Container(
            f"{name}-container",
            name=service.name,
            image=args.image,
            command=server_command(service),
            # Copied in before the container starts; secret in Pulumi's state, absent from `docker inspect`.
            uploads=[docker.ContainerUploadArgs(file=PASSWORD_FILE, content=self.password,
                                                permissions=PASSWORD_FILE_MODE)],
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
