"""tether: operations for a team's PostgreSQL and Redis, locally and on Google Cloud.

Every operation is a plain typed function in a module of this package; ``tether.tasks``
holds the thin invoke layer that parses flags and turns ``TetherError`` into an exit.
"""

__version__ = "0.1.0"
