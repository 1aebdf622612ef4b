"""Domain errors: each carries a one-paragraph message that says what went wrong and what to do."""

from __future__ import annotations

from collections.abc import Sequence


class TetherError(Exception):
    """An error the user can act on; the task layer prints its message and exits non-zero."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ToolMissing(TetherError):
    """A program the operation needs is not installed."""

    exit_code = 127

    def __init__(self, tool: str, install_hint: str) -> None:
        super().__init__(f"`{tool}` is not installed: {install_hint}")
        self.tool = tool


class CommandFailed(TetherError):
    """A subprocess exited non-zero; the message carries its exit code and the tail of its stderr."""

    def __init__(self, what: str, returncode: int, stderr: str, hint: str = "") -> None:
        tail = tail_lines(stderr, 12)
        message = f"{what} failed with exit code {returncode}."
        if tail:
            message += f" Its last output was:\n{tail}"
        if hint:
            message += f"\n{hint}"
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


class Refused(TetherError):
    """The user (or CI's lack of ``--yes``) declined a step that writes somewhere other than local."""

    exit_code = 3


class ConfigError(TetherError):
    """A configuration value or file is missing or malformed."""

    exit_code = 2


def tail_lines(text: str | bytes | None, count: int) -> str:
    """The last ``count`` non-empty lines of ``text``, for error messages."""
    if not text:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines: Sequence[str] = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-count:])
