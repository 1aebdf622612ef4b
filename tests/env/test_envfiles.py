"""The pure parts of env files: quoting, URL forms, the managed block, drivers, the .gitignore reader."""

from __future__ import annotations

import random
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tether.conninfo import DatabaseAddress, parse_database_url
from tether.envfiles import (
    MANAGED_BEGIN,
    MANAGED_END,
    EnvFile,
    database_variables,
    gitignore_matches,
    libpq_variables,
    managed_values,
    merge_managed,
    parse_drivers,
    quote_value,
    redis_url,
    split_managed,
    unquote_value,
)
from tether.errors import ConfigError
from tether.redis_client import RedisAddress

from .conftest import read_with_python_dotenv, source_with_shell

# Passwords that break naive URL building, .env quoting or shell sourcing.
NASTY = [
    ("at", "p@ss"),
    ("colon", "pa:ss"),
    ("slash", "pa/ss"),
    ("percent", "100%sure"),
    ("percent-escape-lookalike", "%41%2F"),
    ("hash", "pa#ss"),
    ("question", "pa?ss"),
    ("ampersand-equals", "a&b=c"),
    ("space", "pa ss"),
    ("padded", "  padded  "),
    ("everything", "p@ss:w/rd%#?& x"),
    ("single-quote", "it's"),
    ("double-quote", 'say "hi"'),
    ("dollar", "pa$HOME"),
    ("command-substitution", "$(touch pwned)"),
    ("backquote", "`touch pwned`"),
    ("backslash", "back\\slash"),
    ("backslash-n", "new\\nline"),
    ("dollar-and-backslash", "a\\$b"),
    ("backslash-before-quote", 'a\\"b'),
    ("brace-no-dollar", "{x}"),
    ("dollar-brace-unclosed", "${x"),
    ("unicode", "pässwörd✓"),
    ("semicolon-pipe", "a;b|c>d<e"),
    ("exclamation", "hi!there"),
    ("tab", "a\tb"),
    ("quote-and-hash-and-space", "it's # not a comment "),
    ("only-quote", "'"),
    ("only-double-quote", '"'),
    ("equals-and-export", "export X=1"),
]
NASTY_IDS = [case_id for case_id, _ in NASTY]
NASTY_VALUES = [value for _, value in NASTY]

UNQUOTABLE = [
    ("newline", "a\nb"),
    ("carriage-return", "a\rb"),
    ("dotenv-expansion", "a${HOME}b"),
    ("quote-and-dollar", "it's $5"),
    ("quote-and-backquote", "it's `x`"),
    ("both-quotes", "it's \"quoted\""),
    ("quote-and-backslash", "it's\\here"),
    ("trailing-backslash", "ends\\"),
    ("double-backslash", "two\\\\slashes"),
    ("double-backslash-and-dollar", "a\\\\$b"),
]
# Characters that shells, dotenv parsers and URL builders each treat specially, for the random values below.
TROUBLE = "'\"\\$`#= \t!{}()%@:/?&;|<>*~\u00e9\u2713ab"


def _read_everywhere(path: Path, node_dotenv) -> dict[str, dict[str, str | None]]:
    """The values each real reader takes from ``path``: bash, dash, python-dotenv and Node's dotenv."""
    return {"bash": dict(source_with_shell(path, "bash")), "dash": dict(source_with_shell(path, "dash")),
            "python-dotenv": read_with_python_dotenv(path), "node dotenv": dict(node_dotenv(path))}


def test_quoted_values_read_back_identically_in_every_real_reader(tmp_path: Path, node_dotenv) -> None:
    path = tmp_path / ".env"
    lines, expected = [], {}
    for index, value in enumerate(NASTY_VALUES):
        lines.append(f"SECRET_{index}={quote_value(f'SECRET_{index}', value)}")
        expected[f"SECRET_{index}"] = value
        assert unquote_value(quote_value("SECRET", value)) == value
    # A double-quoted line at the end catches a value whose closing quote a parser would miss.
    path.write_text("\n".join(lines) + '\nAFTER="tail"\n')
    expected["AFTER"] = "tail"
    for reader, values in _read_everywhere(path, node_dotenv).items():
        wrong = {NASTY_IDS[int(k.split("_")[1])]: v for k, v in values.items()
                 if k != "AFTER" and v != expected.get(k)}
        assert values == expected, f"{reader} read differently: {wrong}"
    assert not (tmp_path / "pwned").exists()


def test_random_values_are_written_so_every_reader_agrees_or_refused(tmp_path: Path, node_dotenv) -> None:
    """Several hundred random values over troublesome characters: each is refused or read alike everywhere."""
    generator = random.Random(16)
    written: dict[str, str] = {}
    lines = []
    refused = 0
    for index in range(600):
        value = "".join(generator.choice(TROUBLE) for _ in range(generator.randint(1, 8)))
        try:
            quoted = quote_value(f"V_{index}", value)
        except ConfigError:
            refused += 1
            continue
        written[f"V_{index}"] = value
        lines.append(f"V_{index}={quoted}")
    path = tmp_path / ".env"
    path.write_text("\n".join(lines) + "\n")
    for reader, values in _read_everywhere(path, node_dotenv).items():
        assert values == written, reader
    assert len(written) > 300 and refused > 50  # both paths were exercised


@pytest.mark.parametrize("value", [value for _, value in UNQUOTABLE], ids=[case_id for case_id, _ in UNQUOTABLE])
def test_unquotable_values_are_refused_without_echoing_them(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        quote_value("PGPASSWORD in .env.local", value)
    assert "PGPASSWORD in .env.local" in caught.value.message
    assert value not in caught.value.message


@pytest.mark.parametrize("password", NASTY_VALUES, ids=NASTY_IDS)
def test_every_url_form_round_trips_the_password(password: str) -> None:
    tcp = DatabaseAddress("127.0.0.1", 5434, "app db", "api user", password)
    socket = DatabaseAddress("/cloudsql/acme:europe-west1:app-postgres-prod", 5432, "app", "api_user", password)
    for address in (tcp, socket):
        for name, url in database_variables("DATABASE_URL", address, ["asyncpg", "psycopg"]):
            parsed = parse_database_url(url)
            assert parsed == address, name
            assert url.split("://", 1)[0] in {"postgresql", "postgresql+asyncpg", "postgresql+psycopg"}
    assert dict(libpq_variables(tcp))["PGPASSWORD"] == password
    redis = urlsplit(redis_url(RedisAddress("127.0.0.1", 6379, password), db=1))
    assert unquote(redis.password or "") == password
    assert (redis.hostname, redis.port, redis.path) == ("127.0.0.1", 6379, "/1")


def test_a_missing_password_is_an_empty_pgpassword() -> None:
    env = dict(libpq_variables(DatabaseAddress("127.0.0.1", 5434, "app", "api_user", None)))
    assert env == {"PGHOST": "127.0.0.1", "PGPORT": "5434", "PGDATABASE": "app", "PGUSER": "api_user",
                   "PGPASSWORD": ""}


BLOCK = EnvFile(".env.local", "Test.", (("A", "1"), ("B", "two words"))).block()
OLD_BLOCK = EnvFile(".env.local", "Test.", (("A", "0"),)).block()


@pytest.mark.parametrize(("existing", "expected"), [
    (None, BLOCK),
    ("", BLOCK),
    ("MINE=1\n", BLOCK + "MINE=1\n"),
    ("MINE=1", BLOCK + "MINE=1"),
    (f"# mine\nTOP=1\n{OLD_BLOCK}BOTTOM='x y'\n\n# end\n", f"# mine\nTOP=1\n{BLOCK}BOTTOM='x y'\n\n# end\n"),
    (f"{OLD_BLOCK}".rstrip("\n"), BLOCK),
], ids=["new", "empty", "user-file", "user-file-no-newline", "replace-keeping-both-sides", "end-marker-last-line"])
def test_merge_managed(existing: str | None, expected: str) -> None:
    assert merge_managed(existing, BLOCK, ".env.local") == expected


@pytest.mark.parametrize("damaged", [
    f"{MANAGED_BEGIN}\nA=1\n",
    f"A=1\n{MANAGED_END}\n",
    f"{MANAGED_END}\n{MANAGED_BEGIN}\n",
    OLD_BLOCK + OLD_BLOCK,
], ids=["no-end", "no-begin", "reversed", "two-blocks"])
def test_a_damaged_block_is_refused(damaged: str) -> None:
    with pytest.raises(ConfigError, match="damaged tether managed block"):
        merge_managed(damaged, BLOCK, ".env.local")


def test_managed_values_read_only_the_block() -> None:
    text = f"A=user-before\n{BLOCK}B=user-after\n"
    assert managed_values(text, ".env") == {"A": "1", "B": "two words"}
    assert split_managed(text, ".env").after == "B=user-after\n"


@pytest.mark.parametrize(("value", "expected"), [
    (None, ("asyncpg", "psycopg")),
    ("asyncpg", ("asyncpg",)),
    (" AsyncPG , psycopg2,asyncpg ", ("asyncpg", "psycopg2")),
    ("", ()),
    (["psycopg"], ("psycopg",)),
    ([], ()),
], ids=["default", "one", "spaces-case-duplicates", "empty-string", "list", "empty-list"])
def test_parse_drivers(value: object, expected: tuple[str, ...]) -> None:
    assert parse_drivers(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["asyncpg;rm", "postgresql+asyncpg", "9x", "a b"])
def test_parse_drivers_refuses_odd_names(bad: str) -> None:
    with pytest.raises(ConfigError, match="not a driver name"):
        parse_drivers(bad)


REPO_GITIGNORE = ".env\n.env.*\n!.env.example\n"


@pytest.mark.parametrize(("gitignore", "name", "ignored"), [
    (REPO_GITIGNORE, ".env", True),
    (REPO_GITIGNORE, ".env.local", True),
    (REPO_GITIGNORE, ".env.production", True),
    (REPO_GITIGNORE, ".env.example", False),
    ("", ".env", False),
    ("# .env\n", ".env", False),
    ("*.env\n", ".env", True),
    ("/.env*\n", ".env.test", True),
    (".env*\n!.env.test\n", ".env.test", False),
    (".env/\n", ".env", False),
    (".runtime/\n", ".env", False),
], ids=["exact", "star", "star-production", "negated-example", "empty", "commented", "suffix-glob",
        "anchored", "negated-later", "directory-only", "unrelated"])
def test_gitignore_matches(gitignore: str, name: str, ignored: bool) -> None:
    assert gitignore_matches(gitignore, name) is ignored
