"""sync-prod --subset between real servers: every closure shape, every root kind, children, whole and empty
tables, anonymization, a SELECT-only role on a read-only session, re-sync and reset.

After each sync, every foreign key of the copy is checked again by an anti-join (and must be marked valid), and
each table must hold exactly the rows the plan counted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from invoke import Context

from tests.conftest import RunningPostgres, stop_postgres
from tether.conninfo import DatabaseAddress
from tether.errors import ConfigError
from tether.sync.engine import SyncOptions, sync
from tether.sync.plan import Selection
from tether.sync.reset import reset
from tether.sync.subset_queries import seed_number
from tether.sync.subset_spec import SubsetSpec, parse_root
from tether.tasks import sync as sync_tasks

from .conftest import READER_PASSWORD, READER_ROLE, SyncServers, database_names, ensure_role, execute
from .standby import start_standby
from .subset_fixture import SUBSET_RULES, check_copy, create_source, foreign_key_violations, ids


@pytest.fixture(scope="module")
def subset_template(sync_servers: SyncServers) -> str:
    name = f"subset_fixture_{uuid.uuid4().hex[:6]}"
    create_source(sync_servers.source_admin, name, READER_ROLE)
    execute(sync_servers.source_admin, f'ALTER DATABASE "{name}" IS_TEMPLATE true')
    return name


@pytest.fixture
def subset_source(sync_servers: SyncServers, subset_template: str) -> DatabaseAddress:
    """A private copy of the subset source, which a test may change."""
    name = f"ssrc_{uuid.uuid4().hex[:10]}"
    execute(sync_servers.source_admin, f'CREATE DATABASE "{name}" TEMPLATE "{subset_template}"')
    return sync_servers.source_admin.with_database(name)


@pytest.fixture
def subset_options(isolated_project: Path, tmp_path: Path) -> Callable[..., SyncOptions]:
    rules = tmp_path / "subset-rules.yaml"
    rules.write_text(SUBSET_RULES)

    def make(*specs: str, **changes: object) -> SyncOptions:
        spec_changes = {key: changes.pop(key) for key in ("children", "depth", "seed", "whole_below")
                        if key in changes}
        spec = SubsetSpec(tuple(parse_root(text) for text in specs), **spec_changes)  # type: ignore[arg-type]
        values: dict[str, object] = {"yes": True, "drop_retired": "now", "rules_path": rules, "jobs": 2,
                                     "subset": spec}
        values.update(changes)
        return SyncOptions(**values)  # type: ignore[arg-type]

    return make


def table_rows(summary, name: str) -> dict:
    return next(table for table in summary.subset["tables"] if table["table"] == name)


def test_percent_root_on_partitioned_tables_closes_every_reference(sync_servers, subset_source, subset_options):
    dest = sync_servers.dest()
    summary = sync(subset_source, dest, subset_options("shop.orders:10%", whole_below=0))
    check_copy(dest, summary.subset)
    orders = ids(dest, "shop.orders")
    assert 200 <= len(orders) <= 400  # about 10 % of 3,000
    # The sample is the hash predicate itself, evaluated on the source: recompute it there.
    # The primary key is (id, placed_on): the sample hashes both.
    seed = seed_number("tether")
    expected = ids(subset_source, "shop.orders WHERE (hashtextextended(ROW(id, placed_on)::text, "
                                  f"{seed}) & 9223372036854775807) % 1000000 < 100000")
    assert orders == expected
    for partition in ("shop.orders_2023", "shop.orders_2024_a", "shop.orders_2024_b"):
        assert ids(dest, partition), partition
    # Referenced customers, and through referred_by (a self-reference) every customer those refer to.
    customers = ids(dest, "shop.customers")
    wanted = ids(subset_source, f"shop.orders WHERE id IN ({','.join(map(str, orders))})", "customer_id")
    assert wanted <= customers
    referrals = ids(dest, "shop.customers WHERE referred_by IS NOT NULL", "referred_by")
    assert referrals and referrals <= customers
    assert customers == _closure(subset_source, wanted)
    # Nothing selects order lines (not children) and nothing else reaches them.
    assert table_rows(summary, "shop.order_lines_2023")["reached"] == "empty"
    assert execute(dest, "SELECT count(*) FROM shop.order_lines") == [(0,)]
    assert summary.subset["rows"]["selected"] == len(orders)
    assert summary.subset["fraction"] is not None and 0 < summary.subset["fraction"] < 1


def _closure(source: DatabaseAddress, start: set) -> set:
    """Customers ``start`` and everyone they were referred by, transitively (computed on the source)."""
    rows = execute(source, """
        WITH RECURSIVE chain(id) AS (SELECT unnest(%s::bigint[])
            UNION SELECT c.referred_by FROM shop.customers c JOIN chain ON c.id = chain.id
                  WHERE c.referred_by IS NOT NULL)
        SELECT id FROM chain""", (sorted(start),))
    return {row[0] for row in rows}


def test_same_seed_same_rows_other_seed_other_rows(sync_servers, subset_source, subset_options):
    first, second, third = sync_servers.dest(), sync_servers.dest(), sync_servers.dest()
    check_copy(first, sync(subset_source, first, subset_options("shop.customers:20%", whole_below=0)).subset)
    check_copy(second, sync(subset_source, second, subset_options("shop.customers:20%", whole_below=0)).subset)
    other = sync(subset_source, third, subset_options("shop.customers:20%", whole_below=0, seed="another"))
    check_copy(third, other.subset)
    selected = "shop.customers WHERE id IN (SELECT id FROM shop.customers)"
    assert ids(first, selected) == ids(second, selected)
    assert ids(first, "shop.customers") != ids(third, "shop.customers")
    # The rows-count root: exactly that many, the same ones each time.
    fourth, fifth = sync_servers.dest(), sync_servers.dest()
    four = sync(subset_source, fourth, subset_options("shop.customers:50", whole_below=0))
    sync(subset_source, fifth, subset_options("shop.customers:50", whole_below=0))
    check_copy(fourth, four.subset)
    assert four.subset["rows"]["selected"] == 50
    assert ids(fourth, "shop.customers") == ids(fifth, "shop.customers")


def test_where_root_with_children_to_a_depth(sync_servers, subset_source, subset_options):
    children = ("shop.orders", "shop.order_lines", "shop.reviews", "shop.review_votes")
    shallow, deep = sync_servers.dest(), sync_servers.dest()
    one = sync(subset_source, shallow, subset_options("shop.customers:where=shop.customers.id <= 20",
                                                      children=children, depth=1, whole_below=0))
    check_copy(shallow, one.subset)
    assert one.subset["rows"]["selected"] == 20
    assert ids(subset_source, "shop.customers WHERE id <= 20") <= ids(shallow, "shop.customers")
    source_orders = ids(subset_source, "shop.orders WHERE customer_id <= 20")
    assert ids(shallow, "shop.orders") == source_orders  # depth 1: their orders ...
    assert ids(shallow, "shop.reviews WHERE customer_id <= 20") == ids(subset_source,
                                                                       "shop.reviews WHERE customer_id <= 20")
    # ... and the votes they cast, but not the lines of those orders (depth 2).
    assert execute(shallow, "SELECT count(*) FROM shop.order_lines") == [(0,)]
    votes = ids(subset_source, "shop.review_votes WHERE voter_id <= 20", "(review_id, voter_id)")
    assert ids(shallow, "shop.review_votes", "(review_id, voter_id)") == votes
    assert table_rows(one, "shop.review_votes")["children"] == len(votes) > 0

    two = sync(subset_source, deep, subset_options("shop.customers:where=shop.customers.id <= 20",
                                                   children=children, depth=2, whole_below=0))
    check_copy(deep, two.subset)
    lines = execute(subset_source, "SELECT count(*) FROM shop.order_lines WHERE order_id IN "
                                   "(SELECT id FROM shop.orders WHERE customer_id <= 20)")[0][0]
    assert execute(deep, "SELECT count(*) FROM shop.order_lines") == [(lines,)]
    on_their_reviews = ids(subset_source, "shop.review_votes WHERE review_id IN (SELECT id FROM shop.reviews "
                                          "WHERE customer_id <= 20)", "(review_id, voter_id)")
    assert on_their_reviews <= ids(deep, "shop.review_votes", "(review_id, voter_id)")
    assert two.subset["rows"]["children"] > one.subset["rows"]["children"]
    # The lines' products (and what they reference) came along as referenced rows.
    assert table_rows(two, "shop.products")["reached"] == "referenced"


def test_self_referencing_tree_and_two_table_cycle(sync_servers, subset_source, subset_options):
    dest = sync_servers.dest()
    summary = sync(subset_source, dest, subset_options("shop.products:where=id IN (3, 6, 9, 120)", whole_below=0))
    check_copy(dest, summary.subset)
    assert ids(dest, "shop.products") == {3, 6, 9, 120}
    # The category tree: each product's category and all its ancestors, nothing else.
    ancestors = execute(subset_source, """
        WITH RECURSIVE up(id) AS (SELECT category_id FROM shop.products WHERE id IN (3, 6, 9, 120)
            UNION SELECT c.parent_id FROM shop.categories c JOIN up ON c.id = up.id WHERE c.parent_id IS NOT NULL)
        SELECT id FROM up""")
    assert ids(dest, "shop.categories") == {row[0] for row in ancestors}
    assert len(ancestors) > 4  # the tree is several levels deep
    # The cycle: products name employees, employees departments, departments their manager (an employee) ...
    employees = ids(dest, "shop.employees")
    departments = ids(dest, "shop.departments")
    assert {4, 7, 10} <= employees  # handled_by of products 3, 6 and 9 (120 has one too)
    assert ids(dest, "shop.employees", "department_id") <= departments
    assert ids(dest, "shop.departments", "manager_id") <= employees
    expected = _cycle_closure(subset_source, {4, 7, 10, 1 + 120 % 60})
    assert (employees, departments) == expected
    # Composite key: each product's (region, warehouse_code) warehouse; a NULL region references nothing.
    assert ids(dest, "shop.warehouses", "(region, code)") == ids(
        subset_source, "shop.products WHERE id IN (3, 6, 9, 120) AND region IS NOT NULL", "(region, warehouse_code)")
    assert execute(dest, "SELECT region FROM shop.products WHERE id = 120") == [(None,)]


def _cycle_closure(source: DatabaseAddress, start: set) -> tuple[set, set]:
    employees, departments = set(start), set()
    while True:
        new_departments = ids(source, f"shop.employees WHERE id IN ({','.join(map(str, employees))})",
                              "department_id") - departments
        departments |= new_departments
        new_employees = ids(source, f"shop.departments WHERE id IN ({','.join(map(str, departments))})",
                            "manager_id") - employees
        employees |= new_employees
        if not new_departments and not new_employees:
            return employees, departments


def test_keyless_table_and_multi_column_key_with_nulls(sync_servers, subset_source, subset_options):
    dest = sync_servers.dest()
    summary = sync(subset_source, dest, subset_options("shop.prices:10%", whole_below=0))
    check_copy(dest, summary.subset)
    prices = execute(dest, "SELECT count(*), count(*) FILTER (WHERE currency IS NULL) FROM shop.prices")[0]
    assert 40 <= prices[0] <= 130 and prices[1] > 0  # sampled by the whole row: no key to hash
    referenced = ids(dest, "shop.prices WHERE currency IS NOT NULL", "(currency, version)")
    assert ids(dest, "shop.price_lists", "(currency, version)") == referenced  # a UNIQUE key, not the primary one


def test_small_tables_whole_large_unreached_empty(sync_servers, subset_source, subset_options):
    # A few rows naming orders (staff picks): copied whole, their orders come along.
    execute(subset_source, "CREATE TABLE shop.staff_picks (order_id bigint, placed_on date, "
                           "FOREIGN KEY (order_id, placed_on) REFERENCES shop.orders); "
                           "INSERT INTO shop.staff_picks SELECT id, placed_on FROM shop.orders WHERE id % 500 = 7; "
                           "ANALYZE shop.staff_picks")
    dest = sync_servers.dest()
    summary = sync(subset_source, dest, subset_options("shop.orders:5%"))  # whole below the default 1 MB
    check_copy(dest, summary.subset)
    subset = summary.subset
    assert "shop.staff_picks" in subset["whole_tables"]
    assert ids(dest, "shop.staff_picks", "order_id") == {7, 507, 1007, 1507, 2007, 2507}
    assert ids(dest, "shop.staff_picks", "order_id") <= ids(dest, "shop.orders")
    assert {"shop.countries", "shop.categories", "shop.settings", "shop.customers"} <= set(subset["whole_tables"])
    assert "shop.audit_log" in subset["empty_tables"]  # about 5 MB and nothing points at it
    assert execute(dest, "SELECT count(*) FROM shop.audit_log") == [(0,)]
    assert execute(dest, "SELECT count(*) FROM shop.countries") == [(20,)]
    # Small, but copying all of it would bring every order it references: left empty, and said why.
    lines = table_rows(summary, "shop.order_lines_2023")
    assert lines["reached"] == "empty" and "sampled shop.orders" in lines["how"]
    assert "shop.order_lines" in subset["empty_tables"]
    orders = execute(dest, "SELECT count(*) FROM shop.orders")[0][0]
    assert orders == subset["rows"]["selected"] + subset["rows"]["referenced"] < 300
    text = "\n".join(summary.lines())
    assert "copied whole" in text and "left empty" in text and "shop.audit_log" in text


def test_anonymization_applies_inside_the_subset(sync_servers, subset_source, subset_options):
    dest = sync_servers.dest()
    summary = sync(subset_source, dest, subset_options("shop.orders:10%", whole_below=0))
    check_copy(dest, summary.subset)
    emails = [row[0] for row in execute(dest, "SELECT email FROM shop.customers")]
    assert emails and all(email.startswith("user_") and email.endswith("@example.com") for email in emails)
    assert not set(emails) & {row[0] for row in execute(subset_source, "SELECT email FROM shop.customers")}
    assert summary.anonymized and {rule["column"] for rule in summary.rules_applied} == {"email", "full_name", "name"}


def test_resync_and_reset_follow_the_subset(sync_servers, subset_source, subset_options):
    dest = sync_servers.dest()
    options = subset_options("shop.customers:where=id <= 40", children=("shop.orders", "shop.order_lines"),
                             depth=2, whole_below=0)
    first = sync(subset_source, dest, options)
    check_copy(dest, first.subset)
    again = sync(subset_source, dest, options)
    assert again.mode == "unchanged"
    check_copy(dest, again.subset)
    # A new order of a selected customer (a child), one of another customer (not taken), and a selected order
    # deleted: only the orders table and what its rows reach change.
    execute(subset_source, "INSERT INTO shop.orders VALUES (9001, '2024-03-01', 3, 'new'), "
                           "(9002, '2024-03-01', 500, 'new')")
    gone = execute(subset_source, "SELECT min(id) FROM shop.orders WHERE customer_id <= 40")[0][0]
    execute(subset_source, "DELETE FROM shop.order_lines WHERE order_id = %s", (gone,))
    execute(subset_source, "DELETE FROM shop.orders WHERE id = %s", (gone,))
    # A line of a kept order naming a product the copy does not hold: products did not change on the source,
    # but the subset now takes another row of it.
    product = min(ids(subset_source, "shop.products") - ids(dest, "shop.products"))
    kept = execute(dest, "SELECT id, placed_on FROM shop.orders WHERE id <> %s ORDER BY id LIMIT 1", (gone,))[0]
    execute(subset_source, "INSERT INTO shop.order_lines VALUES (%s, %s, 9, %s, 1)", (*kept, product))
    # A selected customer deleted (with what references it): the customers table's only change is a row less.
    lonely = 40
    execute(subset_source, """
        DELETE FROM shop.order_lines WHERE order_id IN (SELECT id FROM shop.orders WHERE customer_id = 40);
        DELETE FROM shop.orders WHERE customer_id = 40;
        DELETE FROM shop.review_votes WHERE voter_id = 40
            OR review_id IN (SELECT id FROM shop.reviews WHERE customer_id = 40);
        DELETE FROM shop.reviews WHERE customer_id = 40;
        UPDATE shop.customers SET referred_by = NULL WHERE referred_by = 40;
        DELETE FROM shop.customers WHERE id = 40""")
    assert lonely in ids(dest, "shop.customers")
    third = sync(subset_source, dest, options)
    assert third.mode == "incremental"
    check_copy(dest, third.subset)
    assert "shop.orders_2024_a" in third.changed_tables or "shop.orders_2024_b" in third.changed_tables
    assert {"shop.products", "shop.customers"} <= set(third.changed_tables)
    assert 9001 in ids(dest, "shop.orders") and 9002 not in ids(dest, "shop.orders")
    assert gone not in ids(dest, "shop.orders")
    assert ids(dest, "shop.orders") == ids(subset_source, "shop.orders WHERE customer_id <= 40")
    assert product in ids(dest, "shop.products") and lonely not in ids(dest, "shop.customers")
    # A reset brings back exactly the synced subset.
    execute(dest, "TRUNCATE shop.orders CASCADE")
    reset(dest, yes=True, drop_retired="now")
    check_copy(dest, third.subset)
    # Another spec: a full rebuild, said so.
    other = sync(subset_source, dest, subset_options("shop.customers:where=id <= 10", whole_below=0))
    assert other.mode == "full" and any("subset" in note or "selection" in note for note in other.notes)
    check_copy(dest, other.subset)
    assert other.subset["rows"]["selected"] == 10 and ids(dest, "shop.customers WHERE id <= 10") == set(range(1, 11))
    assert execute(dest, "SELECT count(*) FROM shop.orders") == [(0,)]


@pytest.fixture
def replica_of_subset_source(pg_server_factory) -> Iterator[tuple[RunningPostgres, str]]:
    """A fresh primary holding the subset source, and a hot standby streaming from it."""
    primary = pg_server_factory()
    ensure_role(primary.admin, READER_ROLE, READER_PASSWORD)
    name = f"replica_src_{uuid.uuid4().hex[:6]}"
    create_source(primary.admin, name, READER_ROLE)
    standby = start_standby(primary)
    yield standby, name
    stop_postgres(standby)


def test_select_only_role_on_a_read_only_hot_standby(sync_servers, subset_options, replica_of_subset_source):
    """The source is a streaming replica: every session there is read-only by nature (no temp table, no write)."""
    standby, name = replica_of_subset_source
    replica = standby.admin.with_database(name).with_credentials(READER_ROLE, READER_PASSWORD)
    assert execute(replica, "SELECT pg_is_in_recovery()") == [(True,)]
    dest = sync_servers.dest()
    summary = sync(replica, dest, subset_options("shop.orders:10%", "shop.customers:where=id <= 5",
                                                 children=("shop.reviews",), whole_below=0))
    check_copy(dest, summary.subset)
    assert summary.subset["rows"]["selected"] > 5 and summary.subset["rows"]["children"] > 0


def test_bad_specs_stop_before_anything_is_written(sync_servers, subset_source, subset_options):
    dest = sync_servers.dest()
    cases = {
        "shop.nothing:10%": "no table in the source matches",
        "shop.customers:where=no_such_column > 1": "no_such_column",
        "shop.customers:where=true; SELECT 1": "failed on the source",
        "shop.customers:where=true /* never closed": "failed on the source",
        "shop.customers:where=shop.orders.id > 1": "failed on the source",
    }
    for text, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            sync(subset_source, dest, subset_options(text, whole_below=0))
    with pytest.raises(ConfigError, match=r"--subset-children shop\.nope"):
        sync(subset_source, dest, subset_options("shop.orders:5%", children=("shop.nope",)))
    execute(subset_source, "CREATE TABLE shop.kept_empty (id int)")
    with pytest.raises(ConfigError, match="has no rows copied"):
        sync(subset_source, dest, subset_options("shop.kept_empty:5%", selection=Selection(exclude_data=("*.kept_*",))))
    assert database_names(sync_servers.dest_admin, dest.database) == []
    # A condition that closes our parenthesis is still one condition of the one statement.
    # So is one ending in a comment: it cannot swallow the rest of the statement.
    condition = "name LIKE '%s 1%%' OR length(code) % 2 = 1 OR name = ANY('{\"Country 4\"}')"
    summary = sync(subset_source, dest, subset_options("shop.customers:where=id < 3) OR (id = 7 -- the boss",
                                                       f"shop.countries:where={condition}", whole_below=0))
    check_copy(dest, summary.subset)
    assert ids(dest, "shop.customers WHERE id IN (1, 2, 7)") == {1, 2, 7}
    # A % in the condition is SQL's, not a placeholder; braces are SQL's too.
    assert summary.subset["rows"]["selected"] == 3 + execute(
        subset_source, f"SELECT count(*) FROM shop.countries WHERE {condition}")[0][0]  # noqa: S608 (test constant)


def test_foreign_key_check_can_fail(sync_servers, subset_source, subset_options):
    """The anti-join every test relies on does see a missing parent row."""
    dest = sync_servers.dest()
    summary = sync(subset_source, dest, subset_options("shop.orders:10%", whole_below=0))
    check_copy(dest, summary.subset)
    execute(dest, "SET session_replication_role = replica; DELETE FROM shop.customers WHERE id IN "
                  "(SELECT customer_id FROM shop.orders LIMIT 1)")
    assert any("shop.orders" in problem for problem in foreign_key_violations(dest))


def test_plan_copies_nothing_and_the_sync_follows_it(sync_servers, subset_source, isolated_project, tmp_path,
                                                     capsys):
    """--subset-plan from the rules file's subset: section prints each table and how it is reached; the sync that
    follows copies exactly those rows and documents them in --json."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(SUBSET_RULES + "subset:\n  roots: ['shop.orders:10%']\n  children: [shop.order_lines]\n"
                                    "  whole_below: 64kB\n")
    dest = sync_servers.dest()
    sync_tasks.sync_prod(Context(), source=subset_source.url(), dest=dest.url(), rules=str(rules), subset_plan=True)
    text = capsys.readouterr().out
    assert "Subset plan for" in text and "nothing was copied" in text
    assert "root: shop.orders:10%" in text and "children of shop.orders (depth 1)" in text
    assert "referenced by shop.orders" in text  # customers
    assert "left empty" in text and "shop.audit_log" in text and "copied whole" in text
    assert database_names(sync_servers.dest_admin, dest.database) == []
    sync_tasks.sync_prod(Context(), source=subset_source.url(), dest=dest.url(), rules=str(rules), subset_plan=True,
                         json=True)
    plan = json.loads(capsys.readouterr().out)
    sync_tasks.sync_prod(Context(), source=subset_source.url(), dest=dest.url(), rules=str(rules), yes=True,
                         json=True)
    data = json.loads(capsys.readouterr().out)
    subset = data["subset"]
    assert set(subset) == {"spec", "tables", "rows", "whole_tables", "empty_tables", "source_bytes", "bytes",
                           "fraction", "plan_seconds", "queries", "rounds", "notes"}
    assert {"table", "of", "reached", "how", "rows", "selected", "children", "referenced", "whole",
            "source_rows_estimate", "source_bytes", "bytes"} == set(subset["tables"][0])
    assert {table["table"]: table["rows"] for table in subset["tables"]} == {
        table["table"]: table["rows"] for table in plan["tables"]}
    assert data["row_counts"] == {table["table"]: table["rows"] for table in subset["tables"]}
    assert subset["rows"]["total"] == data["rows"] and subset["rows"]["children"] > 0
    assert 0 < subset["fraction"] < 1 and subset["bytes"] > 0
    check_copy(dest, subset)


def test_a_copy_that_differs_from_the_plan_replaces_nothing(sync_servers, subset_source, subset_options,
                                                            monkeypatch, capsys):
    """The copy must hold exactly the plan's rows: one more (here every row of one table) stops the sync."""
    from tether.errors import TetherError
    from tether.sync import subset as subset_module
    from tether.sync.progress import SyncProgress

    dest = sync_servers.dest()
    first = sync(subset_source, dest, subset_options("shop.orders:10%", whole_below=0), SyncProgress(bars=False))
    check_copy(dest, first.subset)
    err = capsys.readouterr().err
    assert f"subset: {first.subset['rows']['total']:,} rows in" in err and "read-only queries" in err
    before = ids(dest, "shop.orders")
    real = subset_module.LeafRows.row_filter

    def leaky(self):
        return None if self.relation.qualified == "shop.customers" else real(self)

    monkeypatch.setattr(subset_module.LeafRows, "row_filter", leaky)
    with pytest.raises(TetherError, match=r"shop.customers: \d+ in the subset's plan, 600 locally"):
        sync(subset_source, dest, subset_options("shop.orders:20%", whole_below=0))
    assert ids(dest, "shop.orders") == before
