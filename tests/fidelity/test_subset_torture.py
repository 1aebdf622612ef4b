"""A subset of the torture database: every object still arrives as pg_dump | psql brings it, and the rows
taken keep every foreign key (partitions with default and sub-partitions, inheritance, self-references, a
deferrable cycle, types without binary I/O, tables without columns)."""

from __future__ import annotations

from benchmarks.subset_check import count_problems, foreign_key_problems
from tether.sync.engine import SyncOptions, sync
from tether.sync.subset_spec import SubsetSpec, parse_root

from .catalog_compare import describe
from .conftest import GHOST, execute, pg_dump_into_psql

SETTINGS = "setting "  # database settings: pg_dump | psql without --create brings none


def test_a_subset_of_the_torture_database_keeps_every_object_and_every_key(torture, isolated_project):
    source = torture.source()
    reference = torture.dest()
    assert GHOST in pg_dump_into_psql(source, reference)
    copy = torture.dest()
    spec = SubsetSpec((parse_root("app.event_notes:40%"), parse_root("app.nodes:1"), parse_root("app.egg:1"),
                       parse_root("app.things:where=qty % 7 = 0"), parse_root("app.animal:50%")),
                      children=("app.events",), whole_below=0)
    summary = sync(source, copy, SyncOptions(yes=True, drop_retired="now", anonymize=False, jobs=2, subset=spec))
    assert summary.verified and summary.subset is not None
    assert foreign_key_problems(copy) == [] and count_problems(copy, summary.subset) == []
    reference_objects, _ = describe(reference.conninfo())
    copy_objects, _ = describe(copy.conninfo())
    keys = {key for key in reference_objects.keys() | copy_objects.keys() if SETTINGS not in key}
    assert {key: reference_objects.get(key) for key in keys} == {key: copy_objects.get(key) for key in keys}
    tables = {table["table"]: table for table in summary.subset["tables"]}
    # The notes' events (composite keys into sub-partitions and the default partition) and their accounts.
    assert tables["app.event_notes"]["selected"] > 0
    assert execute(copy, "SELECT count(*) FROM app.event_notes n WHERE NOT EXISTS (SELECT FROM app.events e "
                         "WHERE (e.id, e.at) = (n.event_id, n.event_at))") == [(0,)]
    assert tables["app.accounts"]["reached"] == "referenced"
    # A tree's leaf brings its ancestors; one egg brings its chicken, which names the egg back.
    assert execute(copy, "SELECT count(*) FROM app.nodes") == execute(source, "SELECT count(*) FROM app.nodes")
    assert execute(copy, "SELECT count(*) FROM app.chicken") == [(1,)]
    # Inheritance: the parent's own rows are sampled; children are other tables, small here, copied whole.
    assert tables["app.animal"]["reached"] == "root"
