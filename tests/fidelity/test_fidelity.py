"""Every object a database can hold arrives, as ``pg_dump | psql`` brings it: sync-prod and db.dump + db.restore
compared with that reference object by object (from the catalogs) and row by row (tests/fidelity/catalog_compare)."""

from __future__ import annotations

import json

import psycopg
import pytest
from invoke import Context
from psycopg import sql

from tether import dumps
from tether.conninfo import DatabaseAddress
from tether.errors import ConfigError
from tether.sync.catalog import read_catalog
from tether.sync.engine import SyncOptions, sync
from tether.sync.reset import reset
from tether.tasks import sync as sync_tasks

from .catalog_compare import describe, differences
from .conftest import GHOST, Torture, execute, pg_dump_into_psql

SETTINGS = "setting "
# Every column of the torture database the personal-column review flags, with a rule (it stops the sync otherwise).
RULES = """tables:
  app.secrets:
    secret: null
    owner_name: fake_name
  app.tab_core_types:
    ip: {inet: {keep_prefix: 16}}
    ci: {scrub: [email, phone]}
  app.words:
    w: {scrub: [email]}
"""  # compared with the source's own (pg_dump | psql without --create brings none)


def _options(**changes: object) -> SyncOptions:
    values: dict[str, object] = {"yes": True, "drop_retired": "now", "anonymize": False, "jobs": 2}
    values.update(changes)
    return SyncOptions(**values)  # type: ignore[arg-type]


def _settings(address: DatabaseAddress) -> dict[str, str | None]:
    objects, _ = describe(address.conninfo())
    return {key: value["definition"] for key, value in objects.items() if key.startswith(SETTINGS)}


def _expected_settings(source: DatabaseAddress) -> dict[str, str | None]:
    """The source's settings, but for roles the destination lacks (their settings are skipped and listed)."""
    return {key: value for key, value in _settings(source).items() if f" {GHOST} " not in key}


def _reference(torture: Torture, source: DatabaseAddress, bare: bool = False) -> DatabaseAddress:
    reference = torture.dest(bare)
    complaints = pg_dump_into_psql(source, reference)
    assert GHOST in complaints  # psql met the role the destination lacks, and carried on
    return reference


def test_sync_brings_everything_pg_dump_psql_brings(torture, isolated_project):
    source = torture.source()
    reference = _reference(torture, source)
    copy = torture.dest()
    summary = sync(source, copy, _options())

    assert differences(reference.conninfo(), copy.conninfo(), ignore=[SETTINGS]) == []
    assert _settings(copy) == _expected_settings(source)
    # What differs from the source is said, per object.
    assert any("app.ghost_owned" in item and GHOST in item for item in summary.owners_mapped)
    assert any("LARGE OBJECT 424202" in item for item in summary.owners_mapped)
    assert any("secrets_ghost" in item for item in summary.skipped_privileges)
    assert any(GHOST in item and "statement_timeout" in item for item in summary.settings_skipped)
    assert summary.verified and summary.row_counts["app.nothing"] == 3 and summary.row_counts["app.dropped_all"] == 5
    assert any("subscriptions not copied (sub_elsewhere)" in note for note in summary.notes)
    assert execute(copy, "SELECT count(*) FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database "
                         "WHERE datname = current_database())") == [(0,)]
    assert not any("inert here" in note for note in summary.notes)  # this destination has wal_level logical


def test_restore_brings_everything_pg_dump_psql_brings(torture, isolated_project, dumps_dir):
    source = torture.source()
    reference = _reference(torture, source)
    dump = dumps.dump_database(source, "torture")
    restored = torture.dest()
    result = dumps.restore_dump(dump.path, restored)

    assert differences(reference.conninfo(), restored.conninfo(), ignore=[SETTINGS]) == []
    assert _settings(restored) == _expected_settings(source)
    # Every REVOKE applied: nothing is more open than at the source.
    assert execute(restored, "SELECT has_function_privilege('public', 'app.twice(integer)', 'EXECUTE'), "
                             "has_schema_privilege('public', 'public', 'USAGE')") == [(False, False)]
    assert any(GHOST in item for item in result.skipped)


def test_without_the_label_provider_labels_are_listed_not_fatal(torture, isolated_project):
    source = torture.source()
    reference = _reference(torture, source, bare=True)
    copy = torture.dest(bare=True)
    summary = sync(source, copy, _options())
    assert differences(reference.conninfo(), copy.conninfo(), ignore=[SETTINGS]) == []
    assert any("3 publications created as pg_dump | psql would, inert here" in note for note in summary.notes)
    labels = [item for item in summary.skipped_privileges if "SECURITY LABEL" in item]
    assert len(labels) == 13 and all("tether_test" in item for item in labels), "\n".join(labels)


def test_a_resync_after_changes_still_matches(torture, isolated_project):
    source = torture.source()
    copy = torture.dest()
    sync(source, copy, _options())
    execute(source, """
        UPDATE app.tab_core_types SET acl = 'torture_owner=r/torture_owner', rel = 'app.things' WHERE id < 5;
        UPDATE app.things SET qty = qty + 1 WHERE id < 10;  -- tables with ALWAYS and REPLICA triggers
        INSERT INTO app.things (code, qty) VALUES ('new', 5);
        INSERT INTO app.nothing DEFAULT VALUES;
        DELETE FROM app.events WHERE id % 7 = 0 AND id % 10 <> 0;
    """)
    summary = sync(source, copy, _options())
    assert summary.mode == "incremental"
    reference = _reference(torture, source)
    assert differences(reference.conninfo(), copy.conninfo(), ignore=[SETTINGS]) == []
    assert _settings(copy) == _expected_settings(source)
    # A large object's contents changed: no catalog row says so, but the sync sees it.
    execute(source, "SELECT lo_put(424201, 0, 'HELLO')")
    summary = sync(source, copy, _options())
    assert summary.mode == "full"
    assert differences(_reference(torture, source).conninfo(), copy.conninfo(), ignore=[SETTINGS]) == []


def test_reset_brings_the_settings_back(torture, isolated_project):
    source = torture.source()
    copy = torture.dest()
    sync(source, copy, _options())
    reset(copy, yes=True, drop_retired="now", spare=False)
    assert _settings(copy) == _expected_settings(source)


def test_binary_copy_is_chosen_from_the_whole_type_tree(torture):
    source = torture.source()
    with psycopg.connect(source.conninfo()) as conn, conn.transaction():
        catalog = read_catalog(conn)
    columns = {column.name: (column.binary_portable, column.binary_local)
               for column in catalog.by_name()["app.tab_core_types"].columns}
    assert columns["acl"] == columns["acls"] == columns["acl_dom"] == columns["acl_pair"] == (False, False)
    assert columns["gts"] == (False, False)  # gtsvector has no binary I/O
    assert columns["rel"] == columns["typ"] == columns["proc"] == columns["rol"] == (False, True)  # OIDs
    assert columns["pair"] == columns["mood"] == columns["fr"] == columns["kv"] == (False, True)  # user types
    assert columns["id"] == columns["doc"] == columns["ts"] == columns["b"] == columns["iv"] == (True, True)


def test_anonymized_sync_must_say_what_to_do_with_large_objects(torture, isolated_project, tmp_path):
    source = torture.source()
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    copy = torture.dest()
    with pytest.raises(ConfigError, match="large_objects: drop"):
        sync(source, copy, _options(anonymize=True, rules_path=rules))
    assert execute(torture.dest_admin, sql.SQL("SELECT count(*) FROM pg_database WHERE datname LIKE {}").format(
        sql.Literal(copy.database + "%"))) == [(0,)]
    rules.write_text("large_objects: drop\n" + RULES)
    summary = sync(source, copy, _options(anonymize=True, rules_path=rules))
    assert execute(copy, "SELECT count(*) FROM pg_largeobject_metadata") == [(0,)]
    assert execute(copy, "SELECT count(*) FROM app.secrets WHERE secret IS NOT NULL") == [(0,)]
    assert any("large objects left out" in note for note in summary.notes)


def test_a_role_that_may_not_read_a_large_object_is_told_before_anything_is_written(torture, isolated_project):
    source = torture.source()
    execute(source, "CREATE ROLE torture_reader LOGIN PASSWORD 'r3ader' " if not execute(
        source, "SELECT 1 FROM pg_roles WHERE rolname = 'torture_reader'") else "SELECT 1")
    execute(source, "GRANT USAGE ON SCHEMA app, \"Odd \"\"Schema\"\"\", ghostly TO torture_reader; "
                    "GRANT SELECT ON ALL TABLES IN SCHEMA app, public, \"Odd \"\"Schema\"\"\" TO torture_reader")
    reader = source.with_credentials("torture_reader", "r3ader")
    copy = torture.dest()
    with pytest.raises(ConfigError) as caught:
        sync(reader, copy, _options())
    assert "424202" in caught.value.message and "--exclude-large-objects" in caught.value.message


def test_task_json_lists_the_differences(torture, isolated_project, capsys):
    source = torture.source()
    copy = torture.dest()
    sync_tasks.sync_prod(Context(), source=source.url(), dest=copy.url(), no_anonymize=True, yes=True, json=True)
    data = json.loads(capsys.readouterr().out)
    assert data["owners_mapped"] and data["skipped_privileges"] and data["settings_skipped"]
    assert source.password not in json.dumps(data) if source.password else True
