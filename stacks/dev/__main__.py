"""The dev stack's Pulumi program: PostgreSQL dev and test databases and Redis in Docker, on this machine only."""

import pulumi

from infra.dev.settings import dev_settings
from infra.dev.stack import build_dev_stack

try:
    settings = dev_settings(pulumi.Config().get)
except ValueError as error:
    # A bad config value is the user's to fix: one line naming the key, not a Python traceback.
    raise pulumi.RunError(f"{error}. Fix it with `pulumi -C stacks/dev config set <key> <value>` "
                          "or in stacks/dev/Pulumi.dev.yaml.") from None

stack = build_dev_stack(settings)
for key, value in stack.stack_outputs().items():
    pulumi.export(key, value)
