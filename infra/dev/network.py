"""The dev stack's private Docker network, on which each service is reachable by its name."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker


@dataclass
class DevNetworkArgs:
    name: str  # the Docker network's name (settings.network)


class DevNetwork(pulumi.ComponentResource):
    """A bridge network of its own, so the services reach each other by alias and nothing else joins by accident."""

    network: docker.Network
    name: pulumi.Output[str]

    def __init__(self, name: str, args: DevNetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("tether:dev:Network", name, None, opts)
        self.network = docker.Network(
            f"{name}-bridge",
            name=args.name,
            driver="bridge",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.name = self.network.name
        self.register_outputs({"name": self.name})


def published_ip(bind_address: str) -> str:
    """The host IP a port is published on: Docker wants an address, and `localhost` means loopback."""
    return "127.0.0.1" if bind_address == "localhost" else bind_address
