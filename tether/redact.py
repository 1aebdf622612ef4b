"""Server messages without row contents: what a sync may print about a failure.

PostgreSQL puts values in its errors: a constraint's DETAIL (``Key (email)=(jane@…) already exists``,
``Failing row contains (…)``), a COPY's CONTEXT (``COPY people, line 5, column email: "…"``), and some primary
messages (``invalid input syntax for type uuid: "…"``, ``value "…" is out of range``). A copy of production
must never print one, so every message from a server or client program goes through here: DETAIL, CONTEXT,
QUERY and LINE lines are dropped, and a quoted text is kept only where it names an object (a constraint, a
relation, a column, a type…).
"""

from __future__ import annotations

import re

import psycopg

_DROPPED_LINES = re.compile(r"^\s*(DETAIL|CONTEXT|QUERY|LINE \d+|HINT|STATEMENT|pg_restore: detail|"
                            r"pg_restore: (?:error: )?(?:COPY|Command was)|Command was)\b.*$|^\s*\^\s*$",
                            re.MULTILINE | re.IGNORECASE)
# A quoted text names an object when the word before it says what kind of object it is.
_NAMING_WORDS = ("constraint", "relation", "table", "column", "index", "type", "schema", "function", "database",
                 "role", "sequence", "view", "extension", "operator", "domain", "encoding", "trigger", "policy",
                 "parameter", "collation", "partition", "key", "server", "user", "tablespace", "publication",
                 "subscription", "statistics", "aggregate", "procedure", "rule", "language", "cast", "transform",
                 "conversion", "family", "class", "method", "wrapper", "mapping", "event", "object", "file")
_QUOTED = re.compile(r'(?P<before>\S*)(?P<space>\s*)"(?P<text>(?:[^"]|"")*)"')
_FAILING_ROW = re.compile(r"Failing row contains \(.*\)", re.S)
_KEY_VALUES = re.compile(r"\((?P<columns>[^()]*)\)=\((?P<values>.*?)\)(?= is | already |\.|$)")
REDACTED = "…"


def redact(text: str) -> str:
    """``text`` (one or many lines of server or pg_restore output) without anything that could be a value."""
    kept = _DROPPED_LINES.sub("", text)
    kept = _FAILING_ROW.sub(f"Failing row contains ({REDACTED})", kept)
    kept = _KEY_VALUES.sub(lambda match: f"({match['columns']})=({REDACTED})", kept)

    def quoted(match: re.Match[str]) -> str:
        before = match["before"].rstrip(":").lower()
        if before in _NAMING_WORDS:
            return match.group(0)
        return f'{match["before"]}{match["space"]}"{REDACTED}"'

    kept = _QUOTED.sub(quoted, kept)
    return "\n".join(line for line in kept.splitlines() if line.strip())


def server_error(error: psycopg.Error) -> str:
    """One line for a psycopg error: its SQLSTATE's primary message, redacted (never DETAIL or CONTEXT)."""
    primary = error.diag.message_primary if error.diag is not None else None
    text = primary or (str(error).splitlines()[0] if str(error) else type(error).__name__)
    return " ".join(redact(text).split()) or type(error).__name__
