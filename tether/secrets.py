"""The one place that masks secrets in anything we print, and that makes new passwords."""

from __future__ import annotations

import re
import secrets as _secrets
import string
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

MASK = "********"

# Alphanumeric only: generated passwords must survive every URL, shell and YAML form untouched.
_PASSWORD_ALPHABET = string.ascii_letters + string.digits

# scheme://user:password@host ; the password ends at the last '@' before the host part.
_URL_PASSWORD = re.compile(r"(?P<prefix>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/?#@\s]*:)(?P<password>[^\s]*)(?P<at>@)")
_KEYWORD_PASSWORD = re.compile(
    r"(?P<key>\b(?:password|PGPASSWORD|requirepass)\s*[=:]\s*)(?P<value>'[^']*'|\"[^\"]*\"|\S+)", re.IGNORECASE
)


def generate_password(length: int = 32) -> str:
    """A random alphanumeric password from the system's CSPRNG."""
    return "".join(_secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))


def mask_url(url: str) -> str:
    """``url`` with its password replaced by a mask (like alembic's ``obfuscate_url_pw``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_text(url)
    if parts.password is None:
        return mask_text(url)
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostinfo}"))


def mask_text(text: str, known_secrets: Iterable[str | None] = ()) -> str:
    """``text`` with URL passwords, ``password=...`` pairs and every known secret masked."""
    masked = _URL_PASSWORD.sub(lambda m: f"{m['prefix']}{MASK}{m['at']}", text)
    masked = _KEYWORD_PASSWORD.sub(lambda m: f"{m['key']}{MASK}", masked)
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted((s for s in known_secrets if s), key=len, reverse=True):
        if len(secret) >= 4:
            masked = masked.replace(secret, MASK)
    return masked
