"""Tasks for the Pulumi stacks: preview, deploy and outputs of dev (Docker) and prod (Cloud SQL)."""

from __future__ import annotations

from typing import Any

from invoke import Context, task

from tether.console import confirm, console, interactive
from tether.tasks.boundary import domain_errors, print_json

# tether.pulumi_stack is imported when a task runs, so every `invoke` command starts faster.

STACK_HELP = "dev (local Docker containers) or prod (Cloud SQL on Google Cloud)"
PROD_QUESTION = "Apply these changes to the production stack (Cloud SQL)?"


@task(help={"stack": STACK_HELP}, auto_shortflags=False)
@domain_errors
def preview(c: Context, stack: str = "") -> None:
    """Show what deploy would change in a stack, changing nothing."""
    from tether import pulumi_stack

    changes = pulumi_stack.preview(stack)
    console().print(f"Preview of the {stack} stack: {pulumi_stack.describe_changes(changes)}.")


@task(help={"stack": STACK_HELP,
            "yes": "apply prod without asking (required in CI, where nobody can answer)"}, auto_shortflags=False)
@domain_errors
def deploy(c: Context, stack: str = "", yes: bool = False) -> None:
    """Apply a stack (pulumi up); prod previews and asks first."""
    from tether import pulumi_stack

    name = pulumi_stack.check_stack_name(stack)
    if name == "prod":
        if not yes and not interactive():
            confirm(PROD_QUESTION, yes=False)  # refuses at once, before a preview nobody will read
        changes = pulumi_stack.preview(name)
        # Without resource changes an update only refreshes the stack outputs: nothing to ask about.
        if pulumi_stack.has_changes(changes):
            confirm(f"{PROD_QUESTION} ({pulumi_stack.describe_changes(changes)})", yes=yes)
    applied = pulumi_stack.up(name)
    console().print(f"Deployed the {name} stack: {pulumi_stack.describe_changes(applied)}.")


@task(help={"stack": STACK_HELP,
            "show_secrets": "print secret values (passwords) instead of masking them",
            "json": "print one JSON document (for CI) instead of a table"}, auto_shortflags=False)
@domain_errors
def outputs(c: Context, stack: str = "", show_secrets: bool = False, json: bool = False) -> None:
    """Print a stack's outputs, secrets masked."""
    from tether import pulumi_stack
    from tether.console import in_ci
    from tether.errors import Refused

    if show_secrets and in_ci():
        raise Refused("outputs --show-secrets is refused under CI: build logs keep what they print. Read single "
                      "values in the step that needs them (`pulumi stack output NAME --show-secrets`) instead.")
    values = pulumi_stack.stack_outputs(stack, show_secrets=show_secrets)
    if json:
        print_json(values)
        return
    _print_table(stack, values)


def _print_table(stack: str, values: dict[str, Any]) -> None:
    import json as json_module

    from rich.table import Table

    table = Table(title=f"Outputs of the {stack} stack", show_header=True)
    table.add_column("output")
    table.add_column("value", overflow="fold")
    for key in sorted(values):
        value = values[key]
        shown = value if isinstance(value, str) else json_module.dumps(value, sort_keys=True)
        table.add_row(key, shown)
    console().print(table)
