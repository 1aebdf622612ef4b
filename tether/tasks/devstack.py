"""Tasks for the dev environment: up, down, status, health, psql."""

from __future__ import annotations

from invoke import Context, task

from tether.tasks.boundary import domain_errors


@task(help={"backend": "native, docker or auto (default: docker when its engine and the Pulumi CLI work)"})
@domain_errors
def up(c: Context, backend: str = "auto") -> None:
    """Bring the dev environment up: PostgreSQL dev and test databases and Redis."""
    raise NotImplementedError


@task
@domain_errors
def down(c: Context) -> None:
    """Stop the dev environment."""


@task
@domain_errors
def status(c: Context) -> None:
    """Show each dev service."""


@task
@domain_errors
def health(c: Context) -> None:
    """Check each dev service."""


@task
@domain_errors
def psql(c: Context) -> None:
    """Open psql."""
