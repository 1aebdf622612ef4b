"""The pure pieces: pg_dump/pg_restore/psql command lines, their environment, versions and manifests."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tether import dump_manifest as manifests
from tether import pgtools
from tether.conninfo import DatabaseAddress
from tether.errors import ConfigError
from tether.native import binaries
from tether.pgtools import DumpOptions

SAMPLE_PASSWORD = "s3cret"
PASSWORDS = ["s3cret", "p@ss:word/with?odd#chars", "ünïcödé pass", "with space", "'quote\"d'"]


def address(password: str | None = SAMPLE_PASSWORD, options: tuple[tuple[str, str], ...] = ()) -> DatabaseAddress:
    return DatabaseAddress("db.example.com", 6543, "app db", "app_user", password, options)


@pytest.mark.parametrize("password", PASSWORDS, ids=["plain", "url-specials", "accents", "space", "quotes"])
def test_password_never_in_argv_but_in_env(password):
    target = address(password)
    argvs = [
        pgtools.pg_dump_argv("pg_dump", target, DumpOptions(), "out.dump"),
        pgtools.pg_restore_argv("pg_restore", target, "in.dump"),
        pgtools.psql_argv("psql", target, command="SELECT 1"),
    ]
    for argv in argvs:
        assert not any(password in part for part in argv)
        assert "--no-password" in argv  # never hang on a prompt
    assert pgtools.program_env(target)["PGPASSWORD"] == password


@pytest.mark.parametrize(
    ("options", "expected", "absent"),
    [
        (DumpOptions(), ["--format=c", "--file=out"], ["--jobs", "--schema-only", "--data-only"]),
        (DumpOptions(format="directory", jobs=4), ["--format=d", "--jobs=4"], ["--schema-only"]),
        (DumpOptions(schema_only=True), ["--schema-only"], ["--data-only"]),
        (DumpOptions(data_only=True), ["--data-only"], ["--schema-only"]),
        (DumpOptions(exclude_table_data=("audit_*", "public.big table")),
         ["--exclude-table-data=audit_*", "--exclude-table-data=public.big table"], []),
    ],
    ids=["custom", "directory-parallel", "schema-only", "data-only", "exclude-table-data"],
)
def test_pg_dump_argv(options, expected, absent):
    argv = pgtools.pg_dump_argv("/usr/bin/pg_dump", address(), options, "out")
    assert argv[0] == "/usr/bin/pg_dump"
    for flag in expected:
        assert flag in argv
    for flag in absent:
        assert not any(part.startswith(flag) for part in argv)


def test_pg_dump_to_stdout_and_directory_needs_a_path():
    assert not any(part.startswith("--file") for part in pgtools.pg_dump_argv("pg_dump", address(), DumpOptions()))
    with pytest.raises(ValueError, match="directory"):
        pgtools.pg_dump_argv("pg_dump", address(), DumpOptions(format="directory", jobs=2))


def test_connection_argument_keeps_ssl_options_and_drops_password_and_session_options():
    target = address(options=(("sslmode", "require"), ("options", "-c search_path=app"), ("password", "x")))
    argument = pgtools.connection_argument(target)
    assert "sslmode=require" in argument
    assert "dbname='app db'" in argument and "port=6543" in argument
    assert "password" not in argument and "search_path" not in argument


@pytest.mark.parametrize(
    ("options", "readonly", "expected"),
    [
        ((), False, None),
        ((), True, "-c default_transaction_read_only=on"),
        ((("options", "-c search_path=app"),), False, "-c search_path=app"),
        ((("options", "-c search_path=app"),), True, "-c search_path=app -c default_transaction_read_only=on"),
    ],
    ids=["plain", "readonly", "own-options", "own-options-readonly"],
)
def test_session_options_go_to_pgoptions(options, readonly, expected):
    env = pgtools.program_env(address(options=options), readonly=readonly)
    assert env.get("PGOPTIONS") == expected


def test_inherited_pg_variables_cannot_redirect_the_program():
    base = {"PATH": "/bin", "PGHOSTADDR": "10.9.9.9", "PGSERVICE": "elsewhere", "PGOPTIONS": "-c x=y",
            "PGPASSFILE": "/home/me/.pgpass", "PGPASSWORD": "stale"}
    env = pgtools.program_env(address(password=None), base=base)
    assert env["PATH"] == "/bin" and env["PGPASSFILE"] == "/home/me/.pgpass"
    assert "PGHOSTADDR" not in env and "PGSERVICE" not in env and "PGOPTIONS" not in env
    assert "PGPASSWORD" not in env  # a stale password must not be sent to another server
    assert env["PGHOST"] == "db.example.com" and env["PGPORT"] == "6543"


def test_pg_restore_argv_defaults_skip_production_only_objects_and_stop_on_error():
    argv = pgtools.pg_restore_argv("pg_restore", address(), "in.dump", jobs=3)
    for flag in ("--no-owner", "--no-privileges", "--no-subscriptions", "--no-tablespaces", "--exit-on-error",
                 "--jobs=3"):
        assert flag in argv
    assert argv[-1] == "in.dump"
    stdin = pgtools.pg_restore_argv("pg_restore", address(), None, skips=(), exit_on_error=False)
    assert "--no-owner" not in stdin and "--exit-on-error" not in stdin and stdin[-1] == "--no-password"
    with pytest.raises(ValueError, match="stdin"):
        pgtools.pg_restore_argv("pg_restore", address(), None, jobs=2)


def test_psql_stops_on_errors():
    argv = pgtools.psql_argv("psql", address(), file="x.sql")
    assert argv[argv.index("-v") + 1] == "ON_ERROR_STOP=1"
    assert "--no-psqlrc" in argv and "--file=x.sql" in argv


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (DumpOptions(format="tar"), "--format"),
        (DumpOptions(jobs=0), "at least 1"),
        (DumpOptions(jobs=2), "directory"),
        (DumpOptions(schema_only=True, data_only=True), "exclude each other"),
    ],
    ids=["unknown-format", "zero-jobs", "jobs-need-directory", "schema-and-data-only"],
)
def test_dump_option_problems(options, problem):
    assert any(problem in found for found in options.problems())


def test_good_options_have_no_problems():
    assert DumpOptions(format="directory", jobs=2, schema_only=True).problems() == []


@pytest.mark.parametrize(
    ("output", "version", "major"),
    [
        ("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)", "15.18", 15),
        ("pg_restore (PostgreSQL) 16.2", "16.2", 16),
        ("pg_dump (PostgreSQL) 9.6.24", "9.6.24", 9),
        ("psql (PostgreSQL) 17beta1", "17", 17),
    ],
    ids=["debian", "plain", "nine-six", "beta"],
)
def test_parse_program_version(output, version, major):
    assert pgtools.parse_program_version(output) == (version, major)


def test_parse_program_version_without_number():
    with pytest.raises(ValueError):
        pgtools.parse_program_version("command not found")


@pytest.mark.parametrize(("number", "major"), [(150018, 15), ("160002", 16), (90624, 9), (100023, 10)])
def test_server_major(number, major):
    assert pgtools.server_major(number) == major


@pytest.mark.parametrize(
    ("text", "label"),
    [("dev", "dev"), ("my db/ü", "my_db"), ("../etc", "etc"), ("", "database"), ("app-prod.v2", "app-prod.v2")],
    ids=["plain", "spaces-slash-accent", "traversal", "empty", "dots-dashes"],
)
def test_safe_label(text, label):
    assert manifests.safe_label(text) == label


def test_unique_artifact_adds_a_counter_in_the_same_second(tmp_path):
    moment = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    first = manifests.unique_artifact(tmp_path, "dev", moment, ".dump")
    assert first.name == "dev-20250102T030405Z.dump"
    first.write_bytes(b"x")
    second = manifests.unique_artifact(tmp_path, "dev", moment, ".dump")
    assert second.name == "dev-20250102T030405Z-2.dump"
    manifests.manifest_path(second).write_text("{}")  # a manifest alone also reserves the name
    assert manifests.unique_artifact(tmp_path, "dev", moment, ".dump").name == "dev-20250102T030405Z-3.dump"


def test_directory_checksum_sees_names_and_bytes_moving_between_files(tmp_path):
    def tree(name: str, files: dict[str, bytes]) -> Path:
        root = tmp_path / name
        root.mkdir()
        for relative, data in files.items():
            (root / relative).write_bytes(data)
        return root

    base = manifests.sha256_of(tree("a", {"1.dat": b"abc", "2.dat": b"def"}))
    assert manifests.sha256_of(tree("b", {"1.dat": b"abc", "2.dat": b"def"})) == base
    assert manifests.sha256_of(tree("c", {"1.dat": b"ab", "2.dat": b"cdef"})) != base
    assert manifests.sha256_of(tree("d", {"1.dat": b"abc", "3.dat": b"def"})) != base
    assert manifests.size_of(tmp_path / "a") == 6


def test_clean_partials_removes_only_dead_writers(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a pid that certainly ended
    dead = tmp_path / f".dev-x.dump.{child.pid}.partial"
    alive = tmp_path / f".dev-y.dump.{os.getpid()}.partial"
    (tmp_path / f".dev-z.dir.{child.pid}.partial").mkdir()
    dead.write_bytes(b"half")
    alive.write_bytes(b"busy")
    removed = manifests.clean_partials(tmp_path)
    assert sorted(removed) == sorted([dead.name, f".dev-z.dir.{child.pid}.partial"])
    assert alive.exists()


def test_manifest_round_trip_and_refusals(tmp_path):
    artifact = tmp_path / "dev-1.dump"
    artifact.write_bytes(b"PGDMP data")
    with pytest.raises(manifests.DumpIntegrityError, match="no manifest"):
        manifests.verify(artifact)
    manifests.write_manifest(artifact, {"sha256": manifests.sha256_of(artifact), "size_bytes": 10})
    assert manifests.verify(artifact)["file"] == "dev-1.dump"
    artifact.write_bytes(b"PGDMP dat4")
    with pytest.raises(manifests.DumpIntegrityError, match="checksum"):
        manifests.verify(artifact)
    artifact.write_bytes(b"PGDMP")
    with pytest.raises(manifests.DumpIntegrityError, match="truncated"):
        manifests.verify(artifact)
    manifests.manifest_path(artifact).write_text("{not json")
    with pytest.raises(manifests.DumpIntegrityError, match="unreadable"):
        manifests.verify(artifact)


@pytest.mark.parametrize(
    ("options", "in_argv", "env"),
    [
        ((("sslmode", "verify-full"), ("sslrootcert", "/etc/ca.pem"), ("sslcert", "/c.pem"), ("sslkey", "/k.pem")),
         ["sslmode=verify-full", "sslrootcert=/etc/ca.pem", "sslcert=/c.pem", "sslkey=/k.pem"], {}),
        ((("connect_timeout", "5"), ("application_name", "tether dump"), ("target_session_attrs", "read-write")),
         ["connect_timeout=5", "application_name='tether dump'", "target_session_attrs=read-write"], {}),
        ((("gssencmode", "disable"), ("channel_binding", "require")),
         ["gssencmode=disable", "channel_binding=require"], {}),
        ((("password", "from-query"),), [], {"PGPASSWORD": "from-query"}),
        ((("passfile", "/home/me/.pgpass-prod"),), [], {"PGPASSFILE": "/home/me/.pgpass-prod"}),
        ((("options", "-c statement_timeout=0"),), [], {"PGOPTIONS": "-c statement_timeout=0"}),
    ],
    ids=["ssl-files", "timeouts-and-names", "gss-and-channel-binding", "query-password-to-env",
         "passfile-to-env", "session-options-to-env"],
)
def test_allowed_options_go_to_argv_and_secrets_to_env(options, in_argv, env):
    target = address(password=None, options=options)
    argument = pgtools.connection_argument(target)
    for part in in_argv:
        assert part in argument
    built = pgtools.program_env(target, base={"PGPASSFILE": "/inherited"})
    for key, value in env.items():
        assert built[key] == value
        assert value not in argument


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        (("sslpassword", "k3yphrase"), "no environment variable"),
        (("hostaddr", "10.0.0.9"), "'hostaddr'"),
        (("service", "prod"), "'service'"),
        (("sslmode ", "disable"), "'sslmode '"),
        (("replication", "database"), "'replication'"),
    ],
    ids=["sslpassword", "hostaddr", "service", "typo", "unknown"],
)
def test_options_that_cannot_travel_safely_are_refused(option, reason):
    target = address(options=(option,))
    builders = [
        lambda: pgtools.connection_argument(target),
        lambda: pgtools.program_env(target),
        lambda: pgtools.pg_dump_argv("pg_dump", target, DumpOptions(), "out"),
        lambda: pgtools.pg_restore_argv("pg_restore", target, "in"),
        lambda: pgtools.psql_argv("psql", target),
        lambda: pgtools.psql_interactive_argv("psql", target),
    ]
    for build in builders:
        with pytest.raises(ConfigError) as caught:
            build()
        assert reason in str(caught.value)
        assert "k3yphrase" not in str(caught.value)


@pytest.mark.parametrize(
    ("inherited", "kept"),
    [
        ({"TETHER_PROD_PASSWORD": "a1"}, False), ({"TETHER_PROD_READONLY_PASSWORD": "a2"}, False),
        ({"TETHER_PROD_ADMIN_PASSWORD": "a3"}, False), ({"TETHER_STAGING_PASSWORD": "a4"}, False),
        ({"POSTGRES_PASSWORD": "a5"}, False), ({"db_password": "a6"}, False), ({"REDISCLI_AUTH": "a7"}, False),
        ({"MYSQL_PWD_PASSWD": "a8"}, False), ({"PGPASSWORD": "a9"}, False), ({"PGHOSTADDR": "10.9.9.9"}, False),
        ({"PGSERVICE": "prod"}, False), ({"PGSERVICEFILE": "/x"}, False), ({"PGOPTIONS": "-c x=y"}, False),
        ({"PATH": "/bin"}, True), ({"HOME": "/root"}, True), ({"PGPASSFILE": "/p"}, True),
        ({"PGSSLROOTCERT": "/ca"}, True), ({"LANG": "C.UTF-8"}, True),
    ],
    ids=["tether-prod", "tether-readonly", "tether-admin", "tether-any", "postgres-image", "lowercase",
         "rediscli", "passwd", "stale-pgpassword", "pghostaddr", "pgservice", "pgservicefile", "pgoptions",
         "path", "home", "pgpassfile", "pgsslrootcert", "lang"],
)
def test_program_env_passes_on_only_harmless_inherited_variables(inherited, kept):
    (key, value), = inherited.items()
    env = pgtools.program_env(address(password=None), base=inherited)
    assert (env.get(key) == value) is kept
    assert "PGPASSWORD" not in env  # no password of ours, and none inherited


def test_program_env_holds_exactly_our_password():
    env = pgtools.program_env(address(), base={"TETHER_PROD_PASSWORD": "prod", "PGPASSWORD": "stale"})
    assert [key for key in env if "PASSWORD" in key.upper()] == ["PGPASSWORD"]
    assert env["PGPASSWORD"] == SAMPLE_PASSWORD


@pytest.mark.parametrize("password", PASSWORDS, ids=["plain", "url-specials", "accents", "space", "quotes"])
def test_psql_interactive_is_only_the_connection(password):
    target = address(password, options=(("sslmode", "require"), ("options", "-c search_path=app")))
    argv = pgtools.psql_interactive_argv("/usr/bin/psql", target)
    assert argv == ["/usr/bin/psql", f"--dbname={pgtools.connection_argument(target)}"]
    assert not any(password in part for part in argv)
    assert "sslmode=require" in argv[1] and "search_path" not in argv[1]
    assert not any("ON_ERROR_STOP" in part for part in argv)


def test_real_psql_connects_through_env_ignoring_inherited_redirects_and_secrets(pg_db):
    psql = binaries.client_program("psql")
    target = DatabaseAddress(pg_db.host, pg_db.port, pg_db.database, pg_db.user, pg_db.password,
                             (("application_name", "tether-allowlist"), ("options", "-c search_path=elsewhere")))
    # Redirects that would break the connection if inherited, and secrets that must not reach the child.
    base = {**os.environ, "PGHOSTADDR": "10.255.255.1", "PGSERVICE": "no-such-service", "PGPASSWORD": "stale",
            "TETHER_PROD_PASSWORD": "prod-secret-xyz", "TETHER_PROD_ADMIN_PASSWORD": "admin-secret-xyz"}
    argv = pgtools.psql_argv(psql, target, command="SELECT current_setting('application_name') || '|' || "
                                                    "current_setting('search_path')")
    result = subprocess.run([*argv, "--tuples-only", "--no-align"], env=pgtools.program_env(target, base=base),
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "tether-allowlist|elsewhere"
    shell = subprocess.run([*pgtools.psql_argv(psql, target), "--command=\\! env"], capture_output=True, text=True,
                           env=pgtools.program_env(target, base=base), check=False, timeout=60)
    assert shell.returncode == 0, shell.stderr
    assert "prod-secret-xyz" not in shell.stdout and "admin-secret-xyz" not in shell.stdout
    assert f"PGPASSWORD={pg_db.password}" in shell.stdout.splitlines()
