"""The one place where domain errors become an exit: a masked one-paragraph message and a code."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from invoke.exceptions import Exit

from tether.errors import TetherError

# tether.secrets (its regexes, hmac, hashlib) is imported only when an error is shown, so every `invoke` command
# starts faster.

F = TypeVar("F", bound=Callable[..., Any])

_KIND_NAMES = {int: "a whole number", float: "a number"}


def _typed_flags_fail_clearly() -> None:
    """A typed flag given a bad value (``--jobs abc``) ends in one line and exit 1, never invoke's traceback.

    invoke casts a flag's value with the type of its default while parsing, before any task runs, and lets the
    ValueError escape as a traceback; it prints a ``ParseError`` as one line instead. Every task module imports
    this boundary, and invoke imports tasks.py before it parses task flags, so this covers every task.
    """
    from invoke.exceptions import ParseError
    from invoke.parser.argument import Argument

    if getattr(Argument.set_value, "_tether_clear_errors", False):
        return
    original = Argument.set_value

    def set_value(self: Argument, value: Any, cast: bool = True) -> None:
        try:
            original(self, value, cast)
        except (ValueError, TypeError):
            from tether.secrets import mask_text

            flag = f"--{self.name.replace('_', '-')}" if self.name else "this flag"
            wanted = _KIND_NAMES.get(self.kind, f"a value of type {getattr(self.kind, '__name__', self.kind)}")
            raise ParseError(f"{flag} takes {wanted}, not {mask_text(repr(value))}. See `invoke --help` for the "
                             "task's flags.") from None

    set_value._tether_clear_errors = True  # type: ignore[attr-defined]
    Argument.set_value = set_value  # type: ignore[method-assign]


_typed_flags_fail_clearly()


def domain_errors(func: F) -> F:
    """Turn ``TetherError`` (and Ctrl-C) into ``invoke.Exit`` with a masked message, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TetherError as error:
            from tether.secrets import mask_text

            raise Exit(mask_text(error.message), code=error.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("Interrupted.", code=130) from None

    return wrapper  # type: ignore[return-value]


def config_value(c: Any, section: str, key: str, flag: Any = None, default: Any = None) -> Any:
    """The flag's value, else ``<section>.<key>`` of invoke's config (invoke.yaml, INVOKE_* env), else ``default``.

    tasks.py declares every key (as None) so that invoke accepts INVOKE_<SECTION>_<KEY> variables for it.
    """
    if flag is not None:
        return flag
    values = c.config.get(section) or {}
    value = values.get(key) if hasattr(values, "get") else None
    return default if value is None or value == "" else value


def print_json(data: Any) -> None:
    """Machine-readable output for CI: one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
