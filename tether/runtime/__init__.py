"""The app side of ``invoke target``: a running app follows the active database target without a restart.

    from tether.runtime import database_url, active_target
    url = database_url()              # the active target's URL, re-read only when tether changed it

Adapters that move their connections to the new target: ``tether.runtime.pool.TargetPool`` (psycopg_pool)
and ``tether.runtime.engine.TargetEngine`` (SQLAlchemy); both libraries are optional and imported there only.
This package imports nothing beyond the standard library and ``tether.errors``: apps import it.
docs/app-integration.md describes the contract with tether's files.
"""

from tether.runtime.contract import (
    PRODUCTION_GUARD,
    STATE_FORMAT,
    DatabaseUrlMissing,
    ProductionRefused,
    ProjectRootNotFound,
    StateFormatTooNew,
    StateUnreadable,
    TargetError,
    TargetState,
    application_name,
)
from tether.runtime.reader import ActiveDatabase, TargetReader, active_target, database_url, default_reader

__all__ = [
    "PRODUCTION_GUARD",
    "STATE_FORMAT",
    "ActiveDatabase",
    "DatabaseUrlMissing",
    "ProductionRefused",
    "ProjectRootNotFound",
    "StateFormatTooNew",
    "StateUnreadable",
    "TargetError",
    "TargetReader",
    "TargetState",
    "active_target",
    "application_name",
    "database_url",
    "default_reader",
]
