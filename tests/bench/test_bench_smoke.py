"""`invoke bench` end to end at a tiny scale: real servers, every method, every copy verified (no timing)."""

from __future__ import annotations

import json

import psycopg
import pytest
from invoke import Context

from benchmarks.competitors import METHODS
from benchmarks.dataset import SCHEMAS
from benchmarks.report import NOT_AVAILABLE, OK, print_summary
from tether.tasks.bench import bench


@pytest.mark.slow
def test_bench_runs_every_method_and_verifies_every_copy(isolated_project, capsys):
    bench(Context(), repeat=1, scale=0.01, json=True, keep_servers=True, profile=True)
    output = capsys.readouterr().out
    summary = json.loads(output)
    kept = summary["servers"]
    try:
        rows = {row["key"]: row for row in summary["methods"]}
        assert list(rows) == [method.key for method in METHODS]
        for method in METHODS:
            row = rows[method.key]
            if method.kind == "competitor":
                assert row["status"] == OK and row["verified"], row
                assert len(row["runs"]) == 1 and row["median"] > 0 and row["ratio"] is not None
                assert row["details"]["profile"]["seconds"] > 0
            else:
                # sync-prod may not be registered yet; when it is, its copies must be complete too.
                assert row["verified"] or row["status"] == NOT_AVAILABLE, row
                assert row["status"] != NOT_AVAILABLE or row["reason"]
        assert summary["all_verified"] is True
        assert summary["fastest_competitor"] in {m.label for m in METHODS if m.kind == "competitor"}
        assert summary["dataset"]["schemas"] == len(SCHEMAS) and summary["dataset"]["tables"] == 18
        assert summary["machine"]["cores"] >= 1 and summary["machine"]["postgres"].startswith("15")

        saved = json.loads((isolated_project / ".runtime" / "bench" / "last.json").read_text())
        assert saved["methods"] == summary["methods"]

        print_summary(summary, as_json=False)
        table = capsys.readouterr().out
        print(table)
        for method in METHODS:
            assert method.label in table
        assert "fastest competitor:" in table and "dataset: scale 0.01" in table

        # --keep-servers: both still answer, through the passfile; no password was printed.
        with open(kept["passfile"]) as handle:
            passwords = [line.rstrip("\n").split(":")[-1] for line in handle]
        assert len(passwords) == 2 and all(password not in output + table for password in passwords)
        source_url = kept["source"]["url"].rsplit("/", 1)[0] + "/shop"
        with psycopg.connect(source_url, passfile=kept["passfile"]) as conn:
            assert conn.execute("SELECT count(*) FROM app.customers").fetchone() == (400,)
    finally:
        _stop_kept(kept)


def test_bench_through_a_link_reports_bytes_and_the_floor(isolated_project, capsys):
    bench(Context(), repeat=1, scale=0.01, json=True, methods="psql,sync_full", link="5ms,200mbit")
    summary = json.loads(capsys.readouterr().out)
    assert summary["settings"]["link"] == {"rtt_ms": 5.0, "mbit_per_second": 200.0}
    rows = {row["key"]: row for row in summary["methods"]}
    for key in ("psql", "sync_full"):
        row = rows[key]
        assert row["verified"], row
        # Every method read the source through the relay: its bytes were counted, and its floor follows.
        assert row["details"]["link_bytes"][0] > 100_000
        assert row["floor_seconds"] == round(row["details"]["link_bytes"][0] / 25e6, 2)
        assert row["floor_ratio"] >= 1
    assert rows["sync_full"]["floor_target"] == "≤ 1.25 × floor" and rows["sync_full"]["target"] == "≤ 0.5"
    print_summary(summary, as_json=False)
    table = capsys.readouterr().out
    assert "link MB" in table and "× floor" in table and "5 ms round trip" in table


def _stop_kept(kept: dict) -> None:
    import shutil
    from pathlib import Path

    from tether.native import postgres as native_pg
    from tether.native.binaries import server_bindir
    from tether.native.sysuser import service_user

    for name in ("source", "dest"):
        datadir = Path(kept[name]["datadir"])
        server = native_pg.PostgresServer(datadir=datadir, bindir=server_bindir(15), port=0,
                                          socket_dir=datadir.parent / "sock", log_file=datadir.parent / "log",
                                          run_as=service_user())
        native_pg.stop(server, timeout=10)
        shutil.rmtree(datadir.parent, ignore_errors=True)
    shutil.rmtree(Path(kept["passfile"]).parent, ignore_errors=True)
