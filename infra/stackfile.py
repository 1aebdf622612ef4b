"""Reading a Pulumi stack file (``Pulumi.<stack>.yaml``) without Pulumi: its ``config:`` mapping, validated.

Pure and Pulumi-free, shared by ``infra/dev/settings.py`` and ``infra/prod/settings.py`` so that the
invoke tasks read the same values `pulumi up` does, with one set of error messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_config(path: Path, project: str) -> dict[Any, Any]:
    """The raw ``config:`` mapping of a stack file (empty when there is none).

    A file that is not YAML, or not shaped like a stack file, is a ``ValueError`` naming the file.
    """
    import yaml

    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ValueError(f"{path} cannot be read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML ({yaml_problem(error)})") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ValueError(f"{path} must be a YAML mapping with a `config:` section, but it holds "
                         f"{yaml_kind(document)}")
    config = document.get("config")
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: `config:` must be a mapping of `{project}:<key>: <value>` lines, but it "
                         f"holds {yaml_kind(config)}")
    return config


def with_fix_hint(path: Path, error: ValueError, documented_in: str) -> ValueError:
    """``error`` as one message that names the file and says where every key is documented."""
    problem = str(error).rstrip(".")
    where = "" if problem.startswith(str(path)) else f"{path}: "
    return ValueError(f"{where}{problem}. Fix it ({documented_in} documents every key and its default) and run "
                      "the command again.")


def yaml_problem(error: Exception) -> str:
    """``line 3, column 9: expected ...``: where the YAML parser gave up and why, on one line."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or " ".join(str(error).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def yaml_kind(value: object) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), type(value).__name__)
