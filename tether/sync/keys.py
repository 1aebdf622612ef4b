"""The secret that keys pseudonyms: kept on the source, never on this machine and never in a logged statement.

Deterministic pseudonyms (so that joins still match) are HMAC-SHA256 of the value under a secret key. Whoever
holds the key can test guesses (every French mobile number, a dictionary of e-mails) against the copy, so the
key must not reach the destination machine. Two ways, decided per sync:

- ``server``: the source has the ``tether_anon`` schema (``sql/0010_anonymization_key.sql``): a key in a table
  readable only by its owner, and a SECURITY DEFINER function ``tether_anon.pseudonym(text)`` that the sync
  role may execute but whose key it cannot select. Pseudonyms are stable across syncs; the key never leaves
  the server. Its id (a hash of the key, useless for computing pseudonyms) tells syncs when it changed.
- ``per-sync``: a source without that schema (a production database we did not write). A random key is made
  for this sync only, held in memory, and given to the source sessions as custom settings in their startup
  packet (``-c tether.anonymize_ipad=...``), which no ``log_statement`` setting logs, unlike a bind
  parameter. It is never stored, so pseudonyms are stable within one sync only: when a table holding them
  changed, a re-sync copies every such table again instead of mixing two keys.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from tether.conninfo import DatabaseAddress
from tether.sync.snapshot import connect_source, join_snapshot

KEY_SCHEMA = "tether_anon"
KEY_TABLE = "key"
PSEUDONYM_FUNCTION = ("tether_anon", "pseudonym")  # (text) -> bytea: HMAC-SHA256 under the server's key
KEY_ID_FUNCTION = ("tether_anon", "key_id")  # () -> text
IPAD_SETTING, OPAD_SETTING = "tether.anonymize_ipad", "tether.anonymize_opad"
SERVER, PER_SYNC = "server", "per-sync"


@dataclass(frozen=True)
class PseudonymKey:
    """Where the key lives and how SQL on the source reaches it (never the key itself for ``server``)."""

    mode: str  # SERVER or PER_SYNC
    identity: str  # the server key's id; "per-sync" otherwise (the digest of a sync's options must not vary)
    session_settings: Mapping[str, str] = field(default_factory=dict, repr=False)  # per-sync: the HMAC pads

    @property
    def stable(self) -> bool:
        """True when the same value gets the same pseudonym on every sync."""
        return self.mode == SERVER

    def prf(self, text: sql.Composable) -> sql.Composable:
        """SQL: the 32-byte HMAC-SHA256 of the text expression ``text`` under this key."""
        if self.mode == SERVER:
            return sql.SQL("{}({})").format(sql.Identifier(*PSEUDONYM_FUNCTION), text)
        return sql.SQL("sha256(decode(current_setting({}), 'hex') || sha256(decode(current_setting({}), 'hex') "
                       "|| convert_to({}, 'UTF8')))").format(sql.Literal(OPAD_SETTING), sql.Literal(IPAD_SETTING),
                                                             text)

    def describe(self) -> str:
        if self.mode == SERVER:
            return ("keyed by the source's secret (tether_anon): the same value gets the same pseudonym on every "
                    "sync; the key never left the source")
        return ("keyed by a secret made for this sync only and never stored (the source has no tether_anon "
                "schema): pseudonyms are stable within this sync only")


def per_sync_key() -> PseudonymKey:
    """A fresh random key, as the two HMAC pads the SQL needs (hex), never written anywhere."""
    key = secrets.token_bytes(64)  # HMAC-SHA256's block size: used as is, no hashing of a longer key
    ipad = bytes(byte ^ 0x36 for byte in key).hex()
    opad = bytes(byte ^ 0x5C for byte in key).hex()
    return PseudonymKey(PER_SYNC, PER_SYNC, {IPAD_SETTING: ipad, OPAD_SETTING: opad})


def detect_key(conn: psycopg.Connection) -> PseudonymKey:
    """The server's key when the source has it and this role may use it; else a key for this sync only."""
    row = conn.execute(
        "SELECT to_regprocedure(%s) IS NOT NULL AND has_function_privilege(%s, 'EXECUTE') "
        "AND to_regprocedure(%s) IS NOT NULL AND has_function_privilege(%s, 'EXECUTE')",
        (_signature(PSEUDONYM_FUNCTION, "text"), _signature(PSEUDONYM_FUNCTION, "text"),
         _signature(KEY_ID_FUNCTION, ""), _signature(KEY_ID_FUNCTION, ""))).fetchone()
    if row and row[0]:
        identity = conn.execute(sql.SQL("SELECT {}()").format(sql.Identifier(*KEY_ID_FUNCTION))).fetchone()
        if identity and identity[0]:
            return PseudonymKey(SERVER, f"server:{identity[0]}")
    return per_sync_key()


def _signature(name: tuple[str, str], arguments: str) -> str:
    return f"{name[0]}.{name[1]}({arguments})"


def is_key_table(schema: str, table: str) -> bool:
    """The key's table: never copied, never dumped (the sync role may not even read it)."""
    return (schema, table) == (KEY_SCHEMA, KEY_TABLE)


@contextmanager
def keyed_session(source: DatabaseAddress, snapshot_id: str, key: PseudonymKey) -> Iterator[psycopg.Connection]:
    """A source session in the sync's snapshot that can compute this key's pseudonyms."""
    conn = connect_source(source, key.session_settings)
    try:
        join_snapshot(conn, snapshot_id)
        yield conn
    finally:
        conn.close()
