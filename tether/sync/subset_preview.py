"""``sync-prod --subset-plan``: the subset a sync would copy, computed in one snapshot of the source, and nothing
copied or written anywhere (the local side is not even looked at)."""

from __future__ import annotations

from typing import Any

import psycopg

from tether.conninfo import DatabaseAddress
from tether.errors import TetherError
from tether.sync.catalog import read_catalog, table_sizes, with_sizes
from tether.sync.plan import Selection, build_plan
from tether.sync.snapshot import exported_snapshot, joined_session, lock_tables
from tether.sync.subset import Say, compute_subset
from tether.sync.subset_report import subset_summary
from tether.sync.subset_spec import SubsetSpec


def _quiet(_: str) -> None:
    """The default progress callback: say nothing."""


def preview(source: DatabaseAddress, selection: Selection, spec: SubsetSpec, say: Say = _quiet,
            jobs: int = 2) -> dict[str, Any]:
    """The subset's plan as data (tether.sync.subset_report.subset_summary), as the sync would compute it."""
    try:
        with exported_snapshot(source) as snap:
            catalog = read_catalog(snap.conn)
            # Rules do not change which rows are taken; large objects are not rows of tables.
            plan = build_plan(catalog, selection, {}, binary_allowed=False, large_objects=False)
            lock_tables(snap.conn, [copy.relation.identifier for copy in plan.copies])
            with_sizes(catalog, table_sizes(snap.conn, [copy.relation.oid for copy in plan.copies]))
            plan = build_plan(catalog, selection, {}, binary_allowed=False, large_objects=False)
            return subset_summary(compute_subset(snap.conn, catalog, plan, spec, say,
                                                 lambda: joined_session(source, snap.snapshot_id), jobs))
    except psycopg.Error as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise TetherError(f"The subset plan failed on the source: {message}. Nothing was copied.") from None
