"""The one place that masks secrets in anything we print, and that makes new passwords."""

from __future__ import annotations

import re
import secrets as _secrets
import string
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

MASK = "********"

# Alphanumeric only: generated passwords must survive every URL, shell and YAML form untouched.
_PASSWORD_ALPHABET = string.ascii_letters + string.digits

# Known secrets shorter than this are not replaced everywhere: masking every "ab" would garble the text
# and, by showing where the mask fell, point at the secret.
MIN_KNOWN_SECRET_LENGTH = 4

# scheme://user:password@host ; greedy up to the last '@' of the word, because an unencoded '/', '#' or
# '@' inside the password is exactly the case where a URL parser gets the split wrong.
_URL_PASSWORD = re.compile(r"(?P<prefix>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/?#@\s]*:)(?P<password>[^\s]*)(?P<at>@)")

# Names whose value is a secret: anything ending in password/passwd (PGPASSWORD, sslpassword,
# TETHER_PROD_PASSWORD, db_password, --password), plus Redis's own spellings.
_SENSITIVE_NAMES = r"\w*?(?:password|passwd|requirepass|masterauth)|rediscli_auth"
# A quoted value: SQL doubles its quotes ('it''s'), conninfo and JSON escape with a backslash.
_QUOTED = r"'(?:''|\\.|[^'\\])*'|\"(?:\"\"|\\.|[^\"\\])*\""
# NAME = value, NAME: value, "NAME": "value" (JSON/YAML/env/conninfo/--flag=value).
_ASSIGNED = re.compile(
    rf"(?P<key>(?<![\w-])-{{0,2}}\b(?:{_SENSITIVE_NAMES})[\"']?\s*[=:]\s*)(?P<value>{_QUOTED}|\S+)", re.IGNORECASE
)
# NAME 'value': SQL (ALTER ROLE u PASSWORD 'x'); only a quoted value, so prose ("the password is
# not set") stays readable.
_SQL_LITERAL = re.compile(rf"(?P<key>\b(?:{_SENSITIVE_NAMES})\s+)(?P<value>{_QUOTED})", re.IGNORECASE)
# redis.conf and redis-server flags take a bare word: `requirepass s3cret`, `--masterauth s3cret`.
_REDIS_DIRECTIVE = re.compile(r"(?P<key>\b(?:requirepass|masterauth)\s+)(?P<value>\S+)", re.IGNORECASE)

# URL query parameters that carry a secret (masked by name, so the other parameters stay readable).
_SENSITIVE_QUERY_NAME = re.compile(rf"(?:{_SENSITIVE_NAMES})", re.IGNORECASE)


def generate_password(length: int = 32) -> str:
    """A random alphanumeric password from the system's CSPRNG."""
    return "".join(_secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))


def mask_url(url: str) -> str:
    """``url`` with its password (in the authority or the query) replaced by a mask, like alembic's
    ``obfuscate_url_pw``; IPv6 hosts keep their brackets, every other part is left as written."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_text(url)
    # An '@' after the authority means the password held an unencoded '/', '?' or '#' and the parser
    # split inside it: only the greedy text rule masks all of it.
    if "@" in parts.path or "@" in parts.query or "@" in parts.fragment:
        return mask_text(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hostinfo}"
    return urlunsplit(parts._replace(netloc=netloc, query=_mask_query(parts.query)))


def _mask_query(query: str) -> str:
    pairs = []
    for pair in query.split("&") if query else []:
        name, equals, _ = pair.partition("=")
        secret = equals and _SENSITIVE_QUERY_NAME.fullmatch(unquote(name))
        pairs.append(f"{name}={MASK}" if secret else pair)
    return "&".join(pairs)


def mask_text(text: str, known_secrets: Iterable[str | None] = ()) -> str:
    """``text`` with URL passwords, password settings and every known secret (also percent-encoded) masked.

    Settings are ``name=value`` / ``name: value`` for any name ending in password (PGPASSWORD,
    sslpassword, --password=...), REDISCLI_AUTH, SQL's ``PASSWORD 'value'`` and redis.conf's
    ``requirepass value``; a bare "password" in a sentence is left alone.
    """
    masked = _URL_PASSWORD.sub(lambda m: f"{m['prefix']}{MASK}{m['at']}", text)
    for pattern in (_ASSIGNED, _SQL_LITERAL, _REDIS_DIRECTIVE):
        masked = pattern.sub(_masked_value, masked)
    # Longest first, so a secret that contains another is masked whole.
    forms = {form for secret in known_secrets if secret and len(secret) >= MIN_KNOWN_SECRET_LENGTH
             for form in (secret, quote(secret, safe=""), quote_plus(secret, safe=""))}
    for form in sorted(forms, key=len, reverse=True):
        masked = masked.replace(form, MASK)
    return masked


def _masked_value(match: re.Match[str]) -> str:
    value = match["value"]
    quote_char = value[0] if value[0] in "'\"" and len(value) > 1 and value[-1] == value[0] else ""
    return f"{match['key']}{quote_char}{MASK}{quote_char}"
