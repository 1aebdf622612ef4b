"""The `ci` task: what a pipeline runs for this repo."""

from __future__ import annotations

from invoke import Context, task
from invoke.exceptions import Exit

from tether.tasks.boundary import domain_errors, print_json

# tether.ci and tether.pulumi_stack are imported when the task runs, so every `invoke` command starts faster.


@task(help={
    "json": "print a JSON summary of the steps at the end (the steps' own output goes to stderr)",
    "fail_fast": "stop at the first failing step",
})
@domain_errors
def ci(c: Context, json: bool = False, fail_fast: bool = False) -> None:
    """Run the pipeline: lint, type check, tests against a native dev stack, env --check, prod preview."""
    from tether import ci as pipeline
    from tether import pulumi_stack
    from tether.console import console

    steps = pipeline.ci_plan(pulumi_ok=pulumi_stack.pulumi_available(),
                             credentials_ok=pipeline.google_credentials_present())
    if json:
        results = pipeline.run_plan(steps, fail_fast=fail_fast, output_to_stderr=True)
        print_json({"passed": all(r.status != "failed" for r in results), "steps": [r.as_dict() for r in results]})
    else:
        results = pipeline.run_plan(steps, fail_fast=fail_fast)
        for result in results:
            extra = f" ({result.detail})" if result.detail else ""
            console().print(f"{result.status:>8}  {result.name:<13} {result.seconds:>7.2f}s{extra}")
    if any(result.status == "failed" for result in results):
        raise Exit(code=1)
