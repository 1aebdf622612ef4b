"""invoke entry point: assembles the task collections; every task lives in tether/tasks/."""

import os
import sys

# invoke turns Python's bytecode cache off unless given --write-pyc, so every command compiled every module it
# imported again (about 0.9 s of CPU per command here: a third of a re-sync with nothing to do). Cache them, as
# plain Python does, unless the user asked Python not to (PYTHONDONTWRITEBYTECODE).
sys.dont_write_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))

from invoke import Collection  # noqa: E402 - after the line above, so these modules are cached too

from tether.tasks import bench, checks, deps, devstack, dumps, mutants, proxy, schema, stacks, sync  # noqa: E402
from tether.tasks import ci as ci_tasks  # noqa: E402
from tether.tasks import env as env_tasks  # noqa: E402
from tether.tasks import redis as redis_tasks  # noqa: E402

ns = Collection(
    devstack.up, devstack.down, devstack.status, devstack.health, devstack.psql, env_tasks.env,
    sync.sync_prod, stacks.preview, stacks.deploy, stacks.outputs, ci_tasks.ci, bench.bench, checks.test, checks.lint,
    mutants.mutants,
)

target = Collection("target")
target.add_task(env_tasks.show_target, name="show", default=True)
target.add_task(env_tasks.use_local, name="local")
target.add_task(env_tasks.use_production, name="production")
ns.add_collection(target)

ns.add_collection(Collection("db", schema.init, schema.status, dumps.dump, dumps.restore, dumps.dumps, sync.reset))
ns.add_collection(Collection("redis", redis_tasks.save))
ns.add_collection(Collection.from_module(proxy), name="proxy")
ns.add_collection(Collection("deps", deps.upgrade))

# Every configurable key, so invoke.yaml and INVOKE_<SECTION>_<KEY> variables can set it; None = built-in default.
ns.configure({
    "tether": {"db": "dev"},
    "dev": {"backend": None},
    "env": {"drivers": None},
    "dumps": {"db": None, "format": None, "jobs": None, "keep": None, "restore_db": None},
    "sync": {"dest": None, "jobs": None, "rules": None, "analyze": None, "spare": None, "snapshot": None,
             "large_objects": None, "subset_whole_below": None},
    "bench": {"repeat": None, "scale": None, "link": None},
    "proxy": {"port": None, "instance": None, "iam": None, "private_ip": None, "credentials_file": None,
              "impersonate": None, "timeout": None},
})
