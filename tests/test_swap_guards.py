"""What the swap guarantees when things go wrong, and the edges of its names (issue 21, mutation testing).

Real server throughout: a swap is only as atomic as PostgreSQL's transaction around the two renames.
"""

from __future__ import annotations

import os
import time

import psycopg
import pytest

from tests.swap_support import make_marked as _make
from tests.swap_support import marker_of as _marker
from tether import swap
from tether.errors import TetherError

DEAD_PID = 2**22 + 12345  # above Linux's highest pid_max: never a live process




def _names(admin, prefix):
    with psycopg.connect(admin.conninfo()) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY 1", (prefix,))
        return [row[0] for row in rows]


def _unique(stem):
    return f"{stem}_{os.getpid()}_{time.monotonic_ns() % 10**6}"


@pytest.mark.parametrize("operation", ["swap_in", "swap_names"])
def test_a_swap_whose_scratch_database_is_missing_leaves_the_target_in_place(pg_server, operation):
    """Survivor 2: dropping (or renaming away) the target before the scratch copy is known to exist loses it."""
    admin, target = pg_server.admin, _unique("swap_keep")
    _make(admin, target, "precious")
    missing = swap.scratch_name(target, "restore")
    with pytest.raises(psycopg.errors.InvalidCatalogName):
        getattr(swap, operation)(admin, missing, target)
    assert _marker(admin, target) == "precious"
    assert _names(admin, target) == [target]  # not renamed aside, no retired copy either
    pg_server.drop_database(target)


def test_swap_names_keeps_the_replaced_database_under_an_old_scratch_name(pg_server):
    admin, target = pg_server.admin, _unique("swap_aside")
    _make(admin, target, "old")
    scratch = swap.scratch_name(target, "sync")
    _make(admin, scratch, "new")
    disconnected, retired = swap.swap_names(admin, scratch, target)
    assert disconnected == 0
    parsed = swap.parse_scratch_name(retired)
    assert parsed is not None and (parsed.target, parsed.purpose, parsed.pid) == (target, "old", os.getpid())
    assert _marker(admin, target) == "new" and _marker(admin, retired) == "old"
    assert sorted(_names(admin, target)) == sorted([target, retired])
    # swap_in drops what it replaced; with no target at all there is nothing to retire.
    again = swap.scratch_name(target, "sync")
    _make(admin, again, "newer")
    assert swap.swap_in(admin, again, target) == 0
    assert _marker(admin, target) == "newer" and sorted(_names(admin, target)) == sorted([target, retired])
    pg_server.drop_database(retired)
    pg_server.drop_database(target)
    fresh = swap.scratch_name(target, "sync")
    _make(admin, fresh, "first")
    assert swap.swap_names(admin, fresh, target) == (0, None)
    pg_server.drop_database(target)


def test_every_session_on_the_target_is_disconnected_and_counted(pg_server):
    admin, target = pg_server.admin, _unique("swap_busy")
    _make(admin, target, "old")
    scratch = swap.scratch_name(target, "sync")
    _make(admin, scratch, "new")
    sessions = [psycopg.connect(admin.with_database(target).conninfo()) for _ in range(2)]
    on_scratch = psycopg.connect(admin.with_database(scratch).conninfo())
    try:
        assert swap.swap_in(admin, scratch, target) == 2  # the scratch database's session is not counted
    finally:
        for conn in [*sessions, on_scratch]:
            conn.close()
    assert _marker(admin, target) == "new"
    pg_server.drop_database(target)


def test_a_swap_that_cannot_get_the_target_alone_gives_up_and_keeps_both(pg_server, monkeypatch):
    """A client that is back after every kick: the swap retries with growing pauses, then gives up cleanly.

    Each attempt costs PostgreSQL's own 5 s wait for the other sessions to leave, so two attempts, not twenty.
    """
    admin, target = pg_server.admin, _unique("swap_stuck")
    _make(admin, target, "old")
    scratch = swap.scratch_name(target, "sync")
    _make(admin, scratch, "new")
    clients = [psycopg.connect(admin.with_database(target).conninfo())]
    real_terminate = swap.terminate_sessions

    def kick_and_come_back(conn, database):
        kicked = real_terminate(conn, database)
        if database == target:
            clients.append(psycopg.connect(admin.with_database(target).conninfo()))
        return kicked

    pauses: list[float] = []
    monkeypatch.setattr(swap, "terminate_sessions", kick_and_come_back)
    monkeypatch.setattr(swap.time, "sleep", pauses.append)
    try:
        with pytest.raises(TetherError) as raised:
            swap.swap_in(admin, scratch, target, attempts=2)
    finally:
        for conn in clients:
            conn.close()
    assert pauses == pytest.approx([0.05, 0.10])
    message = raised.value.message
    assert "clients keep reconnecting" in message and f"{target!r} is unchanged" in message
    assert f"kept as {scratch!r}" in message
    assert _marker(admin, target) == "old" and _marker(admin, scratch) == "new"
    pg_server.drop_database(target)
    pg_server.drop_database(scratch)


def test_sessions_kicked_on_every_attempt_are_all_counted(pg_server, monkeypatch):
    """A client that reconnects once between the kick and the rename: the second attempt succeeds."""
    admin, target = pg_server.admin, _unique("swap_retry")
    _make(admin, target, "old")
    scratch = swap.scratch_name(target, "sync")
    _make(admin, scratch, "new")
    clients = [psycopg.connect(admin.with_database(target).conninfo())]
    real_terminate = swap.terminate_sessions

    def kick_and_come_back_once(conn, database):
        kicked = real_terminate(conn, database)
        if database == target and len(clients) == 1:
            clients.append(psycopg.connect(admin.with_database(target).conninfo()))
        return kicked

    pauses: list[float] = []
    monkeypatch.setattr(swap, "terminate_sessions", kick_and_come_back_once)
    monkeypatch.setattr(swap.time, "sleep", pauses.append)
    try:
        assert swap.swap_in(admin, scratch, target) == 2
    finally:
        for conn in clients:
            conn.close()
    assert pauses == pytest.approx([0.05])
    assert _marker(admin, target) == "new"
    pg_server.drop_database(target)


def test_a_non_client_backend_on_the_target_is_sent_away_but_not_counted_as_a_session(pg_server):
    """Autovacuum workers come and go on a fresh database (CI once counted one as a third session). Any
    backend must go for the rename to pass, but only clients are sessions: a logical walsender stands in."""
    admin, target = pg_server.admin, _unique("swap_worker")
    _make(admin, target, "old")
    scratch = swap.scratch_name(target, "sync")
    _make(admin, scratch, "new")
    client = psycopg.connect(admin.with_database(target).conninfo())
    walsender = psycopg.connect(admin.with_database(target).conninfo(), replication="database", autocommit=True)
    try:
        with psycopg.connect(admin.conninfo()) as conn:
            pids = conn.execute("SELECT backend_type, pid FROM pg_stat_activity WHERE datname = %s",
                                (target,)).fetchall()
        # (An autovacuum worker may be there too: it is what this test is about.)
        assert ("walsender", walsender.info.backend_pid) in pids and ("client backend", client.info.backend_pid) in pids
        assert swap.swap_in(admin, scratch, target) == 1
    finally:
        client.close()
        walsender.close()
    assert _marker(admin, target) == "new"
    pg_server.drop_database(target)


def test_a_session_still_exiting_when_the_next_attempt_looks_is_counted_once(pg_server, monkeypatch):
    """A terminated session stays in pg_stat_activity until it has exited: the retry sees it again."""
    admin, target = pg_server.admin, _unique("swap_linger")
    _make(admin, target, "old")
    scratch = swap.scratch_name(target, "sync")
    _make(admin, scratch, "new")
    client = psycopg.connect(admin.with_database(target).conninfo())
    client_pid = client.info.backend_pid
    real_terminate = swap.terminate_sessions
    seen: list[set[int]] = []

    def still_listed(conn, database):
        kicked = real_terminate(conn, database)
        if database == target:
            if not seen:
                kicked = kicked | {client_pid}
                seen.append(kicked)
                raise_in_use_once.append(True)
            else:
                kicked = kicked | {client_pid}  # listed again while it exits
                seen.append(kicked)
        return kicked

    raise_in_use_once: list[bool] = []
    real_execute = psycopg.Connection.execute

    def rename_fails_once(self, query, *args, **kwargs):
        if raise_in_use_once and "RENAME" in str(getattr(query, "as_string", lambda _: query)(self)):
            raise_in_use_once.clear()
            raise psycopg.errors.ObjectInUse("database is being accessed by other users")
        return real_execute(self, query, *args, **kwargs)

    monkeypatch.setattr(swap, "terminate_sessions", still_listed)
    monkeypatch.setattr(swap.time, "sleep", lambda _: None)
    monkeypatch.setattr(psycopg.Connection, "execute", rename_fails_once)
    try:
        assert swap.swap_in(admin, scratch, target) == 1
    finally:
        client.close()
    assert len(seen) == 2 and _marker(admin, target) == "new"
    pg_server.drop_database(target)


@pytest.mark.parametrize("operation", ["swap_in", "swap_names"])
def test_by_default_a_swap_tries_twenty_times_over_ten_seconds_before_giving_up(pg_server, monkeypatch, operation):
    """The rename is refused every time (as with a client that is always back first): 20 attempts, pauses of
    0.05 s growing to 1 s (10.5 s in all), then the clear message; the renames fail fast here, so no real wait."""
    admin, target = pg_server.admin, _unique("swap_default")
    _make(admin, target, "old")
    scratch = swap.scratch_name(target, "sync")
    _make(admin, scratch, "new")
    real_execute = psycopg.Connection.execute

    def rename_refused(self, query, *args, **kwargs):
        if "RENAME" in str(getattr(query, "as_string", lambda _: query)(self)):
            raise psycopg.errors.ObjectInUse("database is being accessed by other users")
        return real_execute(self, query, *args, **kwargs)

    pauses: list[float] = []
    monkeypatch.setattr(psycopg.Connection, "execute", rename_refused)
    monkeypatch.setattr(swap.time, "sleep", pauses.append)
    with pytest.raises(TetherError, match="clients keep reconnecting"):
        getattr(swap, operation)(admin, scratch, target)
    monkeypatch.undo()
    assert pauses == pytest.approx([0.05 * n for n in range(1, 21)])
    assert _marker(admin, target) == "old" and _marker(admin, scratch) == "new"
    pg_server.drop_database(target)
    pg_server.drop_database(scratch)


def test_cleanup_drops_exactly_the_dead_leftovers_of_its_target_and_purposes(pg_server):
    admin = pg_server.admin
    target = _unique("swap_left")
    alive = str(swap.ScratchName(target, "restore", os.getppid(), 1))
    mine = str(swap.ScratchName(target, "restore", os.getpid(), 2))
    dead_restore = str(swap.ScratchName(target, "restore", DEAD_PID, 3))
    dead_sync = str(swap.ScratchName(target, "sync", DEAD_PID, 4))
    # LIKE's `_` matches any character: a name of another target that the query finds but must not touch.
    lookalike = str(swap.ScratchName(target.replace("_", "x", 1), "restore", DEAD_PID, 5))
    other_target = f"{target}{swap.SCRATCH_MARK}x{swap.SCRATCH_MARK}restore_{DEAD_PID}_6"  # parses as another target
    unparsable = f"{target}{swap.SCRATCH_MARK}restore_soon"
    # Created in this order: the ones to keep come first, so a loop that stops early misses the dead ones.
    for name in (alive, mine, lookalike, other_target, unparsable, dead_sync, dead_restore):
        _make(admin, name, "x")
    assert swap.cleanup_leftovers(admin, target, ("restore",)) == [dead_restore]
    assert swap.cleanup_leftovers(admin, target) == [dead_sync]
    assert set(_names(admin, target)) == {alive, mine, other_target, unparsable}
    assert swap.database_exists(admin, lookalike)
    for name in (alive, mine, other_target, unparsable, lookalike):
        pg_server.drop_database(name)


def test_database_exists_and_drop_database(pg_server):
    admin, name = pg_server.admin, _unique("swap_exists")
    assert not swap.database_exists(admin, name)
    _make(admin, name, "x")
    assert swap.database_exists(admin, name)
    busy = psycopg.connect(admin.with_database(name).conninfo())
    try:
        swap.drop_database(admin, name)  # WITH (FORCE): an open session does not stop it
    finally:
        busy.close()
    assert not swap.database_exists(admin, name)
    swap.drop_database(admin, name)  # IF EXISTS: dropping twice is fine


def test_admin_sessions_give_up_on_a_server_that_does_not_answer(monkeypatch, pg_server):
    """Every admin connection carries a connect timeout: a hung local server must not hang the command."""
    seen: list[str] = []
    real_connect = psycopg.connect

    def spy(conninfo, **kwargs):
        seen.append(conninfo)
        return real_connect(conninfo, **kwargs)

    monkeypatch.setattr(swap.psycopg, "connect", spy)
    assert swap.database_exists(pg_server.admin, "postgres")
    assert seen and all(psycopg.conninfo.conninfo_to_dict(info).get("connect_timeout") == "10" for info in seen)


def test_scratch_names_are_unique_and_parse_back_exactly():
    first = swap.scratch_name("app", "restore")
    time.sleep(0.002)
    second = swap.scratch_name("app", "restore")
    assert first != second
    parsed = swap.parse_scratch_name(second)
    assert parsed == swap.ScratchName("app", "restore", os.getpid(), int(second.rsplit("_", 1)[1]))
    assert isinstance(parsed.stamp, int) and isinstance(parsed.pid, int)
    # Microseconds: a stamp close to the wall clock, so leftovers can be told apart by age.
    assert abs(parsed.stamp - time.time_ns() // 1000) < 60 * 10**6


@pytest.mark.parametrize(("name", "parsed"), [
    ("app__tether_sync_12_34", swap.ScratchName("app", "sync", 12, 34)),
    ("a__tether_b__tether_old_1_2", swap.ScratchName("a__tether_b", "old", 1, 2)),
    ("app__tether_Sync_12_34", None),
    ("app__tether_sync_12", None),
    ("app__tether_sync_x_34", None),
    ("__tether_sync_12_34", None),
    ("app", None),
    ("app__tether_sync_12_34 ", None),
    (" app__tether_sync_12_34", swap.ScratchName(" app", "sync", 12, 34)),
], ids=["plain", "nested", "upper-purpose", "no-stamp", "bad-pid", "no-target", "not-scratch", "trailing-space",
        "leading-space"])
def test_parse_scratch_name(name, parsed):
    assert swap.parse_scratch_name(name) == parsed


@pytest.mark.parametrize("purpose", ["restore", "reset", "sync", "old"])
def test_the_longest_accepted_name_fits_even_with_the_longest_pid(purpose):
    longest = swap.longest_target(purpose)
    target = "t" * longest
    assert swap.parse_scratch_name(swap.scratch_name(target, purpose)) is not None
    # Linux's largest pid (2**22) and a 16-digit stamp: exactly PostgreSQL's 63 bytes, not one more.
    worst = str(swap.ScratchName(target, purpose, 4_194_304, 9_999_999_999_999_999))
    assert len(worst.encode()) == swap.MAX_IDENTIFIER
    with pytest.raises(TetherError, match=rf"too long \({longest + 1} bytes\)"):
        swap.scratch_name(target + "t", purpose)
    # Bytes, not characters: one accented letter is two.
    with pytest.raises(TetherError, match="too long"):
        swap.scratch_name(target[:-1] + "é", purpose)


def test_the_too_long_message_names_a_limit_every_command_accepts():
    with pytest.raises(TetherError) as raised:
        swap.scratch_name("y" * 50, "sync")
    assert "at most 22 bytes" in raised.value.message and "'" + "y" * 50 + "'" in raised.value.message
    assert swap.LONGEST_TARGET == min(swap.longest_target(p) for p in ("restore", "reset", "sync", "old")) == 22
    for purpose in ("restore", "reset", "sync", "old"):  # the advice holds for every command
        swap.scratch_name("y" * swap.LONGEST_TARGET, purpose)
