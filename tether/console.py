"""Talking to the person (or pipeline) at the other end: output, CI detection and confirmation."""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from typing import TYPE_CHECKING

from tether.errors import Refused

if TYPE_CHECKING:
    from rich.console import Console

_TRUTHY = {"1", "true", "yes", "on"}


def in_ci() -> bool:
    """True under CI (``CI=true``, as GitHub Actions, GitLab and most runners set it)."""
    return os.environ.get("CI", "").strip().lower() in _TRUTHY


def interactive() -> bool:
    """True only when a person can answer a prompt: a terminal on stdin and not in CI."""
    return not in_ci() and sys.stdin is not None and sys.stdin.isatty()


@lru_cache(maxsize=1)
def console() -> Console:
    """The shared rich console on stderr-free stdout; no colour codes when not on a terminal."""
    from rich.console import Console

    is_tty = sys.stdout.isatty()
    return Console(
        no_color=not is_tty or "NO_COLOR" in os.environ,
        highlight=False,
        soft_wrap=not is_tty,
        force_terminal=None if is_tty else False,
    )


def confirm(question: str, *, yes: bool = False, flag: str = "--yes") -> None:
    """Ask ``question``; return if the answer is yes, raise ``Refused`` otherwise.

    ``yes=True`` answers in advance. Under CI or without a terminal nothing is asked: the step is
    refused with a message naming ``flag``, so a pipeline never hangs on a prompt.
    """
    if yes:
        return
    if not interactive():
        reason = "CI=true is set" if in_ci() else "there is no terminal to ask on"
        raise Refused(f"Refused: {question} This needs a confirmation and {reason}. "
                      f"Run it again with {flag} if you mean it.")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in {"y", "yes"}:
        raise Refused(f"Stopped: you answered no to “{question}” Nothing was changed.")
