"""What a subset sync selects, as the user wrote it: ``--subset`` specs, children, depth, seed, the whole-table size.

Pure parsing and validation: the same text gives the same ``SubsetSpec`` (and the same digest, which the sync
keeps so that a changed spec means a full rebuild). Reading the source happens in ``tether.sync.subset``.

Specs are ``schema.table:10%`` (a deterministic sample: a row is in when a hash of the seed and its key falls
below 10 %), ``schema.table:1000`` (the 1000 rows whose hash is smallest) or ``schema.table:where=<SQL>``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tether.errors import ConfigError

DEFAULT_SEED = "tether"
DEFAULT_DEPTH = 1
DEFAULT_WHOLE_BELOW = 1024 * 1024  # bytes: a table this small, neither root nor child, is copied whole
SAMPLE_SCALE = 1_000_000  # a percentage becomes a threshold out of this many hash buckets (0.0001 % steps)
MAX_DEPTH = 20
SECTION = "subset"
_SIZE_UNITS = {"": 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_ROWS = re.compile(r"^\s*(\d+)\s*$")
SPEC_HELP = ("A subset spec is schema.table:10% (a deterministic sample), schema.table:1000 (rows) or "
             "schema.table:where=<SQL condition>, for example app.profiles:where=created_at > now() - "
             "interval '90 days'.")


@dataclass(frozen=True)
class Root:
    """One spec: which table(s) and how their rows are chosen (``percent``, ``rows`` or ``where``)."""

    table: str  # a glob on schema.table (or the table name alone), or an exact quoted name
    kind: str
    value: float | int | str
    exact: bool = False  # the table was written with quotes: no wildcards apply

    def describe(self) -> str:
        if self.kind == "percent":
            return f"{self.table}:{self.value:g}%"
        if self.kind == "rows":
            return f"{self.table}:{self.value}"
        return f"{self.table}:where={self.value}"

    @property
    def threshold(self) -> int:
        """For a percentage: how many of the SAMPLE_SCALE hash buckets are in."""
        assert self.kind == "percent"
        return round(float(self.value) * SAMPLE_SCALE / 100)


@dataclass(frozen=True)
class SubsetSpec:
    """Roots, the tables whose referencing rows come along (children) and how deep, the seed and the size under
    which a table that is neither a root nor a child is copied whole."""

    roots: tuple[Root, ...]
    children: tuple[str, ...] = ()
    depth: int = DEFAULT_DEPTH
    seed: str = DEFAULT_SEED
    whole_below: int = DEFAULT_WHOLE_BELOW
    origin: str = "--subset"  # where it was read from, for messages

    def as_dict(self) -> dict[str, Any]:
        return {"roots": [root.describe() for root in self.roots], "children": list(self.children),
                "depth": self.depth, "seed": self.seed, "whole_below": self.whole_below}

    def digest(self) -> str:
        """What the selected rows depend on besides the source: a change means a full rebuild."""
        data = {key: value for key, value in self.as_dict().items()}
        data["roots"] = sorted(data["roots"])
        data["children"] = sorted(data["children"])
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def parse_root(text: str) -> Root:
    """``schema.table:10%``, ``schema.table:1000`` or ``schema.table:where=<condition>``; ValueError if not."""
    table, exact, rest = _split_table(text)
    if rest is None:
        raise ValueError(f"{text!r} has no ':' after the table")
    if rest.lstrip().lower().startswith("where="):
        condition = rest.lstrip()[len("where="):].strip()
        if not condition:
            raise ValueError(f"{text!r}: where= needs a condition")
        return Root(table, "where", condition, exact)
    percent = _PERCENT.match(rest)
    if percent:
        value = float(percent.group(1))
        if not 0 < value <= 100:
            raise ValueError(f"{text!r}: a percentage must be above 0 and at most 100")
        if round(value * SAMPLE_SCALE / 100) < 1:
            raise ValueError(f"{text!r}: the smallest sample is {100 / SAMPLE_SCALE:g}%")
        return Root(table, "percent", value, exact)
    rows = _ROWS.match(rest)
    if rows:
        count = int(rows.group(1))
        if count < 1:
            raise ValueError(f"{text!r}: the number of rows must be at least 1")
        return Root(table, "rows", count, exact)
    raise ValueError(f"{text!r}: after the table comes N% , a number of rows or where=<condition>, not {rest!r}")


def _split_table(text: str) -> tuple[str, bool, str | None]:
    """The table part (unquoted), whether it was quoted, and what follows the first ':' outside quotes."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("an empty spec")
    parts: list[str] = []
    current: list[str] = []
    quoted = exact = False
    index = 0
    while index < len(stripped):
        char = stripped[index]
        if quoted:
            if char == '"' and stripped[index + 1:index + 2] == '"':
                current.append('"')
                index += 1
            elif char == '"':
                quoted = False
            else:
                current.append(char)
        elif char == '"':
            quoted = exact = True
        elif char == ".":
            parts.append("".join(current))
            current = []
        elif char == ":":
            parts.append("".join(current))
            return _table_name(parts, text), exact, stripped[index + 1:]
        else:
            current.append(char)
        index += 1
    if quoted:
        raise ValueError(f"{text!r} has an unclosed double quote")
    parts.append("".join(current))
    return _table_name(parts, text), exact, None


def _table_name(parts: list[str], text: str) -> str:
    if len(parts) > 2 or not all(part.strip() for part in parts):
        raise ValueError(f"{text!r}: the table must be schema.table (or a glob such as app.*)")
    return ".".join(part.strip() for part in parts)


def parse_size(value: Any, what: str) -> int:
    """Bytes from an integer or a text like ``512kB``, ``1MB``, ``2 GB`` (units of 1024, as PostgreSQL's)."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a size such as 1MB or 512kB, not {value!r}.")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{what} must not be negative (got {value}).")
        return value
    match = _SIZE.match(str(value))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise ConfigError(f"{what} must be a size such as 1MB, 512kB or 0 (no table copied whole), not {value!r}.")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def _depth(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DEPTH:
        raise ConfigError(f"{what} must be a whole number from 0 to {MAX_DEPTH} (how many steps from a selected "
                          f"row to the rows that reference it), not {value!r}.")
    return value


def split_list(values: Iterable[str] | None) -> tuple[str, ...]:
    """Repeated flags, each possibly a comma-separated list."""
    return tuple(part.strip() for value in values or () for part in str(value).split(",") if part.strip())


def _roots(texts: Iterable[Any], origin: str) -> tuple[Root, ...]:
    roots: list[Root] = []
    problems: list[str] = []
    for item in texts:
        try:
            roots.append(_root_item(item))
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise ConfigError(f"{origin}: " + "; ".join(problems) + ". " + SPEC_HELP)
    return tuple(roots)


def _root_item(item: Any) -> Root:
    """A spec string, or a mapping ``{table: app.x, percent: 5 | rows: 1000 | where: "..."}`` (easier in YAML)."""
    if isinstance(item, str):
        return parse_root(item)
    if isinstance(item, Mapping) and "table" in item and len(item) == 2:
        (kind, value), = ((key, value) for key, value in item.items() if key != "table")
        table = str(item["table"])
        if kind == "percent" and isinstance(value, int | float) and not isinstance(value, bool):
            return parse_root(f"{table}:{value}%")
        if kind == "rows" and isinstance(value, int) and not isinstance(value, bool):
            return parse_root(f"{table}:{value}")
        if kind == "where" and isinstance(value, str):
            return parse_root(f"{table}:where={value}")
    raise ValueError(f"{item!r} is neither a spec string nor {{table: schema.table, percent|rows|where: ...}}")


@dataclass(frozen=True)
class SubsetFlags:
    """What the command line and the configuration said (None: not given, so the rules file or the default
    decides)."""

    specs: tuple[str, ...] = ()
    children: tuple[str, ...] | None = None
    depth: int | None = None
    seed: str | None = None
    whole_below: Any = None  # config sync.subset_whole_below
    off: bool = False  # --no-subset: ignore the rules file's section


@dataclass(frozen=True)
class _Section:
    spec: SubsetSpec
    whole_below_given: bool


def spec_from_section(data: Any, origin: str) -> SubsetSpec | None:
    """The ``subset:`` section of a rules file (None when it has none)."""
    section = _section(data, origin)
    return section.spec if section else None


def _section(data: Any, origin: str) -> _Section | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: `subset` must be a mapping with `roots` (a list of specs) and optionally "
                          "`children`, `depth`, `seed` and `whole_below`. " + SPEC_HELP)
    unknown = sorted(set(map(str, data)) - {"roots", "children", "depth", "seed", "whole_below"})
    if unknown:
        raise ConfigError(f"{origin}: unknown key(s) {', '.join(unknown)} under `subset`; the keys are "
                          "roots, children, depth, seed and whole_below.")
    roots = data.get("roots")
    if isinstance(roots, str | Mapping):
        roots = [roots]
    if not isinstance(roots, list) or not roots:
        raise ConfigError(f"{origin}: `subset.roots` must list at least one spec. " + SPEC_HELP)
    children = data.get("children") or []
    if isinstance(children, str):
        children = [children]
    if not isinstance(children, list) or not all(isinstance(child, str) for child in children):
        raise ConfigError(f"{origin}: `subset.children` must be a list of table globs (app.resources, app.*).")
    seed = data.get("seed", DEFAULT_SEED)
    if not isinstance(seed, str | int) or isinstance(seed, bool) or not str(seed):
        raise ConfigError(f"{origin}: `subset.seed` must be a non-empty text or number, not {seed!r}.")
    given = "whole_below" in data
    whole_below = (parse_size(data["whole_below"], f"{origin}: `subset.whole_below`") if given
                   else DEFAULT_WHOLE_BELOW)
    spec = SubsetSpec(_roots(roots, f"{origin} (subset.roots)"), split_list(children),
                      _depth(data.get("depth", DEFAULT_DEPTH), f"{origin}: `subset.depth`"), str(seed),
                      whole_below, origin)
    return _Section(spec, given)


def _read_section(path: Path | None) -> _Section | None:
    import yaml

    if path is None or not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"The rules file {path} is not valid YAML: {error}") from None
    if not isinstance(data, Mapping):
        return None
    return _section(data.get(SECTION), str(path))


def read_section(path: Path | None) -> SubsetSpec | None:
    """The ``subset:`` section of the rules file at ``path``, if the file exists and has one."""
    section = _read_section(path)
    return section.spec if section else None


def resolve_spec(flags: SubsetFlags, rules_path: Path | None) -> SubsetSpec | None:
    """The subset this sync makes: the command line's specs, else the rules file's section, else none.

    The command line's children, depth and seed override the file's; ``whole_below`` comes from the file, else
    from the configuration (sync.subset_whole_below), else 1 MB.
    """
    if flags.off:
        if flags.specs:
            raise ConfigError("--no-subset and --subset contradict each other: give one of them.")
        return None
    section = _read_section(rules_path)
    if flags.specs:
        spec = SubsetSpec(_roots(split_specs(flags.specs), "--subset"), origin="--subset")
        if section is not None:  # the team's other choices still apply
            spec = replace(spec, children=section.spec.children, depth=section.spec.depth, seed=section.spec.seed,
                           whole_below=section.spec.whole_below)
    elif section is not None:
        spec = section.spec
    else:
        given = [name for name, value in (("--subset-children", flags.children), ("--subset-depth", flags.depth),
                                          ("--subset-seed", flags.seed)) if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} only mean something with a subset: add --subset "
                              "schema.table:10% (or a `subset:` section in the rules file). " + SPEC_HELP)
        return None
    if flags.children is not None:
        spec = replace(spec, children=flags.children)
    if flags.depth is not None:
        spec = replace(spec, depth=_depth(flags.depth, "--subset-depth"))
    if flags.seed is not None:
        if not flags.seed.strip():
            raise ConfigError("--subset-seed must not be empty.")
        spec = replace(spec, seed=flags.seed)
    if flags.whole_below is not None and not (section and section.whole_below_given):
        spec = replace(spec, whole_below=parse_size(flags.whole_below, "sync.subset_whole_below"))
    return spec


def split_specs(values: Iterable[str]) -> tuple[str, ...]:
    """``--subset`` values, one spec each (not split on commas: a where= condition may hold one)."""
    return tuple(value.strip() for value in values if value and value.strip())
