"""invoke entry point: assembles the task collections; every task lives in tether/tasks/."""

from invoke import Collection

from tether.tasks import checks, devstack

ns = Collection()
for task in (devstack.up, devstack.down, devstack.status, devstack.health, devstack.psql, checks.test, checks.lint):
    ns.add_task(task)
