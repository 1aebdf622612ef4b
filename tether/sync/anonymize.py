"""Anonymization rules: the YAML file, its validation against the source, and the SQL each rule selects on the source.

Rules become expressions in ``COPY (SELECT expr AS col, ...) TO STDOUT``, evaluated by the source server, so
raw personal data never leaves production. Every expression uses built-in functions only (md5, substr,
left/right, bit casts), which a SELECT-only role may call, and is deterministic for a value and a salt:
the same e-mail becomes the same fake address in every table and on every sync.
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

from psycopg import sql

from tether.errors import ConfigError
from tether.paths import project_root, runtime_dir
from tether.secrets import generate_password
from tether.sync.catalog import Column, Relation, SourceCatalog

RULES_ENV = "TETHER_ANONYMIZE_RULES"
SALT_ENV = "TETHER_ANONYMIZE_SALT"
SALT_SETTING = "tether.anonymize_salt"  # a custom session setting on each source session
RULES_FILE = "anonymize.yaml"

RULE_KINDS = ("fake_email", "fake_name", "null", "fixed", "hash", "mask", "random_date", "random_int",
              "random_number", "keep")
# Rules that map different values to different results (up to md5 collisions): safe on unique columns.
INJECTIVE = frozenset({"fake_email", "hash", "keep"})
_TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "citext", "name"})
_INTEGER_LIMITS = {"int2": 32767, "int4": 2147483647, "int8": 2**60}
FIRST_NAMES = ("Alex", "Bea", "Carlos", "Dana", "Eli", "Farah", "Gus", "Hana", "Ivo", "June", "Kai", "Lena",
               "Milo", "Nora", "Omar", "Pia", "Quinn", "Rosa", "Sami", "Tess", "Uma", "Viktor", "Wren", "Yara")
LAST_NAMES = ("Archer", "Baker", "Carter", "Dalton", "Ellis", "Fischer", "Garcia", "Hughes", "Ito", "Jensen",
              "Keller", "Lopez", "Moreau", "Novak", "Olsen", "Perez", "Quist", "Rossi", "Silva", "Tanaka")
DEFAULT_MASK: dict[str, Any] = {"keep_first": 1, "keep_last": 2, "char": "*"}


@dataclass(frozen=True)
class Rule:
    kind: str
    options: tuple[tuple[str, Any], ...] = ()

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def describe(self) -> str:
        if not self.options:
            return self.kind
        return f"{self.kind} {json.dumps(dict(self.options), default=str, sort_keys=True)}"


@dataclass(frozen=True)
class RuleSet:
    """Rules per table (``schema.table``) and column, as read from ``origin``."""

    origin: str
    tables: Mapping[str, Mapping[str, Rule]]
    # `large_objects: keep | drop`: whether the source's large objects (opaque bytes no column rule can see into)
    # are copied. None: the file does not say, and a source with large objects stops an anonymized sync.
    large_objects: str | None = None

    def digest(self) -> str:
        """A fingerprint of the rules: a sync made with other rules is not reused incrementally."""
        canonical: dict[str, Any] = {table: {column: [rule.kind, [list(item) for item in rule.options]]
                                             for column, rule in sorted(columns.items())}
                                     for table, columns in sorted(self.tables.items())}
        if self.large_objects is not None:
            canonical = {"tables": canonical, "large_objects": self.large_objects}
        return hashlib.sha256(json.dumps(canonical, default=str, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class AppliedRule:
    table: str
    column: str
    rule: str

    def as_dict(self) -> dict[str, str]:
        return {"table": self.table, "column": self.column, "rule": self.rule}


NO_RULES = RuleSet("(anonymization off)", {})


def default_rules_path() -> Path:
    """``TETHER_ANONYMIZE_RULES``, else ``anonymize.yaml`` at the project root."""
    override = os.environ.get(RULES_ENV)
    return Path(override) if override else project_root() / RULES_FILE


def load_rules(path: Path) -> RuleSet:
    """Read and check a rules file; a missing or malformed file is a ConfigError naming it."""
    import yaml

    if not path.is_file():
        raise ConfigError(f"There is no anonymization rules file at {path}. sync-prod anonymizes by default: "
                          f"create it (see anonymize.yaml at the repository root for the format), point "
                          f"--rules or {RULES_ENV} at yours, or pass --no-anonymize to copy real personal data.")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"The anonymization rules file {path} is not valid YAML: {error}") from None
    return parse_rules(data, str(path))


def parse_rules(data: Any, origin: str) -> RuleSet:
    """Rules from the parsed YAML document: ``{tables: {schema.table: {column: rule}}}``."""
    if data is None:
        data = {}
    if not isinstance(data, dict) or not set(data) <= {"tables", "large_objects", "subset"}:  # subset: subset_spec
        raise ConfigError(f"{origin}: the rules file must be a mapping with the keys `tables` "
                          "(tables: {schema.table: {column: rule}}) and, optionally, `large_objects` (keep or drop).")
    large_objects = data.get("large_objects")
    if large_objects not in (None, "keep", "drop"):
        raise ConfigError(f"{origin}: `large_objects` must be `keep` (copy them as they are: you reviewed them) or "
                          f"`drop` (leave them out), not {large_objects!r}.")
    tables = data.get("tables") or {}
    if not isinstance(tables, dict):
        raise ConfigError(f"{origin}: `tables` must map `schema.table` to its columns' rules.")
    problems: list[str] = []
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
    if problems:
        raise ConfigError(f"{origin} has invalid anonymization rules: " + "; ".join(problems) + ". Rules are "
                          f"one of {', '.join(RULE_KINDS)}; see anonymize.yaml for examples.")
    return RuleSet(origin, parsed, large_objects)


def parse_rule(spec: Any) -> Rule:
    """One rule: a name (``fake_email``), YAML null (the ``null`` rule) or ``{name: options}``."""
    if spec is None:
        return Rule("null")
    if isinstance(spec, str):
        name, value = spec, None
    elif isinstance(spec, dict) and len(spec) == 1:
        name, value = next(iter(spec.items()))
    else:
        raise ValueError(f"{spec!r} is not a rule name or a one-key mapping {{rule: options}}")
    if name not in RULE_KINDS:
        raise ValueError(f"unknown rule {name!r}")
    options: dict[str, Any] = {}
    if name == "fixed":
        if isinstance(spec, str):
            raise ValueError("`fixed` needs a value: {fixed: VALUE}")
        options["value"] = value
    elif name == "hash":
        length = (value or {}).get("length") if isinstance(value, dict) else value
        if length is not None:
            if not isinstance(length, int) or not 8 <= length <= 32:
                raise ValueError("hash length must be an integer from 8 to 32")
            options["length"] = length
    elif name == "mask":
        settings: dict[str, Any] = dict(DEFAULT_MASK)
        if isinstance(value, dict):
            unknown = set(value) - set(DEFAULT_MASK)
            if unknown:
                raise ValueError(f"mask options are keep_first, keep_last and char, not {sorted(unknown)}")
            settings.update(value)
        elif value not in (None, "partial"):
            raise ValueError("mask takes `partial` or {keep_first: N, keep_last: N, char: '*'}")
        if not all(isinstance(settings[key], int) and settings[key] >= 0 for key in ("keep_first", "keep_last")):
            raise ValueError("mask keep_first and keep_last must be integers of 0 or more")
        if not isinstance(settings["char"], str) or len(settings["char"]) != 1:
            raise ValueError("mask char must be one character")
        options.update(settings)
    elif name in ("random_date", "random_int", "random_number"):
        low, high = _range(value, name)
        if name == "random_date":
            low, high = _date(low), _date(high)
        elif not all(isinstance(bound, int | float) and not isinstance(bound, bool) for bound in (low, high)):
            raise ValueError(f"{name} bounds must be numbers")
        if name == "random_int" and not all(isinstance(bound, int) for bound in (low, high)):
            raise ValueError("random_int bounds must be integers")
        if low > high:
            raise ValueError(f"{name} range is empty ({low} > {high})")
        options.update({"from": low, "to": high} if name == "random_date" else {"min": low, "max": high})
        if name == "random_number":
            decimals = value.get("decimals", 2) if isinstance(value, dict) else 2
            if not isinstance(decimals, int) or not 0 <= decimals <= 10:
                raise ValueError("random_number decimals must be an integer from 0 to 10")
            options["decimals"] = decimals
    elif value not in (None, {}):
        raise ValueError(f"{name} takes no options")
    return Rule(name, tuple(sorted(options.items())))


def _range(value: Any, name: str) -> tuple[Any, Any]:
    keys = ("from", "to") if name == "random_date" else ("min", "max")
    if isinstance(value, dict) and set(value) - {"decimals"} == set(keys):
        return value[keys[0]], value[keys[1]]
    if isinstance(value, list | tuple) and len(value) == 2:
        return value[0], value[1]
    raise ValueError(f"{name} needs a range: {{{keys[0]}: ..., {keys[1]}: ...}} or [low, high]")


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def anonymize_salt() -> str:
    """``TETHER_ANONYMIZE_SALT``, else a random salt generated once and kept in .runtime/ (mode 0600)."""
    value = os.environ.get(SALT_ENV)
    if value:
        return value
    path = runtime_dir() / "sync" / "anonymize_salt"
    if path.is_file():
        stored = path.read_text().strip()
        if stored:
            return stored
    path.parent.mkdir(parents=True, exist_ok=True)
    salt = generate_password(40)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(salt + "\n")
    return salt


def salt_digest(salt: str) -> str:
    """Stored with the sync's state instead of the salt: a new salt means every table is copied again."""
    return hashlib.sha256(b"tether-sync-salt:" + salt.encode()).hexdigest()


def resolve_rules(rules: RuleSet, catalog: SourceCatalog) -> dict[int, dict[str, Rule]]:
    """Rules per table oid (a parent's rules reach its partitions and children); mistakes are one ConfigError.

    A table or column that does not exist is an error, because a typo would leak the column it meant.
    """
    by_name = catalog.by_name()
    problems: list[str] = []
    named: dict[int, dict[str, Rule]] = {}
    for table, columns in rules.tables.items():
        relation = by_name.get(table)
        if relation is None or relation.kind not in ("r", "p"):
            problems.append(f"table {table} does not exist in the source" if relation is None
                            else f"{table} is not a table")
            continue
        known = {column.name: column for column in relation.columns}
        for column_name, rule in columns.items():
            column = known.get(column_name)
            if column is None:
                problems.append(f"column {table}.{column_name} does not exist")
                continue
            problem = rule_problem(rule, column, (relation.oid, column_name) in catalog.unique_columns)
            if problem:
                problems.append(f"{table}.{column_name}: {problem}")
        named[relation.oid] = dict(columns)
    if problems:
        raise ConfigError(f"The anonymization rules in {rules.origin} do not match the source database: "
                          + "; ".join(problems) + ". Nothing was copied. Fix the rules file (a rule for a "
                          "missing table or column is refused so that a typo cannot leak the real one).")
    resolved: dict[int, dict[str, Rule]] = {}
    for oid, relation in catalog.relations.items():
        merged: dict[str, Rule] = {}
        for ancestor in reversed(catalog.ancestors(oid)):  # a partition or child table has its parents' columns
            names = {column.name for column in relation.columns}
            merged.update({column: rule for column, rule in named.get(ancestor, {}).items() if column in names})
        merged.update(named.get(oid, {}))
        if merged:
            resolved[oid] = merged
    return resolved


def rule_problem(rule: Rule, column: Column, unique: bool) -> str | None:
    """Why ``rule`` cannot apply to ``column`` (None when it can)."""
    if column.generated:
        return "a generated column is computed again locally; anonymize the columns it is computed from"
    if rule.kind == "null" and column.not_null:
        return "the null rule cannot apply to a NOT NULL column"
    if unique and rule.kind not in INJECTIVE:
        return (f"the column is unique and {rule.kind} would repeat values; use fake_email or hash")
    textual = column.type_name in _TEXT_TYPES
    if rule.kind in ("fake_email", "fake_name", "mask") and not textual:
        return f"{rule.kind} needs a text column, not {column.type_sql}"
    if rule.kind == "hash" and not (textual or column.type_name == "uuid" or column.type_name in _INTEGER_LIMITS):
        return f"hash works on text, uuid and integer columns, not {column.type_sql}"
    if rule.kind == "random_date" and column.type_name not in ("date", "timestamp", "timestamptz"):
        return f"random_date needs a date or timestamp column, not {column.type_sql}"
    if rule.kind in ("random_int", "random_number") and column.category != "N":
        return f"{rule.kind} needs a numeric column, not {column.type_sql}"
    return None


def _salted_md5(value: sql.Composable) -> sql.Composable:
    return sql.SQL("md5(current_setting({}) || ({})::text)").format(sql.Literal(SALT_SETTING), value)


def _number(digest: sql.Composable, slice_number: int) -> sql.Composable:
    """A non-negative 60-bit integer from 15 hex digits of ``digest`` (two independent slices: 0 and 1)."""
    return sql.SQL("('x' || substr({}, {}, 15))::bit(60)::bigint").format(digest, sql.Literal(1 + 15 * slice_number))


def _array(values: tuple[str, ...]) -> sql.Composable:
    return sql.SQL("ARRAY[{}]").format(sql.SQL(", ").join(sql.Literal(value) for value in values))


def column_expression(rule: Rule, column: Column) -> sql.Composable:
    """The SQL the source evaluates instead of ``column``, cast back to the column's own type."""
    value = sql.Identifier(column.name)
    type_sql = sql.SQL(column.type_sql)
    digest = _salted_md5(value)
    kind = rule.kind
    if kind == "keep":
        return value
    if kind == "null":
        return sql.SQL("NULL::{}").format(type_sql)
    if kind == "fixed":
        literal = sql.Literal(_literal_text(rule.option("value")))
        expression: sql.Composable = sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE {} END").format(value, literal)
    elif kind == "fake_email":
        expression = sql.SQL("'user_' || {} || '@example.com'").format(digest)
    elif kind == "fake_name":
        expression = sql.SQL("({})[1 + {} % {}] || ' ' || ({})[1 + {} % {}]").format(
            _array(FIRST_NAMES), _number(digest, 0), sql.Literal(len(FIRST_NAMES)),
            _array(LAST_NAMES), _number(digest, 1), sql.Literal(len(LAST_NAMES)))
    elif kind == "hash":
        if column.type_name == "uuid":
            expression = sql.SQL("({})::uuid").format(digest)
        elif column.type_name in _INTEGER_LIMITS:
            expression = sql.SQL("{} % {}").format(_number(digest, 0), sql.Literal(_INTEGER_LIMITS[column.type_name]))
        else:
            expression = sql.SQL("left({}, {})").format(digest, sql.Literal(rule.option("length", 32)))
    elif kind == "mask":
        first, last, char = rule.option("keep_first"), rule.option("keep_last"), rule.option("char")
        text = sql.SQL("({})::text").format(value)
        expression = sql.SQL(
            "CASE WHEN {v} IS NULL THEN NULL WHEN length({v}) <= {keep} THEN repeat({c}, length({v})) "
            "ELSE left({v}, {first}) || repeat({c}, length({v}) - {keep}) || right({v}, {last}) END").format(
            v=text, keep=sql.Literal(first + last), c=sql.Literal(char), first=sql.Literal(first),
            last=sql.Literal(last))
    elif kind == "random_date":
        low, high = rule.option("from"), rule.option("to")
        expression = sql.SQL("{}::date + ({} % {})::int").format(
            sql.Literal(low.isoformat()), _number(digest, 0), sql.Literal((high - low).days + 1))
        if column.type_name != "date":
            expression = sql.SQL("{} + ({} % 86400) * interval '1 second'").format(expression, _number(digest, 1))
    elif kind == "random_int":
        low, high = rule.option("min"), rule.option("max")
        expression = sql.SQL("{} + {} % {}").format(sql.Literal(low), _number(digest, 0), sql.Literal(high - low + 1))
    elif kind == "random_number":
        low, high = rule.option("min"), rule.option("max")
        expression = sql.SQL("round({}::numeric + ({} % 1000001)::numeric / 1000000 * {}::numeric, {})").format(
            sql.Literal(str(low)), _number(digest, 0), sql.Literal(str(high - low)),
            sql.Literal(rule.option("decimals", 2)))
    else:  # pragma: no cover - parse_rule admits only RULE_KINDS
        raise ConfigError(f"unknown rule {kind}")
    return sql.SQL("({})::{}").format(expression, type_sql)


def _literal_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def applied_rules(relation: Relation, rules: Mapping[str, Rule]) -> list[AppliedRule]:
    return [AppliedRule(relation.qualified, column, rule.describe()) for column, rule in sorted(rules.items())]
