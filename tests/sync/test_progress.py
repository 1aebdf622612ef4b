"""What the sync shows while it works: bars on a terminal, plain phase lines elsewhere."""

from __future__ import annotations

import io

from rich.console import Console

from tether.sync.progress import BIG_TABLE_LINE, SyncProgress


def test_off_terminal_prints_phase_lines_only(capsys):
    progress = SyncProgress(bars=False)
    progress.phase("copying 3 tables")
    progress.start_tables(3)
    progress.advance_table("app.small", 100, 2)
    progress.finish_table("app.small", 2, 100)
    progress.finish_table("app.big", 10_000, BIG_TABLE_LINE)
    progress.stop_tables()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].endswith("s copying 3 tables")
    assert "copied app.big: 10,000 rows" in err[1]
    assert capsys.readouterr().out == ""


def test_quiet_prints_nothing(capsys):
    progress = SyncProgress(quiet=True, bars=False)
    progress.phase("x")
    progress.finish_table("app.big", 1, BIG_TABLE_LINE)
    assert capsys.readouterr() == ("", "")


def test_terminal_shows_a_bar_per_table_with_rows_bytes_and_speed():
    progress = SyncProgress(bars=True)
    progress._console = Console(file=io.StringIO(), force_terminal=True, width=120)
    progress.start_tables(2)
    progress.advance_table("app.[odd]", 4096, 10)
    progress.advance_table("app.[odd]", 4096, 20)
    assert progress._progress is not None
    tasks = {task.description.strip(): task for task in progress._progress.tasks}
    odd = tasks[r"app.\[odd]"]
    assert odd.completed == 8192 and odd.fields["rows"] == "20 rows"
    # One bar counts every byte from the source, with its rate: what a slow link limits.
    assert tasks["from the source"].completed == 8192
    progress.finish_table("app.[odd]", 20, 8192)
    assert tasks["tables"].completed == 1 and len(progress._progress.tasks) == 2
    progress.stop_tables()


def test_off_a_terminal_the_transfer_rate_is_printed_now_and_then(capsys):
    progress = SyncProgress(bars=False)
    progress.advance_table("app.big", 100 * 1024 * 1024, 10)
    assert "received" not in capsys.readouterr().err
    progress.advance_table("app.big", 50 * 1024 * 1024, 20)
    line = capsys.readouterr().err
    assert "received 157 MB from the source" in line and "Mbit/s" in line


def test_a_subset_shows_copied_of_planned_rows(capsys):
    progress = SyncProgress(bars=True)
    progress._console = Console(file=io.StringIO(), force_terminal=True, width=120)
    progress.planned_rows = {"app.orders": 5_000}
    progress.start_tables(2)
    progress.advance_table("app.orders", 4096, 1_200)
    progress.advance_table("app.other", 4096, 7)
    assert progress._progress is not None
    rows = {task.description.strip(): task.fields["rows"] for task in progress._progress.tasks}
    assert rows["app.orders"] == "1,200/5,000 rows" and rows["app.other"] == "7 rows"
    progress.stop_tables()
    plain = SyncProgress(bars=False)
    plain.planned_rows = {"app.orders": 50_000, "app.tiny": 3}
    plain.finish_table("app.orders", 50_000, 1024)
    plain.finish_table("app.tiny", 3, 10)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "copied app.orders: 50,000 rows" in err[0]
