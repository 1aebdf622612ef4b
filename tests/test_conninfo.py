"""Database addresses: locality of hosts, URL parsing and round trips, and errors that never show the password."""

from __future__ import annotations

import pytest

from tether.conninfo import DatabaseAddress, parse_database_url
from tether.errors import ConfigError
from tether.locality import is_local_host
from tether.secrets import mask_text


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True), ("127.10.20.30", True), ("::1", True), ("[::1]", True),
        ("0:0:0:0:0:0:0:1", True), ("localhost", True), ("LocalHost", True), ("localhost.localdomain", True),
        ("ip6-localhost", True), ("/var/run/postgresql", True), ("/cloudsql/p:r:i", True), ("", True),
        ("10.0.0.5", False), ("192.168.1.10", False), ("172.16.0.1", False), ("fd00::1", False),
        ("0.0.0.0", False),  # noqa: S104 - a wildcard address is not loopback
        ("db.example.com", False), ("localhost.example.com", False), ("mylocalhost", False),
        ("::ffff:10.0.0.1", False),
    ],
    ids=["v4-loopback", "v4-loopback-range", "v6-loopback", "v6-bracketed", "v6-long", "localhost",
         "localhost-case", "localhost-localdomain", "ip6-localhost", "socket", "cloudsql-socket", "empty",
         "private-10", "private-192", "private-172", "v6-ula", "unspecified", "hostname", "localhost-subdomain",
         "localhost-suffix", "v4-mapped-private"],
)
def test_is_local_host(host, local):
    assert is_local_host(host) is local


NASTY = ["plain", "p@ss:w/rd", "100%#?&=+", "with space", "ünïcödé", "'quo\"te'", "semi;colon", "tab\tand\\back"]


@pytest.mark.parametrize("password", NASTY, ids=[f"password-{i}" for i in range(len(NASTY))])
@pytest.mark.parametrize("host", ["db.example.com", "::1", "/tmp/sock dir"], ids=["name", "ipv6", "socket"])
def test_round_trip_of_nasty_passwords(password, host):
    address = DatabaseAddress(host, 6543, "app", "app_user", password)
    assert parse_database_url(address.url()) == address


@pytest.mark.parametrize(
    "address",
    [
        DatabaseAddress("db", 5432, "my db/ü?#", "user@corp:x", "pw"),
        DatabaseAddress("db", 5432, "100%", "%41", None),
        DatabaseAddress("127.0.0.1", 1, "app", "u", "", (("application_name", "a+b c"), ("sslmode", "require"))),
        DatabaseAddress("/cloudsql/proj:region:inst", 5432, "app", "api", "pw", (("options", "-c search_path=x"),)),
        DatabaseAddress("fe80::1%eth0", 65535, "app", "u", "pw"),
    ],
    ids=["odd-database-and-user", "percent-names-no-password", "empty-password-with-options", "cloudsql-socket",
         "ipv6-zone-max-port"],
)
def test_round_trip_of_nasty_names(address):
    for scheme in ("postgresql", "postgres", "postgresql+asyncpg", "postgresql+psycopg"):
        assert parse_database_url(address.url(scheme)) == address


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h/db", DatabaseAddress("h", 5432, "db", "u", "p")),
        ("postgresql+asyncpg://u:p@h:6000/db", DatabaseAddress("h", 6000, "db", "u", "p")),
        ("postgresql://h/db", DatabaseAddress("h", 5432, "db", "postgres", None)),
        ("postgresql:///db?host=/var/run/postgresql&port=5433",
         DatabaseAddress("/var/run/postgresql", 5433, "db", "postgres", None)),
        ("postgresql://%2Ftmp%2FPG@/db", DatabaseAddress("localhost", 5432, "db", "/tmp/PG", None)),
        ("postgresql://u@%2Ftmp%2FPG:5433/db", DatabaseAddress("/tmp/PG", 5433, "db", "u", None)),
        ("postgresql:///?dbname=app&user=bob&password=x%2By&host=h",
         DatabaseAddress("h", 5432, "app", "bob", "x+y")),
        ("postgresql://u:a@h/db?password=ignored&dbname=other&user=other",
         DatabaseAddress("h", 5432, "db", "u", "a")),
        ("postgresql://u@h/db?application_name=a+b&sslmode=verify-full",
         DatabaseAddress("h", 5432, "db", "u", None, (("application_name", "a+b"), ("sslmode", "verify-full")))),
        ("POSTGRESQL://u@LOCALHOST/db", DatabaseAddress("LOCALHOST", 5432, "db", "u", None)),
    ],
    ids=["postgres-scheme", "asyncpg", "default-user", "socket-in-query", "empty-host-is-localhost",
         "socket-in-host-keeps-case", "everything-in-query", "authority-wins-over-query", "plus-stays-plus",
         "upper-case"],
)
def test_parse_database_url(url, expected):
    assert parse_database_url(url) == expected


ERROR_CASES = [
    ("postgresql://u:topsecret/x", "could not be parsed"),
    ("postgresql://u:topsecret127.0.0.1:5432/x", "could not be parsed"),
    ("postgresql://u:top/secret@127.0.0.1:5432/x", "could not be parsed"),
    ("postgresql://u:123/topsecret@127.0.0.1:5432/x", "after its host part"),
    ("postgresql://u:12#topsecret@h/db", "after its host part"),
    ("postgresql://u:12?topsecret@h/db", "after its host part"),
    ("postgresql://u:topsecret@h/db#frag", "after its host part"),
    ("postgresql://u:topsecret@[::1/db", "could not be parsed"),
    ("postgresql://u:topsecret@h:99999/db", "could not be parsed"),
    ("postgresql://u:topsecret@h:0/db", "from 1 to 65535"),
    ("postgresql://u:topsecret@h/db?port=abc", "port parameter"),
    ("postgresql://u:topsecret@h/db?port=70000", "from 1 to 65535"),
    ("postgresql://u:topsecret@h/db?port=%EF%BC%95", "port parameter"),
    ("postgresql://u:topsecret@h:5432", "names no database"),
    ("postgresql://u:topsecret@h:5432/?sslmode=require", "names no database"),
    ("mysql://u:topsecret@h/db", "starts with mysql://"),
    ("u:topsecret@h:5432/db", "no scheme"),
    ("postgresql://u:topsecret@localhost/db?hostaddr=10.0.0.9", "hostaddr"),
    ("postgresql://u:topsecret@localhost/db?service=prod", "service"),
]


@pytest.mark.parametrize(("url", "reason"), ERROR_CASES, ids=[
    "no-at", "no-at-with-host", "slash-in-password", "digits-then-slash", "hash-in-password",
    "question-in-password", "fragment", "broken-ipv6", "port-too-big", "port-zero", "query-port-text",
    "query-port-too-big", "query-port-fullwidth", "no-database", "empty-database", "wrong-scheme", "no-scheme",
    "hostaddr-redirect", "service-redirect",
])
def test_bad_urls_say_why_without_the_password(url, reason):
    with pytest.raises(ConfigError) as caught:
        parse_database_url(url)
    message = str(caught.value)
    assert reason in message
    assert "topsecret" not in message and "secret" not in message
    assert "Traceback" not in message and "\n" not in message
    assert mask_text(message) == message  # the hint survives the masking every task error goes through


def test_url_hint_names_the_form_and_the_encodings():
    with pytest.raises(ConfigError) as caught:
        parse_database_url("postgresql://u:p/w@h/db")
    message = str(caught.value)
    assert "postgresql://USER@HOST:PORT/DATABASE" in message
    assert all(code in message for code in ("%40", "%2F", "%3A"))


def test_conninfo_and_libpq_env_carry_the_password_and_options():
    address = parse_database_url("postgresql://app:p%40ss%20w@db:6000/my%20db?sslmode=require")
    assert "password='p@ss w'" in address.conninfo() and "sslmode=require" in address.conninfo()
    assert address.libpq_env() == {"PGHOST": "db", "PGPORT": "6000", "PGDATABASE": "my db", "PGUSER": "app",
                                   "PGPASSWORD": "p@ss w", "PGSSLMODE": "require"}
    assert "p@ss" not in repr(address)


def imported_tether_modules(module: str) -> set[str]:
    """Every tether module that ``module`` imports, at the top or inside a function (a lazy import is still one)."""
    import ast
    from pathlib import Path

    source = Path(__file__).resolve().parents[1] / (module.replace(".", "/") + ".py")
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("tether.")}


@pytest.mark.parametrize(("lower", "higher"), [("tether.locality", "tether.conninfo"),
                                               ("tether.envfiles", "tether.target"),
                                               ("tether.envfiles", "tether.envsync")])
def test_a_lower_module_never_imports_the_higher_one(lower: str, higher: str) -> None:
    assert higher not in imported_tether_modules(lower)


def test_a_refused_connection_keeps_libpqs_whole_reason() -> None:
    import psycopg

    from tests.conftest import free_port
    from tether.conninfo import libpq_reason
    from tether.health import check_postgres

    address = DatabaseAddress("127.0.0.1", free_port(), "app", "app", "Secret-pw-42")
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(address.conninfo(connect_timeout="2"))
    reason = libpq_reason(refused.value, address.password)
    assert "Connection refused" in reason and "Is the server running" in reason and "\n" not in reason
    detail = check_postgres("postgres-dev", address, timeout=2).detail
    assert "Connection refused" in detail and "Is the server running" in detail


def test_a_failed_login_keeps_the_reason_and_masks_the_password(pg_server) -> None:
    import psycopg

    from tether.conninfo import libpq_reason

    wrong = pg_server.admin.with_credentials("postgres", "Wrong-pw-1234")
    with pytest.raises(psycopg.OperationalError) as failed:
        psycopg.connect(wrong.conninfo(connect_timeout="5"))
    reason = libpq_reason(RuntimeError(f"{failed.value} (password=Wrong-pw-1234)"), wrong.password)
    assert "password authentication failed" in reason and "Wrong-pw-1234" not in reason
