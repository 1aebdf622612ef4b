"""The benchmark's arithmetic and presentation: dataset shape, completeness checks, ratios and verdicts."""

from __future__ import annotations

import statistics

import pytest
from invoke import Context
from invoke.exceptions import Exit
from rich.console import Console

from benchmarks.competitors import COMPETITORS, TETHER_METHODS, method_by_key
from benchmarks.dataset import BIG_TABLES, DatasetShape, Fingerprint, compare_fingerprints
from benchmarks.profile import (
    ProcessTicks,
    activity_key,
    cpu_busy_fraction,
    cpu_by_category,
    parse_proc_stat,
    process_category,
    read_cpu_times,
)
from benchmarks.report import (
    FAILED,
    NOT_AVAILABLE,
    MethodResult,
    Target,
    cpu_model,
    fastest_competitor,
    markdown_table,
    ram_gb,
    results_table,
    summarize,
    verdict,
)
from benchmarks.run import BenchOptions, parse_methods
from tether.errors import ConfigError
from tether.tasks.bench import bench


def test_scale_one_is_the_issues_shape():
    shape = DatasetShape.for_scale(1.0)
    assert shape.table_count == 310
    assert len(shape.references) == 300
    assert 550_000 <= shape.row_count <= 650_000
    assert all(10 <= ref.rows <= 300 for ref in shape.references)


def test_small_scale_keeps_every_big_table_and_a_few_references():
    shape = DatasetShape.for_scale(0.01)
    assert shape.table_count == len(BIG_TABLES) + 8
    assert set(shape.big_rows) == {table.name for table in BIG_TABLES}
    assert min(shape.big_rows.values()) >= 10


def test_reference_parents_exist_before_their_children():
    seen: set[str] = set()
    for ref in DatasetShape.for_scale(1.0).references:
        assert ref.parent is None or ref.parent in seen
        seen.add(ref.name)
    assert sum(1 for ref in DatasetShape.for_scale(1.0).references if ref.parent) > 30


def test_scale_must_be_positive():
    with pytest.raises(ValueError):
        DatasetShape.for_scale(0)


EXPECTED = Fingerprint({"app.a": 10, "app.b": 5, "ref.c": 3}, indexes=4, foreign_keys=2, document_bytes=100)


@pytest.mark.parametrize(("actual", "problem"), [
    (Fingerprint({"app.a": 10, "app.b": 5}, 4, 2, 100), "1 tables missing (ref.c)"),
    (Fingerprint({"app.a": 9, "app.b": 5, "ref.c": 3}, 4, 2, 100), "app.a: 9 rows, expected 10"),
    (Fingerprint({"app.a": 10, "app.b": 5, "ref.c": 3}, 3, 2, 100), "3 indexes, expected 4"),
    (Fingerprint({"app.a": 10, "app.b": 5, "ref.c": 3}, 4, 0, 100), "0 foreign keys, expected 2"),
    (Fingerprint({"app.a": 10, "app.b": 5, "ref.c": 3}, 4, 2, 50), "app.documents holds 50 bytes"),
], ids=["missing-table", "short-table", "missing-index", "missing-fk", "truncated-bytea"])
def test_incomplete_copies_are_caught(actual, problem):
    problems = compare_fingerprints(EXPECTED, actual)
    assert any(problem in text for text in problems), problems


def test_complete_copy_with_extra_bookkeeping_tables_passes():
    actual = Fingerprint({**EXPECTED.rows, "app.tether_state": 1}, 4, 2, 100)
    assert compare_fingerprints(EXPECTED, actual) == []


@pytest.mark.parametrize(("ratio", "target", "expected"), [
    (0.5, Target(0.8, 1.0), "pass"),
    (0.8, Target(0.8, 1.0), "pass"),
    (0.9, Target(0.8, 1.0), "miss"),
    (1.2, Target(0.8, 1.0), "fail"),
    (0.2, Target(0.15), "fail"),
    (None, Target(0.15), None),
    (0.1, None, None),
], ids=["well-under", "at-goal", "over-goal-under-limit", "over-limit", "no-limit-over-goal", "no-ratio",
        "no-target"])
def test_verdicts(ratio, target, expected):
    assert verdict(ratio, target) == expected


def results_with(times: dict[str, list[float]], **overrides: MethodResult) -> list[MethodResult]:
    results = [MethodResult(method, seconds=list(times.get(method.key, [])))
               for method in COMPETITORS + TETHER_METHODS]
    return [overrides.get(result.method.key, result) for result in results]


MACHINE = {"cpu": "Test CPU", "cores": 2, "ram_gb": 8.0, "os": "Linux", "postgres": "15.0", "pg_dump": "pg_dump 15",
           "pgcopydb": "pgcopydb 0.10"}
DATASET = {"scale": 1.0, "schemas": 3, "tables": 310, "rows": 600_000, "size_mb": 250, "build_seconds": 10.0}
SETTINGS = {"repeat": 3, "note": "page cache shared"}


def test_ratios_use_the_fastest_verified_competitor():
    incomplete = MethodResult(method_by_key("pgcopydb"), seconds=[1.0, 1.0, 1.0], problems=["3 tables missing"])
    results = results_with({"psql": [20, 22, 30], "pg_restore": [25, 26, 27], "pg_restore_j2": [15, 16, 40],
                            "sync_full": [8, 9, 12], "sync_again": [1, 1, 2], "reset": [4, 4, 4]},
                           pgcopydb=incomplete)
    fastest = fastest_competitor(results)
    assert fastest is not None and fastest.method.key == "pg_restore_j2"
    summary = summarize(results, MACHINE, DATASET, SETTINGS)
    rows = {row["key"]: row for row in summary["methods"]}
    assert summary["fastest_competitor"] == "pg_dump -Fd -j2 + pg_restore -j2"
    assert rows["sync_full"]["ratio"] == 0.562 and rows["sync_full"]["verdict"] == "pass"
    assert rows["sync_again"]["ratio"] == 0.062 and rows["sync_again"]["verdict"] == "pass"
    assert rows["reset"]["ratio"] == 0.25 and rows["reset"]["verdict"] == "fail"
    assert rows["pgcopydb"]["ratio"] is None and not rows["pgcopydb"]["verified"]
    assert (rows["psql"]["median"], rows["psql"]["min"], rows["psql"]["max"]) == (22, 20, 30)
    # Round by round: 8/15, 9/16, 12/40 → median 0.533.
    assert rows["sync_full"]["paired_ratio"] == 0.533
    assert summary["all_verified"] is False


def test_unavailable_sync_is_a_row_not_a_failure():
    unavailable = {key: MethodResult(method_by_key(key), status=NOT_AVAILABLE, reason="no sync-prod task")
                   for key in (method.key for method in TETHER_METHODS)}
    results = results_with({"psql": [2], "pg_restore": [3], "pg_restore_j2": [1], "pgcopydb": [1.5]}, **unavailable)
    summary = summarize(results, MACHINE, DATASET, SETTINGS)
    assert summary["all_verified"] is True
    console = Console(record=True, width=160)
    console.print(results_table(summary))
    text = console.export_text()
    for result in results:
        assert result.method.label in text
    assert "not available" in text
    markdown = markdown_table(summary)
    assert "no sync-prod task" in markdown and "Test CPU" in markdown
    assert markdown.count("\n| ") == len(results)


def test_failed_tether_method_counts_as_failing_its_target():
    failed = MethodResult(method_by_key("sync_full"))
    failed.fail("sync-prod exited 1")
    summary = summarize(results_with({"psql": [2]}, sync_full=failed), MACHINE, DATASET, SETTINGS)
    row = next(row for row in summary["methods"] if row["key"] == "sync_full")
    assert row["status"] == FAILED and row["verdict"] == "fail" and summary["all_verified"] is False


def test_machine_facts_parsers():
    assert cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: x\n") == "AMD EPYC 7B13"
    assert ram_gb("MemTotal:       24683520 kB\nMemFree: 1 kB\n") == 23.5
    assert ram_gb("") is None


@pytest.mark.parametrize(("text", "expected"), [
    (None, tuple(m.key for m in COMPETITORS + TETHER_METHODS)),
    ("pgcopydb, psql", ("psql", "pgcopydb")),
    ("reset,sync_full", ("sync_full", "reset")),
], ids=["all", "two-competitors-in-table-order", "tether-only"])
def test_parse_methods(text, expected):
    assert parse_methods(text) == expected


@pytest.mark.parametrize("options", [BenchOptions(repeat=0), BenchOptions(scale=0), BenchOptions(scale=100),
                                     BenchOptions(methods=())], ids=["no-repeat", "zero-scale", "huge", "none"])
def test_bad_options_are_config_errors(options):
    with pytest.raises(ConfigError):
        options.validate()


def test_task_turns_an_unknown_method_into_one_clear_message():
    with pytest.raises(Exit) as raised:
        bench(Context(), methods="psql,pg_dumpall", repeat=1, scale=0.01)
    assert "Unknown method(s) pg_dumpall" in str(raised.value.message)
    assert raised.value.code == ConfigError.exit_code


@pytest.mark.parametrize(("query", "key"), [
    ("COPY app.orders (id, total)   FROM stdin", "COPY app.orders (id, total) FROM stdin"),
    ("SELECT * FROM t WHERE id = 42 AND name = 'Ana'", "SELECT * FROM t WHERE id = N AND name = '…'"),
    ("CREATE INDEX\n  lookup_017_idx ON ref.lookup_017 (code)", "CREATE INDEX lookup_017_idx ON ref.lookup_017 (code)"),
], ids=["spaces", "literals", "newlines"])
def test_activity_key_groups_statements(query, key):
    assert activity_key(query) == key


def test_cpu_busy_fraction_from_proc_stat():
    before = read_cpu_times("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3\n")
    after = read_cpu_times("cpu  200 0 200 800 100 0 0 0 0 0\n")
    assert before == [100, 0, 100, 700, 100, 0, 0, 0, 0, 0]
    assert cpu_busy_fraction(before, after) == pytest.approx(2 / 3, abs=0.001)
    assert cpu_busy_fraction([], after) is None
    assert read_cpu_times("intr 1 2\n") == []


def test_proc_stat_parsing_and_cpu_categories():
    stat = "4242 (postgres: shop (x)) S 100 4242 4242 0 -1 4194560 1 0 0 0 30 12 0 0 20 0 1 0 5 1 1"
    parsed = parse_proc_stat(stat)
    assert parsed == ProcessTicks(ppid=100, name="postgres: shop (x)", ticks=42)
    assert parse_proc_stat("garbage") is None
    postmasters = {"source": 100, "dest": 200}
    sync = "/venv/bin/python -m invoke sync-prod"
    before = {4242: ProcessTicks(100, "postgres", 10), 7: ProcessTicks(1, "python3.11", 50, sync)}
    seen = {4242: ProcessTicks(100, "postgres", 110), 7: ProcessTicks(1, "python3.11", 150, sync),
            8: ProcessTicks(200, "postgres", 300), 9: ProcessTicks(7, "pg_dump", 20), 10: ProcessTicks(1, "gcc", 5),
            11: ProcessTicks(1, "python3.11", 7, "/venv/bin/pytest tests/other")}
    assert cpu_by_category(before, seen, postmasters, 100) == {
        "dest server": 3.0, "source server": 1.0, "python (tether)": 1.0, "pg_dump": 0.2, "other": 0.12}
    assert process_category(100, ProcessTicks(1, "postgres", 0), postmasters) == "source server"


@pytest.mark.parametrize(("subset_seconds", "size", "verdict_expected"), [
    ([1.0, 1.1, 1.2], 0.08, "pass"),
    ([1.0, 1.1, 1.2], 0.12, "fail"),
    ([1.0, 1.1, 1.2], None, "fail"),
    ([2.0, 2.0, 2.0], 0.05, "fail"),
], ids=["fast-and-small", "too-large", "size-unknown", "too-slow"])
def test_the_subset_target_is_a_ratio_to_the_full_sync_and_a_size(subset_seconds, size, verdict_expected):
    subset = MethodResult(method_by_key("sync_subset"), seconds=subset_seconds,
                          details={} if size is None else {"size_fraction": size})
    results = results_with({"psql": [5, 5, 5], "sync_full": [8, 8, 8]}, sync_subset=subset)
    rows = {row["key"]: row for row in summarize(results, MACHINE, DATASET, SETTINGS)["methods"]}
    row = rows["sync_subset"]
    assert row["target"] == "≤ 0.15 × full, size ≤ 10%"
    assert row["ratio"] == round(statistics.median(subset_seconds) / 5, 3)  # the column stays vs the competitor
    assert row["target_ratio"] == round(statistics.median(subset_seconds) / 8, 3)
    assert row["verdict"] == verdict_expected
