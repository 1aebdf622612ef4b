"""Swapping a scratch database in for a target, on a real server."""

import os

import psycopg
import pytest

from tests.swap_support import make_marked as _make
from tests.swap_support import marker_of as _marker
from tether import swap


def test_swap_replaces_target_and_disconnects_its_sessions(pg_server):
    admin = pg_server.admin
    _make(admin, "swap_target", "old")
    scratch = swap.scratch_name("swap_target", "restore")
    _make(admin, scratch, "new")
    idle = psycopg.connect(admin.with_database("swap_target").conninfo())
    try:
        assert swap.swap_in(admin, scratch, "swap_target") == 1
    finally:
        idle.close()
    assert _marker(admin, "swap_target") == "new"
    assert not swap.database_exists(admin, scratch)
    with psycopg.connect(admin.conninfo()) as conn:
        leftovers = conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'swap_target__tether_%'")
        assert leftovers.fetchone()[0] == 0
    pg_server.drop_database("swap_target")


def test_swap_creates_target_when_missing(pg_server):
    scratch = swap.scratch_name("swap_fresh", "sync")
    _make(pg_server.admin, scratch, "fresh")
    swap.swap_in(pg_server.admin, scratch, "swap_fresh")
    assert _marker(pg_server.admin, "swap_fresh") == "fresh"
    pg_server.drop_database("swap_fresh")


def test_cleanup_drops_only_leftovers_of_dead_processes(pg_server):
    admin = pg_server.admin
    dead = str(swap.ScratchName("swap_left", "restore", 2**22 + 12345, 1))
    alive = str(swap.ScratchName("swap_left", "restore", os.getppid(), 2))
    _make(admin, dead, "x")
    _make(admin, alive, "y")
    assert swap.cleanup_leftovers(admin, "swap_left") == [dead]
    assert swap.database_exists(admin, alive)
    pg_server.drop_database(alive)


@pytest.mark.parametrize("name", ["db", "Mixed Case", "x" * 20])
def test_scratch_names_parse_back(name):
    parsed = swap.parse_scratch_name(swap.scratch_name(name, "sync"))
    assert parsed is not None and parsed.target == name and parsed.purpose == "sync"


def test_scratch_name_refuses_too_long_targets():
    with pytest.raises(swap.TetherError, match="too long"):
        swap.scratch_name("y" * 50, "restore")
