"""The whole Docker dev stack: network, images, PostgreSQL dev and test, Redis, and the outputs the tasks read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker

from infra.dev.network import DevNetwork, DevNetworkArgs
from infra.dev.postgres import Postgres, PostgresArgs
from infra.dev.redis import Redis, RedisArgs
from infra.dev.settings import DevSettings, PostgresService

BACKEND = "docker"  # the `backend` output; the native runner writes "native"


@dataclass
class DevStackArgs:
    settings: DevSettings


class DevStack(pulumi.ComponentResource):
    """Everything `pulumi -C stacks/dev up` declares, built from one ``DevSettings``."""

    network: DevNetwork
    postgres_image: docker.RemoteImage
    redis_image: docker.RemoteImage
    postgres_dev: Postgres
    postgres_test: Postgres
    redis: Redis

    def __init__(self, name: str, args: DevStackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("tether:dev:Stack", name, None, opts)
        settings = args.settings
        child = pulumi.ResourceOptions(parent=self)

        self.network = DevNetwork(f"{name}-network", DevNetworkArgs(settings.network), child)
        # keep_locally: `pulumi destroy` must not delete an image other projects on this machine may use.
        self.postgres_image = docker.RemoteImage(f"{name}-postgres-image", name=settings.postgres_image,
                                                 keep_locally=True, opts=child)
        self.redis_image = docker.RemoteImage(f"{name}-redis-image", name=settings.redis_image,
                                              keep_locally=True, opts=child)

        def postgres(service: PostgresService) -> Postgres:
            return Postgres(f"{name}-{service.name}",
                            PostgresArgs(service=service, image=self.postgres_image.image_id,
                                         major_version=settings.postgres_version, network=self.network.name,
                                         bind_address=settings.bind_address),
                            child)

        self.postgres_dev = postgres(settings.dev)
        self.postgres_test = postgres(settings.test)
        self.redis = Redis(f"{name}-{settings.redis.name}",
                           RedisArgs(service=settings.redis, image=self.redis_image.image_id,
                                     network=self.network.name, bind_address=settings.bind_address),
                           child)
        self.register_outputs(self.stack_outputs())

    def stack_outputs(self) -> dict[str, Any]:
        """The stack outputs, exactly as ``tether.endpoints.parse_outputs`` reads them (passwords secret)."""
        return {
            "postgresDev": self.postgres_dev.endpoint(),
            "postgresTest": self.postgres_test.endpoint(),
            "redis": self.redis.endpoint(),
            "backend": BACKEND,
        }


def build_dev_stack(settings: DevSettings, name: str = "tether") -> DevStack:
    """Declare the dev stack's resources under one component named ``name``."""
    return DevStack(name, DevStackArgs(settings))
