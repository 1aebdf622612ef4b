"""The benchmark's command builders: the right programs and flags, and never a password on a command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.competitors import (
    ClientPrograms,
    Command,
    Plan,
    anonymize_arguments,
    child_environment,
    custom_dump_restore,
    db_reset_plan,
    directory_dump_restore,
    pgcopydb_clone,
    plain_dump_restore,
    run_plan,
    sync_prod_plan,
)
from tether.conninfo import DatabaseAddress
from tether.errors import CommandFailed, TetherError

PROGRAMS = ClientPrograms(pg_dump="/pg/pg_dump", pg_restore="/pg/pg_restore", psql="/pg/psql",
                          pgcopydb="/usr/bin/pgcopydb", pg_config="/pg/pg_config")
PASSWORDS = ["s3cret", "p@ss:word/with?odd#chars", "spa ce'quote\"", "ümlaut€"]
REPO = Path("/repo")


def addresses(password: str) -> tuple[DatabaseAddress, DatabaseAddress]:
    source = DatabaseAddress("127.0.0.1", 5501, "shop", "postgres", password)
    dest = DatabaseAddress("127.0.0.1", 5502, "shop_copy", "postgres", password[::-1] + "x")
    return source, dest


def every_plan(password: str, tmp: Path) -> list[Plan]:
    source, dest = addresses(password)
    return [
        plain_dump_restore(PROGRAMS, source, dest),
        custom_dump_restore(PROGRAMS, source, dest),
        directory_dump_restore(PROGRAMS, source, dest, tmp / "dump"),
        pgcopydb_clone(PROGRAMS, source, dest, tmp / "work"),
        sync_prod_plan(source, dest, tmp / "pgpass", REPO, ("--no-anonymize",)),
        db_reset_plan(dest, tmp / "pgpass", REPO),
    ]


def commands(plan: Plan) -> list[Command]:
    return [command for pipeline in plan.pipelines for command in pipeline]


@pytest.mark.parametrize("password", PASSWORDS, ids=["plain", "url-reserved", "quotes-space", "non-ascii"])
def test_no_password_in_any_argv(password, tmp_path):
    secrets = [address.password or "" for address in addresses(password)]
    for plan in every_plan(password, tmp_path):
        for command in commands(plan):
            joined = " ".join(command.argv)
            for secret in secrets:
                assert secret not in joined, plan.label
                assert secret.replace(" ", "%20") not in joined
                assert "%40" not in joined and "PGPASSWORD" not in joined


def test_dump_tools_get_their_own_side_password_in_env(tmp_path):
    source, dest = addresses("pw-source")
    plan = plain_dump_restore(PROGRAMS, source, dest)
    (dump, restore), = plan.pipelines
    assert dump.argv[0] == "/pg/pg_dump" and "--format=plain" in dump.argv
    assert dump.env["PGPASSWORD"] == source.password and dump.env["PGPORT"] == "5501"
    assert dump.env["PGDATABASE"] == "shop"
    assert restore.argv[:5] == ("/pg/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1")
    assert restore.env["PGPASSWORD"] == dest.password and restore.env["PGDATABASE"] == "shop_copy"


def test_custom_format_is_one_pipe_into_pg_restore():
    source, dest = addresses("pw")
    (pipeline,) = custom_dump_restore(PROGRAMS, source, dest).pipelines
    dump, restore = pipeline
    assert "--format=custom" in dump.argv
    assert restore.argv[0] == "/pg/pg_restore" and "--exit-on-error" in restore.argv
    assert restore.argv[-2:] == ("--dbname", "shop_copy")


def test_directory_format_dumps_then_restores_with_jobs(tmp_path):
    source, dest = addresses("pw")
    plan = directory_dump_restore(PROGRAMS, source, dest, tmp_path / "d", jobs=2)
    (dump,), (restore,) = plan.pipelines
    assert "--format=directory" in dump.argv and "--jobs=2" in dump.argv
    assert dump.argv[-2:] == ("--file", str(tmp_path / "d"))
    assert "--jobs=2" in restore.argv and restore.argv[-1] == str(tmp_path / "d")


def test_pgcopydb_gets_urls_in_env_and_jobs_in_argv(tmp_path):
    source, dest = addresses("pw")
    ((command,),) = pgcopydb_clone(PROGRAMS, source, dest, tmp_path / "w").pipelines
    assert command.argv[:2] == ("/usr/bin/pgcopydb", "clone")
    assert command.argv[2:6] == ("--table-jobs", "2", "--index-jobs", "2")
    assert "--no-owner" in command.argv and "--no-acl" in command.argv
    assert command.env["PGCOPYDB_SOURCE_PGURI"] == source.url()
    assert command.env["PGCOPYDB_TARGET_PGURI"] == dest.url()
    assert command.env["PG_CONFIG"] == "/pg/pg_config"


def test_pgcopydb_missing_is_a_domain_error(tmp_path):
    source, dest = addresses("pw")
    programs = ClientPrograms("/pg/pg_dump", "/pg/pg_restore", "/pg/psql")
    with pytest.raises(TetherError, match="apt-get install -y pgcopydb"):
        pgcopydb_clone(programs, source, dest, tmp_path)


def test_sync_prod_uses_passwordless_urls_and_a_passfile(tmp_path):
    source, dest = addresses("pw")
    ((command,),) = sync_prod_plan(source, dest, tmp_path / "pgpass", REPO, ("--no-anonymize",),
                                   {"TETHER_RUNTIME_DIR": "/x"}).pipelines
    argv = list(command.argv)
    assert argv[argv.index("-m") + 1:argv.index("-m") + 3] == ["invoke", "sync-prod"]
    assert argv[argv.index("--source") + 1] == "postgresql://postgres@127.0.0.1:5501/shop"
    assert argv[argv.index("--dest") + 1] == "postgresql://postgres@127.0.0.1:5502/shop_copy"
    assert argv[-3:] == ["--yes", "--json", "--no-anonymize"]
    assert command.env == {"PGPASSFILE": str(tmp_path / "pgpass"), "TETHER_RUNTIME_DIR": "/x"}
    assert command.cwd == str(REPO)


def test_db_reset_plan():
    _, dest = addresses("pw")
    ((command,),) = db_reset_plan(dest, Path("/p"), REPO).pipelines
    assert command.argv[-4:] == ("db.reset", "--db", "postgresql://postgres@127.0.0.1:5502/shop_copy", "--yes")


def test_child_environment_drops_inherited_libpq_variables():
    base = {"PATH": "/bin", "PGPASSWORD": "leak", "PGHOST": "elsewhere", "PGCOPYDB_SOURCE_PGURI": "x", "HOME": "/h"}
    env = child_environment(base, {"PGPASSWORD": "mine"})
    assert env == {"PATH": "/bin", "HOME": "/h", "PGPASSWORD": "mine"}


@pytest.mark.parametrize(("help_text", "expected_args", "note"), [
    ("  --anonymize-config=STRING   rules file\n  --no-anonymize", ("--anonymize-config", "/r.yaml"), "rules"),
    ("  -r STRING, --rules=STRING   rules file", ("--rules", "/r.yaml"), "rules"),
    ("  --no-anonymize   copy raw data", ("--no-anonymize",), "OFF"),
    ("  --yes", (), "default"),
], ids=["anonymize-config", "rules", "only-no-anonymize", "neither"])
def test_anonymize_arguments_follow_the_help_text(help_text, expected_args, note):
    args, text = anonymize_arguments(help_text, Path("/r.yaml"))
    assert args == expected_args
    assert note in text


def test_run_plan_pipes_and_returns_last_stdout(tmp_path):
    plan = Plan("echo-pipe", ((Command(("printf", "hello\\n")), Command(("tr", "a-z", "A-Z"))),))
    outcome = run_plan(plan, tmp_path)
    assert outcome.stdout == "HELLO\n"
    assert outcome.seconds >= 0


def test_run_plan_reports_the_failing_reader_not_the_sigpipe_writer(tmp_path):
    writer = Command(("sh", "-c", "yes payload"))
    reader = Command(("sh", "-c", "head -c 10 >/dev/null; echo reader broke password=hunter22 >&2; exit 7"))
    with pytest.raises(CommandFailed) as raised:
        run_plan(Plan("pipe", ((writer, reader),)), tmp_path, secrets=("hunter22",))
    assert raised.value.returncode == 7
    assert "reader broke" in raised.value.message
    assert "hunter22" not in raised.value.message


def test_run_plan_stops_at_the_first_failed_step(tmp_path):
    marker = tmp_path / "second-ran"
    plan = Plan("steps", ((Command(("sh", "-c", "exit 3")),), (Command(("touch", str(marker))),)))
    with pytest.raises(CommandFailed, match="exit code 3"):
        run_plan(plan, tmp_path / "logs")
    assert not marker.exists()
