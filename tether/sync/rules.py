"""The anonymization rules file: reading it, and checking each rule's shape (not yet against the source).

``{tables: {schema.table: {column: rule}}, locale: fr, quasi_identifiers: {schema.table: [columns]}}``.
A rule is a name (``fake_email``), YAML null (the ``null`` rule) or ``{name: options}``; ``json`` and ``each``
hold rules of their own. See anonymize.yaml and docs/anonymization.md for every kind.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.errors import ConfigError
from tether.paths import project_root
from tether.sync.fakes import DEFAULT_LOCALE, LOCALES

RULES_ENV = "TETHER_ANONYMIZE_RULES"
RULES_FILE = "anonymize.yaml"

RULE_KINDS = (
    "keep", "null", "fixed", "mask", "hash", "fake_email", "fake_name", "fake_first_name", "fake_last_name",
    "fake_city", "fake_postcode", "fake_address", "fake_phone", "fake_iban", "random_date", "random_int",
    "random_number", "shift_date", "generalize", "noise", "inet", "json", "each", "scrub", "same_as",
)
POOL_KINDS = frozenset({"fake_name", "fake_first_name", "fake_last_name", "fake_city", "fake_postcode",
                        "fake_address"})
SCRUB_KINDS = ("email", "phone", "iban", "card", "nir", "ip")
GENERALIZATIONS = ("year", "month", "departement")
DEFAULT_MASK: dict[str, Any] = {"keep_first": 1, "keep_last": 2, "char": "*"}
_TOP_KEYS = {"tables", "locale", "quasi_identifiers", "large_objects", "subset"}  # subset: see tether.sync.subset


@dataclass(frozen=True)
class Rule:
    kind: str
    options: tuple[tuple[str, Any], ...] = ()

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def describe(self) -> str:
        if not self.options:
            return self.kind
        return f"{self.kind} {json.dumps(_plain(dict(self.options)), default=str, sort_keys=True)}"


def _plain(value: Any) -> Any:
    """Options as JSON-able data (nested rules as their description)."""
    if isinstance(value, Rule):
        return value.describe()
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


@dataclass(frozen=True)
class QuasiIdentifiers:
    """Columns that together could single a person out; the report gives their smallest group."""

    table: str
    columns: tuple[str, ...]
    min_group: int | None = None  # when given, a smaller group stops the sync


@dataclass(frozen=True)
class RuleSet:
    """Rules per table (``schema.table``) and column, as read from ``origin``."""

    origin: str
    tables: Mapping[str, Mapping[str, Rule]]
    locale: str = DEFAULT_LOCALE
    quasi_identifiers: tuple[QuasiIdentifiers, ...] = ()
    # `large_objects: keep | drop`: whether the source's large objects (opaque bytes no column rule can see into)
    # are copied. None: the file does not say, and a source with large objects stops an anonymized sync.
    large_objects: str | None = None

    def digest(self) -> str:
        """A fingerprint of the rules: a sync made with other rules is not reused incrementally."""
        canonical = {"tables": {table: {column: _plain([rule.kind, dict(rule.options)])
                                        for column, rule in sorted(columns.items())}
                                for table, columns in sorted(self.tables.items())},
                     "locale": self.locale, "large_objects": self.large_objects}
        return hashlib.sha256(json.dumps(canonical, default=str, sort_keys=True).encode()).hexdigest()


NO_RULES = RuleSet("(anonymization off)", {})


def anonymizes_nothing(rules: RuleSet) -> bool:
    """True when no rule changes anything: an empty file, ``tables: {}``, or only ``keep``."""
    return all(rule.kind == "keep" for columns in rules.tables.values() for rule in columns.values())


def default_rules_path() -> Path:
    """``TETHER_ANONYMIZE_RULES``, else ``anonymize.yaml`` at the project root."""
    override = os.environ.get(RULES_ENV)
    return Path(override) if override else project_root() / RULES_FILE


def load_rules(path: Path) -> RuleSet:
    """Read and check a rules file; a missing or malformed file is a ConfigError naming it."""
    import yaml

    if path.is_dir():
        raise ConfigError(f"The anonymization rules path {path} is a directory, not a file. Point --rules or "
                          f"{RULES_ENV} at the YAML file itself (for instance {path / RULES_FILE}).")
    if not path.is_file():
        raise ConfigError(f"There is no anonymization rules file at {path}. sync-prod anonymizes by default: "
                          f"create it (see anonymize.yaml at the repository root for the format), point "
                          f"--rules or {RULES_ENV} at yours, or pass --no-anonymize to copy real personal data.")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"The anonymization rules file {path} is not valid YAML: {error}") from None
    return parse_rules(data, str(path))


def parse_rules(data: Any, origin: str) -> RuleSet:
    """Rules from the parsed YAML document."""
    if data is None:
        data = {}
    if not isinstance(data, dict) or not set(data) <= _TOP_KEYS:
        raise ConfigError(f"{origin}: the rules file must be a mapping with the keys `tables` "
                          "(tables: {schema.table: {column: rule}}), and optionally `locale`, `quasi_identifiers` "
                          "and `large_objects` (keep or drop).")
    large_objects = data.get("large_objects")
    if large_objects not in (None, "keep", "drop"):
        raise ConfigError(f"{origin}: `large_objects` must be `keep` (copy them as they are: you reviewed them) or "
                          f"`drop` (leave them out), not {large_objects!r}.")
    tables = data.get("tables") or {}
    if not isinstance(tables, dict):
        raise ConfigError(f"{origin}: `tables` must map `schema.table` to its columns' rules.")
    locale = data.get("locale") or DEFAULT_LOCALE
    problems: list[str] = []
    if locale not in LOCALES:
        problems.append(f"locale must be one of {', '.join(LOCALES)}, not {locale!r}")
    parsed: dict[str, dict[str, Rule]] = {}
    for table, columns in tables.items():
        if not isinstance(table, str) or table.count(".") != 1:
            problems.append(f"{table!r} is not `schema.table`")
            continue
        if not isinstance(columns, dict) or not columns:
            problems.append(f"{table}: expected a mapping of columns to rules")
            continue
        parsed[table] = {}
        for column, spec in columns.items():
            try:
                parsed[table][str(column)] = parse_rule(spec)
            except ValueError as error:
                problems.append(f"{table}.{column}: {error}")
    quasi = _quasi_identifiers(data.get("quasi_identifiers"), problems)
    if problems:
        raise ConfigError(f"{origin} has invalid anonymization rules: " + "; ".join(problems) + ". Rules are "
                          f"one of {', '.join(RULE_KINDS)}; see anonymize.yaml and docs/anonymization.md.")
    return RuleSet(origin, parsed, locale, quasi, large_objects)


def _quasi_identifiers(data: Any, problems: list[str]) -> tuple[QuasiIdentifiers, ...]:
    if data is None:
        return ()
    if not isinstance(data, dict):
        problems.append("quasi_identifiers must map `schema.table` to a list of columns")
        return ()
    found = []
    for table, spec in data.items():
        min_group = None
        if isinstance(spec, dict):
            min_group, spec = spec.get("min_group"), spec.get("columns")
            if min_group is not None and (not isinstance(min_group, int) or isinstance(min_group, bool)
                                          or min_group < 2):
                problems.append(f"quasi_identifiers {table}: min_group must be a whole number of 2 or more")
                continue
        if (not isinstance(table, str) or table.count(".") != 1 or not isinstance(spec, list) or not spec
                or not all(isinstance(column, str) for column in spec)):
            problems.append(f"quasi_identifiers {table!r}: expected `schema.table: [column, ...]` or "
                            "`{columns: [...], min_group: N}`")
            continue
        found.append(QuasiIdentifiers(table, tuple(spec), min_group))
    return tuple(found)


def parse_rule(spec: Any) -> Rule:
    """One rule: a name (``fake_email``), YAML null (the ``null`` rule) or ``{name: options}``."""
    if spec is None:
        return Rule("null")
    if isinstance(spec, str):
        name, value, bare = spec, None, True
    elif isinstance(spec, dict) and len(spec) == 1:
        (name, value), bare = next(iter(spec.items())), False
    else:
        raise ValueError(f"{spec!r} is not a rule name or a one-key mapping {{rule: options}}")
    if name not in RULE_KINDS:
        raise ValueError(f"unknown rule {name!r}")
    parser = _PARSERS.get(name)
    if parser is None:
        if value not in (None, {}):
            raise ValueError(f"{name} takes no options")
        return Rule(name)
    options = parser(value, bare)
    return Rule(name, tuple(sorted(options.items())))


def _options(value: Any, name: str, allowed: set[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{name} takes options {{{', '.join(sorted(allowed))}}}")
    unknown = set(value) - allowed
    if unknown:
        raise ValueError(f"{name} options are {', '.join(sorted(allowed))}, not {', '.join(sorted(map(str, unknown)))}")
    return dict(value)


def _boolean(options: dict[str, Any], key: str, name: str) -> None:
    if key in options and not isinstance(options[key], bool):
        raise ValueError(f"{name} {key} must be true or false")


def _fixed(value: Any, bare: bool) -> dict[str, Any]:
    if bare:
        raise ValueError("`fixed` needs a value: {fixed: VALUE}")
    return {"value": value}


def _hash(value: Any, bare: bool) -> dict[str, Any]:
    options = _options(value if isinstance(value, dict) else ({"length": value} if value is not None else None),
                       "hash", {"length", "case_insensitive"})
    length = options.get("length")
    if length is not None and (not isinstance(length, int) or isinstance(length, bool) or not 8 <= length <= 64):
        raise ValueError("hash length must be an integer from 8 to 64")
    _boolean(options, "case_insensitive", "hash")
    return options


def _fake_email(value: Any, bare: bool) -> dict[str, Any]:
    options = _options(value, "fake_email", {"domain", "case_sensitive"})
    domain = options.get("domain")
    if domain is not None and (not isinstance(domain, str) or "@" in domain or "." not in domain
                               or not domain.replace(".", "").replace("-", "").isalnum()):
        raise ValueError("fake_email domain must be a domain name such as example.com")
    _boolean(options, "case_sensitive", "fake_email")
    return options


def _pool(name: str) -> Any:
    def parse(value: Any, bare: bool) -> dict[str, Any]:
        options = _options(value, name, {"locale", "consistent"})
        if "locale" in options and options["locale"] not in LOCALES:
            raise ValueError(f"{name} locale must be one of {', '.join(LOCALES)}")
        _boolean(options, "consistent", name)
        return options
    return parse


def _consistent_only(name: str) -> Any:
    def parse(value: Any, bare: bool) -> dict[str, Any]:
        options = _options(value, name, {"consistent"})
        _boolean(options, "consistent", name)
        return options
    return parse


def _mask(value: Any, bare: bool) -> dict[str, Any]:
    settings: dict[str, Any] = dict(DEFAULT_MASK)
    if isinstance(value, dict):
        unknown = set(value) - set(DEFAULT_MASK)
        if unknown:
            raise ValueError(f"mask options are keep_first, keep_last and char, not {sorted(unknown)}")
        settings.update(value)
    elif value not in (None, "partial"):
        raise ValueError("mask takes `partial` or {keep_first: N, keep_last: N, char: '*'}")
    if not all(isinstance(settings[key], int) and not isinstance(settings[key], bool) and settings[key] >= 0
               for key in ("keep_first", "keep_last")):
        raise ValueError("mask keep_first and keep_last must be integers of 0 or more")
    if not isinstance(settings["char"], str) or len(settings["char"]) != 1:
        raise ValueError("mask char must be one character")
    return settings


def _range(name: str) -> Any:
    def parse(value: Any, bare: bool) -> dict[str, Any]:
        keys = ("from", "to") if name == "random_date" else ("min", "max")
        if isinstance(value, dict) and set(value) - {"decimals"} == set(keys):
            low, high = value[keys[0]], value[keys[1]]
        elif isinstance(value, list | tuple) and len(value) == 2:
            low, high = value
        else:
            raise ValueError(f"{name} needs a range: {{{keys[0]}: ..., {keys[1]}: ...}} or [low, high]")
        if name == "random_date":
            low, high = _date(low), _date(high)
        elif not all(isinstance(bound, int | float) and not isinstance(bound, bool) for bound in (low, high)):
            raise ValueError(f"{name} bounds must be numbers")
        if name == "random_int" and not all(isinstance(bound, int) for bound in (low, high)):
            raise ValueError("random_int bounds must be integers")
        if low > high:
            raise ValueError(f"{name} range is empty ({low} > {high})")
        options: dict[str, Any] = dict(zip(keys, (low, high), strict=True))
        if name == "random_number":
            decimals = value.get("decimals", 2) if isinstance(value, dict) else 2
            if not isinstance(decimals, int) or not 0 <= decimals <= 10:
                raise ValueError("random_number decimals must be an integer from 0 to 10")
            options["decimals"] = decimals
        return options
    return parse


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _shift_date(value: Any, bare: bool) -> dict[str, Any]:
    days = value.get("days") if isinstance(value, dict) and set(value) == {"days"} else value
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 36500:
        raise ValueError("shift_date needs a number of days: {shift_date: {days: 30}} (1 to 36500)")
    return {"days": days}


def _generalize(value: Any, bare: bool) -> dict[str, Any]:
    if value in GENERALIZATIONS:
        return {"to": value}
    if isinstance(value, dict) and set(value) == {"step"}:
        step = value["step"]
        if isinstance(step, int | float) and not isinstance(step, bool) and step > 0:
            return {"step": step}
    raise ValueError("generalize takes year, month, departement or {step: N} (numbers down to a multiple of N)")


def _noise(value: Any, bare: bool) -> dict[str, Any]:
    if isinstance(value, dict) and len(value) == 1:
        (key, amount), = value.items()
        number = isinstance(amount, int | float) and not isinstance(amount, bool)
        if key in ("relative", "absolute") and number and amount > 0 and (key == "absolute" or amount < 1):
            return {key: amount}
    raise ValueError("noise takes {relative: F} (0 < F < 1, e.g. 0.1 for ±10%) or {absolute: N} (N > 0)")


def _inet(value: Any, bare: bool) -> dict[str, Any]:
    if value in (None, "random"):
        return {"keep_prefix": 0, "keep_prefix_v6": 0}
    options = _options(value, "inet", {"keep_prefix", "keep_prefix_v6"})
    v4, v6 = options.get("keep_prefix", 16), options.get("keep_prefix_v6", 32)
    if not isinstance(v4, int) or isinstance(v4, bool) or not 0 <= v4 <= 24:
        raise ValueError("inet keep_prefix (IPv4 bits kept) must be from 0 to 24")
    if not isinstance(v6, int) or isinstance(v6, bool) or not 0 <= v6 <= 64:
        raise ValueError("inet keep_prefix_v6 (IPv6 bits kept) must be from 0 to 64")
    return {"keep_prefix": v4, "keep_prefix_v6": v6}


def _json(value: Any, bare: bool) -> dict[str, Any]:
    if not isinstance(value, dict) or not value:
        raise ValueError("json takes {path: rule, ...}: {json: {full_name: fake_name, address.city: fake_city}}")
    paths = []
    for path, spec in value.items():
        segments = json_path(str(path))
        rule = parse_rule(spec)
        if rule.kind == "json":
            raise ValueError(f"json path {path}: json cannot apply inside a json value (write the longer path)")
        paths.append((".".join(segments), rule))
    return {"paths": tuple(paths)}


def json_path(path: str) -> tuple[str, ...]:
    """``address.city`` → (address, city); ``contacts.*.email``: * is each element of an array."""
    segments = tuple(segment.strip() for segment in path.split("."))
    if not path or any(not segment for segment in segments):
        raise ValueError(f"json path {path!r} has an empty part (write keys separated by dots, * for arrays)")
    return segments


def _each(value: Any, bare: bool) -> dict[str, Any]:
    if bare or value is None:
        raise ValueError("each needs a rule for the elements: {each: fake_email}")
    rule = parse_rule(value)
    if rule.kind in ("each", "json"):
        raise ValueError(f"each: {rule.kind} cannot apply to one array element")
    return {"rule": rule}


def _scrub(value: Any, bare: bool) -> dict[str, Any]:
    kinds = list(SCRUB_KINDS) if value is None else value
    if isinstance(kinds, str):
        kinds = [kinds]
    if not isinstance(kinds, list) or not kinds or not all(kind in SCRUB_KINDS for kind in kinds):
        raise ValueError(f"scrub takes a list of {', '.join(SCRUB_KINDS)} (or nothing: all of them)")
    return {"kinds": tuple(kind for kind in SCRUB_KINDS if kind in kinds)}


def _same_as(value: Any, bare: bool) -> dict[str, Any]:
    if not isinstance(value, str) or value.count(".") != 2 or not all(value.split(".")):
        raise ValueError("same_as names the key column this one holds: {same_as: schema.table.column}")
    return {"column": value}


_PARSERS = {
    "fixed": _fixed, "hash": _hash, "fake_email": _fake_email, "mask": _mask,
    **{name: _pool(name) for name in POOL_KINDS},
    "fake_phone": _consistent_only("fake_phone"), "fake_iban": _consistent_only("fake_iban"),
    "random_date": _range("random_date"), "random_int": _range("random_int"),
    "random_number": _range("random_number"), "shift_date": _shift_date, "generalize": _generalize,
    "noise": _noise, "inet": _inet, "json": _json, "each": _each, "scrub": _scrub, "same_as": _same_as,
}
