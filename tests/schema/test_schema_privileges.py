"""The sample schema on a real server: roles and their exact privileges, row-level security, search, triggers."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors

from tether.conninfo import DatabaseAddress
from tether.errors import TetherError
from tether.migrations import init_database, load_migrations, split_statements
from tether.roles import set_role_password

from .conftest import REPO_SQL

TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
APP_TABLES = {"profiles", "user_roles", "groups", "group_members", "resources", "resource_ratings",
              "resource_shares", "notifications", "category_tag_suggestions", "suggestion_votes", "admin_configs"}


def as_role(address: DatabaseAddress, role: str, password: str) -> psycopg.Connection:
    return psycopg.connect(address.with_credentials(role, password).conninfo())


@pytest.fixture(scope="module")
def people(schema_db) -> dict[str, int]:
    """Alice, Bob and Carol with notifications, shares and votes, written as the superuser (RLS does not apply)."""
    with psycopg.connect(schema_db.conninfo()) as conn:
        ids = {}
        for name in ("alice", "bob", "carol"):
            ids[name] = conn.execute("INSERT INTO app.profiles (email, display_name) VALUES (%s, %s) RETURNING id",
                                     (f"{name}@example.test", name.title())).fetchall()[0][0]
        group = conn.execute("INSERT INTO app.groups (slug, name, owner_profile_id) VALUES ('readers', 'Readers', %s)"
                             " RETURNING id", (ids["carol"],)).fetchall()[0][0]
        conn.execute("INSERT INTO app.group_members (group_id, profile_id) VALUES (%s, %s)", (group, ids["carol"]))
        resource = conn.execute(
            "INSERT INTO app.resources (owner_profile_id, title, description, category, tags, metadata)"
            " VALUES (%s, 'Tuning PostgreSQL autovacuum', 'Notes on vacuum thresholds', 'databases',"
            " ARRAY['postgres', 'performance'], '{\"level\": \"advanced\"}') RETURNING id",
            (ids["alice"],)).fetchall()[0][0]
        for owner, title in (("alice", "a1"), ("alice", "a2"), ("bob", "b1")):
            conn.execute("INSERT INTO app.notifications (profile_id, kind, title, body) VALUES (%s, 'share.received',"
                         " %s, 'private text')", (ids[owner], title))
        conn.execute("INSERT INTO app.resource_shares (resource_id, shared_by_profile_id, recipient_profile_id)"
                     " VALUES (%s, %s, %s)", (resource, ids["alice"], ids["bob"]))
        conn.execute("INSERT INTO app.resource_shares (resource_id, shared_by_profile_id, recipient_group_id)"
                     " VALUES (%s, %s, %s)", (resource, ids["bob"], group))
        conn.execute("INSERT INTO app.resource_shares (resource_id, shared_by_profile_id, recipient_email)"
                     " VALUES (%s, %s, 'friend@example.test')", (resource, ids["carol"]))
        suggestion = conn.execute("INSERT INTO app.category_tag_suggestions (category, tag, suggested_by_profile_id)"
                                  " VALUES ('databases', 'Vacuum', %s) RETURNING id", (ids["alice"],)).fetchall()[0][0]
        conn.execute("INSERT INTO app.suggestion_votes (suggestion_id, profile_id, vote)"
                     " VALUES (%s, %s, 1), (%s, %s, -1)", (suggestion, ids["alice"], suggestion, ids["bob"]))
        ids["resource"], ids["suggestion"], ids["group"] = resource, suggestion, group
    return ids


@pytest.fixture
def api(schema_db, role_passwords) -> Iterator[psycopg.Connection]:
    with as_role(schema_db, "api_user", role_passwords["api_user"]) as conn:
        yield conn


@pytest.fixture
def reader(schema_db, role_passwords) -> Iterator[psycopg.Connection]:
    with as_role(schema_db, "readonly", role_passwords["readonly"]) as conn:
        yield conn


def act_as(conn: psycopg.Connection, profile_id: int | None) -> None:
    value = "" if profile_id is None else str(profile_id)
    conn.execute("SELECT set_config('app.current_profile_id', %s, true)", (value,))


def test_the_roles_have_no_extra_powers(schema_db):
    with psycopg.connect(schema_db.conninfo()) as conn:
        rows = conn.execute("SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication,"
                            " rolbypassrls FROM pg_roles WHERE rolname IN ('app_owner', 'api_user', 'readonly')"
                            " ORDER BY rolname").fetchall()
    assert rows == [("api_user", True, False, False, False, False, False),
                    ("app_owner", False, False, False, False, False, False),
                    ("readonly", True, False, False, False, False, False)]


def test_app_owner_owns_the_schema_and_every_object_in_it(schema_db):
    with psycopg.connect(schema_db.conninfo()) as conn:
        owners = conn.execute("SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class AS c"
                              " WHERE c.relnamespace = 'app'::regnamespace").fetchall()
        schema_owner = conn.execute("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'app'"
                                    ).fetchone()
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'app'")}
    assert owners == [("app_owner",)] and schema_owner == ("app_owner",)
    assert tables == APP_TABLES


def privileges(conn: psycopg.Connection, role: str, relkinds: str) -> dict[str, set[str]]:
    rows = conn.execute(
        "SELECT c.relname, p.privilege FROM pg_class AS c CROSS JOIN unnest(%s::text[]) AS p(privilege)"
        " WHERE c.relnamespace = 'app'::regnamespace AND c.relkind = ANY(%s::\"char\"[])"
        " AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(%s, c.oid, p.privilege)"
        " ELSE has_table_privilege(%s, c.oid, p.privilege) END",
        (list(TABLE_PRIVILEGES if relkinds != "S" else ("USAGE", "SELECT", "UPDATE")), list(relkinds), role, role),
    ).fetchall()
    found: dict[str, set[str]] = {}
    for name, privilege in rows:
        found.setdefault(name, set()).add(privilege)
    return found


def test_api_user_and_readonly_hold_exactly_the_intended_privileges(schema_db):
    with psycopg.connect(schema_db.conninfo()) as conn:
        api_tables = privileges(conn, "api_user", "r")
        reader_tables = privileges(conn, "readonly", "r")
        api_views, reader_views = privileges(conn, "api_user", "v"), privileges(conn, "readonly", "v")
        api_sequences, reader_sequences = privileges(conn, "api_user", "S"), privileges(conn, "readonly", "S")
        sequence_count = conn.execute("SELECT count(*) FROM pg_class WHERE relkind = 'S'"
                                      " AND relnamespace = 'app'::regnamespace").fetchall()[0][0]
        ledger = conn.execute("SELECT has_table_privilege('readonly', 'tether.schema_migrations', 'SELECT'),"
                              " has_table_privilege('api_user', 'tether.schema_migrations', 'SELECT')").fetchone()
    assert api_tables == {table: {"SELECT", "INSERT", "UPDATE", "DELETE"} for table in APP_TABLES}
    assert reader_tables == {table: {"SELECT"} for table in APP_TABLES}
    assert api_views == reader_views == {"suggestion_scores": {"SELECT"}}
    assert sequence_count == 7  # one identity per table with an id
    assert list(api_sequences.values()) == [{"USAGE"}] * sequence_count
    assert list(reader_sequences.values()) == [{"SELECT"}] * sequence_count
    assert ledger == (True, False)


def test_the_login_roles_log_in_with_their_password_and_only_with_it(schema_db, role_passwords):
    with as_role(schema_db, "readonly", role_passwords["readonly"]) as conn:
        assert conn.execute("SELECT current_user").fetchall()[0][0] == "readonly"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        as_role(schema_db, "api_user", role_passwords["api_user"] + "x")


@pytest.mark.parametrize("statement", [
    "CREATE TABLE app.sneaky (id int)",
    "CREATE TABLE public.sneaky (id int)",
    "CREATE SCHEMA sneaky",
    "CREATE FUNCTION app.sneaky() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "ALTER TABLE app.profiles ADD COLUMN sneaky text",
    "CREATE INDEX sneaky ON app.profiles (bio)",
    "DROP TABLE app.admin_configs",
    "TRUNCATE app.admin_configs",
    "SET ROLE app_owner",
], ids=["create-table-app", "create-table-public", "create-schema", "create-function", "alter-table",
        "create-index", "drop-table", "truncate", "set-role-owner"])
def test_api_user_cannot_change_the_schema(api, statement):
    with pytest.raises(errors.InsufficientPrivilege):
        api.execute(statement)
    api.rollback()


def test_api_user_reads_and_writes_rows(api):
    profile = api.execute("INSERT INTO app.profiles (email) VALUES ('new@example.test') RETURNING id").fetchall()[0][0]
    api.execute("UPDATE app.profiles SET bio = 'hi' WHERE id = %s", (profile,))
    assert api.execute("SELECT bio FROM app.profiles WHERE id = %s", (profile,)).fetchone() == ("hi",)
    assert api.execute("DELETE FROM app.profiles WHERE id = %s", (profile,)).rowcount == 1
    api.rollback()


@pytest.mark.parametrize("statement", [
    "INSERT INTO app.profiles (email) VALUES ('x@example.test')",
    "UPDATE app.admin_configs SET value = '1'",
    "DELETE FROM app.admin_configs",
], ids=["insert", "update", "delete"])
def test_readonly_cannot_write_even_in_a_read_write_transaction(reader, statement):
    with pytest.raises(errors.ReadOnlySqlTransaction):
        reader.execute(statement)  # its default: every transaction is read-only
    reader.rollback()
    reader.execute("SET TRANSACTION READ WRITE")
    with pytest.raises(errors.InsufficientPrivilege):
        reader.execute(statement)  # and below that, no privilege to write
    reader.rollback()


def test_readonly_reads_everything(reader, people):
    assert reader.execute("SELECT count(*) FROM app.admin_configs").fetchall()[0][0] == 3
    assert reader.execute("SELECT count(*) FROM app.notifications").fetchall()[0][0] == 3
    assert reader.execute("SELECT count(*) FROM app.resource_shares").fetchall()[0][0] == 3
    assert reader.execute("SELECT count(*) FROM app.suggestion_votes").fetchall()[0][0] == 2
    assert reader.execute("SELECT count(*) FROM tether.schema_migrations").fetchall()[0][0] >= 9


def test_row_level_security_shows_a_profile_only_its_own_rows(api, people):
    act_as(api, people["alice"])
    assert sorted(r[0] for r in api.execute("SELECT title FROM app.notifications")) == ["a1", "a2"]
    assert api.execute("SELECT count(*) FROM app.suggestion_votes").fetchall()[0][0] == 1
    # Bob's notification cannot be read, changed or deleted by Alice: it is simply not there for her.
    assert api.execute("UPDATE app.notifications SET read_at = now() WHERE title = 'b1'").rowcount == 0
    assert api.execute("DELETE FROM app.notifications WHERE title = 'b1'").rowcount == 0
    api.rollback()

    act_as(api, people["bob"])
    assert [r[0] for r in api.execute("SELECT title FROM app.notifications")] == ["b1"]
    api.rollback()

    act_as(api, None)
    assert api.execute("SELECT count(*) FROM app.notifications").fetchall()[0][0] == 0
    api.rollback()


def test_shares_are_visible_to_sharer_and_recipients_including_group_members(api, people):
    def visible(profile: str) -> set[tuple[int, int | None]]:
        act_as(api, people[profile])
        rows = api.execute("SELECT shared_by_profile_id, recipient_profile_id FROM app.resource_shares").fetchall()
        api.rollback()
        return set(rows)

    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    assert visible("alice") == {(alice, bob)}
    assert visible("bob") == {(alice, bob), (bob, None)}
    assert visible("carol") == {(bob, None), (carol, None)}  # Bob's group share reaches Carol, a member


def test_row_level_security_refuses_writing_rows_for_someone_else(api, people):
    act_as(api, people["alice"])
    with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
        api.execute("INSERT INTO app.suggestion_votes (suggestion_id, profile_id, vote) VALUES (%s, %s, 1)",
                    (people["suggestion"], people["carol"]))
    api.rollback()
    act_as(api, people["alice"])
    with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
        api.execute("INSERT INTO app.resource_shares (resource_id, shared_by_profile_id, recipient_email)"
                    " VALUES (%s, %s, 'x@example.test')", (people["resource"], people["bob"]))
    api.rollback()


def test_vote_totals_count_every_vote_while_votes_stay_private(api, people):
    act_as(api, people["carol"])
    assert api.execute("SELECT count(*) FROM app.suggestion_votes").fetchall()[0][0] == 0
    assert api.execute("SELECT votes, score FROM app.suggestion_scores WHERE suggestion_id = %s",
                       (people["suggestion"],)).fetchone() == (2, 0)
    api.rollback()


def test_full_text_search_tags_and_updated_at(schema_db, people):
    with psycopg.connect(schema_db.conninfo(), autocommit=True) as conn:
        found = conn.execute("SELECT id FROM app.resources WHERE search_vector @@ websearch_to_tsquery('english', %s)",
                             ("vacuum performance",)).fetchall()
        assert found == [(people["resource"],)]
        tagged = conn.execute("SELECT id FROM app.resources WHERE tags @> ARRAY['postgres']").fetchall()
        similar = conn.execute("SELECT id FROM app.resources WHERE title % 'Tunning PostgreSQL'").fetchall()
        assert tagged == similar == found
        conn.execute("UPDATE app.resources SET title = 'Autovacuum, tuned' WHERE id = %s", (people["resource"],))
        created, updated = conn.execute("SELECT created_at, updated_at FROM app.resources WHERE id = %s",
                                        (people["resource"],)).fetchall()[0]
        assert updated > created
        token = conn.execute("SELECT share_token FROM app.resource_shares LIMIT 1").fetchall()[0][0]
        assert len(token) == 36


def test_a_share_names_exactly_one_recipient(schema_db, people):
    with psycopg.connect(schema_db.conninfo()) as conn, pytest.raises(errors.CheckViolation):
        conn.execute("INSERT INTO app.resource_shares (resource_id, shared_by_profile_id, recipient_profile_id,"
                     " recipient_email) VALUES (%s, %s, %s, 'x@example.test')",
                     (people["resource"], people["alice"], people["bob"]))


def test_role_passwords_reach_the_server_only_as_a_scram_verifier(pg_server, schema_db, role_passwords):
    log_file = pg_server.server.log_file
    secret = role_passwords["readonly"]
    with psycopg.connect(schema_db.conninfo(), autocommit=True) as conn:
        conn.execute("SET log_statement = 'all'")
        set_role_password(conn, "readonly", secret)
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'readonly'").fetchall()[0][0]
    logged = log_file.read_text(errors="replace")
    assert "ALTER ROLE" in logged and "SCRAM-SHA-256$" in logged
    assert secret not in logged
    assert stored.startswith("SCRAM-SHA-256$")
    with as_role(schema_db, "readonly", secret) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_the_roles_file_refuses_to_run_as_an_application_role(api):
    guard = split_statements(load_migrations(REPO_SQL)[0].text)[0]
    with pytest.raises(errors.RaiseException, match=r"db\.init is connected as api_user, an application role"):
        api.execute(guard.text.encode())


def test_init_as_an_application_role_is_a_clear_error(schema_db, pg_server, role_passwords):
    fresh = pg_server.create_database()
    try:
        expected = r"Could not apply migrations on .* as role api_user: .*permission denied"
        with pytest.raises(TetherError, match=expected):
            init_database(fresh.with_credentials("api_user", role_passwords["api_user"]),
                          role_passwords=role_passwords, sql_dir=REPO_SQL)
    finally:
        pg_server.drop_database(fresh.database)
