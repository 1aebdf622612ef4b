"""Masking edge cases that mutation testing found unguarded (issue 21): each one a way a secret could leak."""

from __future__ import annotations

import pytest

from tether.secrets import MASK, mask_text, mask_url


@pytest.mark.parametrize(("url", "masked"), [
    # A '?' or '#' inside an unencoded password: the parser splits inside it, the rest lands in the query or
    # fragment. Only the greedy text rule masks all of it.
    ("postgresql://u:pa?ss@word@db.example/app", f"postgresql://u:{MASK}@db.example/app"),
    ("postgresql://u:pa#ss@db.example/app", f"postgresql://u:{MASK}@db.example/app"),
    ("postgresql://u:pa/ss@db.example/app", f"postgresql://u:{MASK}@db.example/app"),
    # An '@' in the user name: the password is what follows the user's first ':' and precedes the last '@'.
    ("postgresql://alice@corp:s3cret@db.example/app", f"postgresql://alice@corp:{MASK}@db.example/app"),
    # A ':' inside the password: the user name ends at the first one.
    ("postgresql://u:pa:ss@db.example/app", f"postgresql://u:{MASK}@db.example/app"),
    # Query parameters: masked by name; a value holding '=' is masked whole.
    ("postgresql://u@db/app?sslpassword=a=b&sslmode=require", f"postgresql://u@db/app?sslpassword={MASK}&sslmode=require"),
    ("postgresql://u@db/app", "postgresql://u@db/app"),
    ("postgresql://u@db/app?", "postgresql://u@db/app"),
], ids=["question-mark", "hash", "slash", "at-in-user", "colon-in-password", "equals-in-value", "no-query",
        "empty-query"])
def test_mask_url_never_leaks_a_piece_of_the_password(url, masked):
    assert mask_url(url) == masked


@pytest.mark.parametrize(("text", "masked"), [
    ("password=abca", f"password={MASK}"),  # starts and ends alike, but is not quoted
    ("password=XsecretX", f"password={MASK}"),
    ("password='", f"password={MASK}"),  # a lone quote is a value, not a pair of quotes
    ("password=''", f"password='{MASK}'"),  # an empty quoted value keeps its quotes
    ("password='s3cret'", f"password='{MASK}'"),
    ('"password": "s3cret"', f'"password": "{MASK}"'),
], ids=["same-ends", "letters", "lone-quote", "empty-quoted", "single-quoted", "json"])
def test_mask_text_keeps_quotes_only_around_quoted_values(text, masked):
    assert mask_text(text) == masked


def test_known_secrets_are_masked_in_every_encoded_form():
    secret = "pa/ss@wo rd"
    for form in ("pa/ss@wo rd", "pa%2Fss%40wo%20rd", "pa%2Fss%40wo+rd"):
        assert mask_text(f"value {form} end", [secret]) == f"value {MASK} end", form


@pytest.mark.parametrize("secrets", [["s3cr", "s3cr-extra"], ["zzzz", "aaaa-zzzz"], ["aaaa-zzzz", "zzzz"]])
def test_a_secret_containing_another_is_masked_whole(secrets):
    longer = max(secrets, key=len)
    assert mask_text(f"x {longer} y", secrets) == f"x {MASK} y"
