"""Masking secrets in printed text and URLs: what must disappear, and the prose that must stay readable."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tether.conninfo import DatabaseAddress
from tether.redis_client import RedisAddress
from tether.secrets import MASK, generate_password, mask_text, mask_url

# (text, known secrets, substrings that must vanish, substrings that must survive)
MASK_TEXT_CASES = [
    ("postgresql://app:" + quote("p@ss:w/rd%#?& x", safe="") + "@db.example.com:5432/app", (),
     [quote("p@ss:w/rd%#?& x", safe="")], ["postgresql://app:", "@db.example.com:5432/app"]),
    ("postgresql://app:p@ss@db:5432/app", (), ["p@ss"], ["@db:5432/app"]),
    ("postgresql://app:top/secret@db:5432/app", (), ["top", "secret"], ["@db:5432/app"]),
    ("see redis://:hunter2hunter2@[::1]:6379/0 now", (), ["hunter2"], ["[::1]:6379/0", "see ", " now"]),
    ("postgresql+asyncpg://u%40x:pw%3A1@h/db", (), ["pw%3A1"], ["u%40x:", "@h/db"]),
    ("host=db user=app password=s3cr3t dbname=app", (), ["s3cr3t"], ["host=db", "dbname=app"]),
    ("host=db password='with space' dbname=app", (), ["with space"], ["dbname=app"]),
    ("PGPASSWORD=abc123 pg_dump app", (), ["abc123"], ["pg_dump app"]),
    ("export TETHER_PROD_PASSWORD=zzz999", (), ["zzz999"], ["TETHER_PROD_PASSWORD="]),
    ("REDISCLI_AUTH=r3dis redis-cli ping", (), ["r3dis"], ["redis-cli ping"]),
    ("sslpassword=keyphrase sslmode=verify-full", (), ["keyphrase"], ["sslmode=verify-full"]),
    ("pg_dump --password=flagpw app", (), ["flagpw"], ["pg_dump --password=", " app"]),
    ("ALTER ROLE app PASSWORD 'sql''pw'", (), ["sql", "pw'"], ["ALTER ROLE app PASSWORD '"]),
    ("CREATE ROLE a LOGIN ENCRYPTED password 'lower'", (), ["lower"], ["LOGIN ENCRYPTED password"]),
    ("requirepass r3quire\nmaxmemory 1gb", (), ["r3quire"], ["requirepass ", "maxmemory 1gb"]),
    ("CONFIG SET masterauth m4ster", (), ["m4ster"], ["CONFIG SET masterauth"]),
    ('{"password": "json pw", "user": "app"}', (), ["json pw"], ['"user": "app"']),
    ("db_password: yamlpw", (), ["yamlpw"], ["db_password: "]),
    ("FATAL: login failed, token Zq9xKp3mLw", ["Zq9xKp3mLw"], ["Zq9xKp3mLw"], ["FATAL: login failed, token "]),
    ("url had p%40ss%2Fw0rd in it", ["p@ss/w0rd"], ["p%40ss%2Fw0rd"], ["url had ", " in it"]),
    ("abcdef and abcdefgh", ["abcd", "abcdefgh"], ["abcd"], [" and "]),
    ("the code is 123 and 1234", ["123"], [], ["the code is 123 and"]),
    ("the password is not set; ask for a password first", (), [], ["the password is not set; ask for a password"]),
    ("Enter the passwords: 3 were rotated", (), [], ["passwords: 3 were rotated"]),
    ("psql --password mydb", (), [], ["psql --password mydb"]),
    ("connect to postgresql://app@db:5432/app", (), [], ["postgresql://app@db:5432/app"]),
]
MASK_TEXT_IDS = [
    "url-percent-encoded-specials", "url-raw-at", "url-raw-slash", "redis-url-ipv6", "driver-scheme-encoded",
    "conninfo-keyword", "conninfo-quoted", "pgpassword-env", "tether-env", "rediscli-auth", "sslpassword",
    "password-flag", "sql-doubled-quote", "sql-lowercase", "redis-conf", "redis-config-set", "json", "yaml",
    "known-10-chars", "known-percent-encoded", "known-nested-longest-first", "known-too-short",
    "prose-password", "prose-plural", "psql-prompt-flag", "url-without-password",
]


@pytest.mark.parametrize(("text", "known", "gone", "kept"), MASK_TEXT_CASES, ids=MASK_TEXT_IDS)
def test_mask_text(text, known, gone, kept):
    masked = mask_text(text, known)
    for secret in gone:
        assert secret not in masked
    for part in kept:
        assert part in masked
    assert (MASK in masked) == bool(gone)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app:s3cret@db:5432/app", f"postgresql://app:{MASK}@db:5432/app"),
        ("postgresql://app:p%40ss%2F%3A@[::1]:5432/app", f"postgresql://app:{MASK}@[::1]:5432/app"),
        ("postgresql://app@db:5432/app?password=q%26p&sslmode=require",
         f"postgresql://app@db:5432/app?password={MASK}&sslmode=require"),
        ("postgresql://app:x@db/app?sslpassword=k&application_name=a+b",
         f"postgresql://app:{MASK}@db/app?sslpassword={MASK}&application_name=a+b"),
        ("redis://:r3dis@localhost:6379/1", f"redis://:{MASK}@localhost:6379/1"),
        ("postgresql://app:top/secret@db:5432/app", f"postgresql://app:{MASK}@db:5432/app"),
        ("postgresql://app@db:5432/app", "postgresql://app@db:5432/app"),
        ("postgresql://app:pw@[::1", f"postgresql://app:{MASK}@[::1"),
    ],
    ids=["plain", "encoded-ipv6", "query-password", "query-sslpassword", "redis-empty-user", "raw-slash",
         "no-password", "unparseable"],
)
def test_mask_url(url, expected):
    assert mask_url(url) == expected


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (RedisAddress("::1", 6379, "p@ss/w:rd", 2), f"redis://default:{MASK}@[::1]:6379/2"),
        (RedisAddress("127.0.0.1", 6380), "redis://127.0.0.1:6380/0"),
        (DatabaseAddress("fd00::5", 5432, "app", "u:x", "p@ss"), f"postgresql://u%3Ax:{MASK}@[fd00::5]:5432/app"),
    ],
    ids=["redis-ipv6-password", "redis-no-password", "postgres-ipv6"],
)
def test_masked_urls_of_addresses(address, expected):
    assert address.masked_url() == expected
    assert expected in repr(address)


def test_generated_passwords_are_long_alphanumeric_and_different():
    passwords = {generate_password() for _ in range(50)}
    assert len(passwords) == 50
    assert all(len(p) == 32 and p.isalnum() and p.isascii() for p in passwords)
    assert mask_text(f"password={generate_password(8)}") == f"password={MASK}"
