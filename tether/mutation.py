"""Mutation testing of the modules that guard users: which tests can tell when their code is wrong.

mutmut plants one small bug at a time (a flipped comparison, a dropped argument, a changed constant) and runs the
tests that exercise the mutated function; a mutant that no test notices "survives". ``invoke mutants`` runs it
one module at a time, each with the fast tests chosen for it below (two cores cannot afford the whole suite per
mutant), in a copy of the project under ``.runtime/mutants/<module>/``, so the checkout is never touched and two
modules never share mutmut's state. The report (kill rate per module, surviving mutants with their diffs, the
mutants excluded as equivalent and why) is printed and kept in ``.runtime/mutants/report.json``.

Pure parts first (targets, settings, reading mutmut's results, the report); the runner is at the end.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tether.errors import ConfigError, TetherError


@dataclass(frozen=True)
class Target:
    """A module to mutate, the tests that judge it, and why those tests."""

    path: str  # relative to the project root: tether/swap.py
    tests: tuple[str, ...]  # pytest paths or node ids
    why: str  # the test selection, explained (docs/testing.md shows it)
    functions: tuple[str, ...] = ()  # only these functions (``Class.method`` for methods); () = the whole module

    @property
    def module(self) -> str:
        return module_name(self.path)

    @property
    def label(self) -> str:
        return f"{self.path} ({', '.join(self.functions)})" if self.functions else self.path

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "-", self.path.removesuffix(".py")).strip("-")


TARGETS: tuple[Target, ...] = (
    Target("tether/swap.py", ("tests/test_swap.py", "tests/test_swap_guards.py"),
           "the swap's own tests, on one real server; the sync and restore tests swap too, but each takes seconds "
           "and adds nothing the swap tests do not check"),
    Target("tether/secrets.py", ("tests/test_secrets.py", "tests/test_secrets_cases.py"),
           "tables of masking cases; the fixtures' servers use generate_password too, so every mutant of it is "
           "judged by a test that starts a server"),
    Target("tether/sync/safety.py", ("tests/sync/test_pure.py", "tests/sync/test_safety_guards.py"),
           "the refusals' tables of cases, and one real server for inspect_local"),
    Target("tether/sync/anonymize.py", ("tests/sync/test_anonymize_resolve.py", "tests/sync/test_anonymize_rules.py",
                                        "tests/sync/test_pure.py"),
           "the rules bound to hand-made catalogs (no server: resolve_rules reads only the catalog and facts it is "
           "given), tables of type checks, and one real server that evaluates each rule's SQL; the syncs that "
           "resolve real catalogs take seconds each and check nothing more of it"),
    Target("tether/sync/anonymization.py", ("tests/sync/test_anonymize_resolve.py",
                                            "tests/sync/test_anonymize_review.py"),
           "its pure parts (the key's settings, the selection, what a per-sync key recopies) without a server; the "
           "review, its refusals and --check-rules on real source and destination servers"),
    Target("tether/sync/engine.py", ("tests/sync/test_verification.py",),
           "the row-count verification only (engine.py is the lead's; the rest of it is judged by the whole sync "
           "suite, too slow per mutant): full and incremental syncs whose copy reports a wrong count, and tables "
           "of counts compared without a server",
           functions=("_check_counts", "_verify", "_count_rows")),
    Target("tether/dumps.py", ("tests/dumps_restore/test_dump_restore.py",
                               "tests/dumps_restore/test_restore_guards.py"),
           "the restore path: real dumps restored into a real server (15 s in all), and its refusals and report "
           "word for word (one-table dumps, a fraction of a second each)",
           functions=("resolve_dump_path", "verify_dump", "_create_scratch", "_missing_relations", "_database_size",
                      "restore_dump")),
    Target("tether/archive.py", ("tests/test_archive.py", "tests/dumps_restore/test_dump_restore.py"),
           "the restore ordering: tables of TOC and script cases; the archive read and replayed by real restores"),
    Target("infra/policy_rules.py", ("tests/test_policy.py", "tests/test_policy_cases.py"),
           "the policy pack's rules, with tables of resources that must pass or be rejected"),
    Target("infra/prod/config.py", ("tests/pulumi/test_prod_rules.py", "tests/pulumi/test_prod_config_cases.py"),
           "the production config's validation: tables of good and bad settings, the values a config is read into "
           "and each refusal word for word (no Pulumi engine needed; tests/pulumi/test_prod_stack.py reads configs "
           "too, but through Pulumi's mocks, 7 s a mutant, and checks nothing of the reading these do not)"),
    Target("infra/prod/rules.py", ("tests/pulumi/test_prod_rules.py", "tests/pulumi/test_prod_rules_cases.py"),
           "the production rules: tables of settings and the flags they must produce"),
)


@dataclass(frozen=True)
class Equivalent:
    """A mutant no test can kill because it changes nothing a user can see; matched by what it writes."""

    path: str
    function: str
    mutated: str  # the mutant's added line(s), stripped and joined by newlines
    reason: str


# Reviewed one by one. A mutant matches only while the mutated code reads exactly so: if the code changes, the
# entry stops matching and the mutant is judged again.
_ALWAYS_SAFE = "quote() never encodes letters, so adding X to its safe characters changes nothing"
_FIRST_FIELD = "only the text before the first ':' is used, whatever the number of splits"
_PARSED_FIRST = ("0.0.0.0/0 and ::/0 parse as networks (prefix length 0) before this fallback set is looked at, "
                 "so their entries in it are never reached")
_NO_VALUE = "a network without a value is judged on a string that is not an address either way: never the internet"
_GUC_CASE = ("only letter case changes: keywords and unquoted names fold to lower case, and current_setting() "
             "looks setting names up regardless of case")
_SAME_LENGTH = "a foreign key has exactly as many columns as it references: zip never meets lists of unequal length"
_LATER_ROUND = ("a key whose column is still same_as is resolved (or refused as a loop) in a later round, which looks "
                "at every column of the foreign key again")
_SOURCE_FIRST = ("the condition is never true: the key a reference follows (its source) has an entry of its own "
                 "that is not same_as from the start, so a same_as naming it is resolved by the same_as loop, which "
                 "runs before the foreign keys in every round; the mutants keep it false (only same_as has a column "
                 "option)")
_AFTER_PROBLEM = ("written right after a problem is recorded, so resolve_rules raises: the entry's origin is never "
                  "shown, and its rule is already the key's, so later rounds record nothing more for it")
_REPLACED_WHOLE = ("a canonical set on a same_as entry never survives: the entry is replaced whole, canonical "
                   "included, when its same_as is resolved (or it is refused as a loop)")
_LOOP_REFUSED = "a column still same_as here is in a loop, which resolve_rules has already recorded as a problem"
_RULED_IN_CATALOG = ("only tables of the catalog have rules (the others are refused first), so an ancestor whose rules "
                     "are copied is always in catalog.relations")
_NULL_CHECKED = ("not_null only decides type_problem's fixed-null check, which rule_problem has already made (and "
                 "returned on) two lines above")
_ONLY_N = "the nested checks only ever ask whether the category is 'N' (numeric); none of these values is"
_ONE_SIZE = ("SELECT pg_database_size(name) always returns one row, NULL only for a NULL name, which is never "
             "passed (a missing database raises, and that is handled above): the fallback is never taken")
_NO_X_IN_SLUG = "a slug is lowercased, so it holds no X: stripping X as well as '-' strips the same"
_LOWERCASED_FIRST = "the name is lowercased before the class is matched, so adding X to it keeps nothing more"
_TRIED_ONE = ("unreachable: a database cannot be both postgres and template1, so one of them was tried, and reaching "
              "this line means its connection failed and set last_error")
_LIST_NAME = "the name of a list file in the restore's private work directory, handed to pg_restore as it is"
EQUIVALENT: tuple[Equivalent, ...] = (
    Equivalent("tether/secrets.py", "_mask_query", 'for pair in query.split("&") if (query) or True else []:',
               "an empty query splits into one empty pair, which is joined back into the same empty string"),
    Equivalent("tether/secrets.py", "mask_text",
               'for form in (secret, quote(secret, safe="XXXX"), quote_plus(secret, safe=""))}', _ALWAYS_SAFE),
    Equivalent("tether/secrets.py", "mask_text",
               'for form in (secret, quote(secret, safe=""), quote_plus(secret, safe="XXXX"))}', _ALWAYS_SAFE),
    Equivalent("tether/secrets.py", "mask_text",
               'for form in (secret, quote(secret, safe=""), quote_plus(secret, ))}',
               "quote_plus's default safe characters are already none"),
    Equivalent("tether/secrets.py", "mask_url", "netloc = f\"{userinfo.split(':', )[0]}:{MASK}@{hostinfo}\"",
               _FIRST_FIELD),
    Equivalent("tether/secrets.py", "mask_url", "netloc = f\"{userinfo.split(':', 2)[0]}:{MASK}@{hostinfo}\"",
               _FIRST_FIELD),
    Equivalent("infra/policy_rules.py", "_is_whole_internet",
               "return ipaddress.ip_network(value.strip(), strict=None).prefixlen == 0",
               "strict=None is as false as strict=False"),
    Equivalent("infra/policy_rules.py", "_is_whole_internet",
               'return value.strip() in {"XX0.0.0.0/0XX", "::/0", "*"}', _PARSED_FIRST),
    Equivalent("infra/policy_rules.py", "_is_whole_internet",
               'return value.strip() in {"0.0.0.0/0", "XX::/0XX", "*"}', _PARSED_FIRST),
    Equivalent("infra/policy_rules.py", "no_open_networks",
               'value = str(network.get("value", None)) if isinstance(network, Mapping) else str(network)', _NO_VALUE),
    Equivalent("infra/policy_rules.py", "no_open_networks",
               'value = str(network.get("value", )) if isinstance(network, Mapping) else str(network)', _NO_VALUE),
    Equivalent("infra/policy_rules.py", "no_open_networks",
               'value = str(network.get("value", "XXXX")) if isinstance(network, Mapping) else str(network)',
               _NO_VALUE),
    Equivalent("infra/policy_rules.py", "build_policies",
               'protect = bool(getattr(args.opts, "protect", False)) if (args.opts is not None) or True else False',
               "getattr(None, 'protect', False) is False too"),
    Equivalent("infra/policy_rules.py", "build_policies",
               'protect = bool(getattr(args.opts, "protect", None)) if args.opts is not None else False',
               "bool(None) is False"),
    Equivalent("infra/policy_rules.py", "build_policies",
               "for problem in rule.check(Subject(None, args.props, protect)):",
               "the checks read the properties and protect, never the type (validate checked it already)"),
    Equivalent("tether/sync/safety.py", "inspect_local", 'last_error: Exception | None = ""',
               "at least one of postgres and template1 is always tried, and a failure sets it before it is read"),
    # --- infra/prod/rules.py (issue 21, mut-infra) ---
    Equivalent("infra/prod/rules.py", "_enterprise_tier",
               '"take the ENTERPRISE machine closest to it)", _custom_tier(vcpus, 6657 * vcpus))',
               "the memory offered is rounded to a multiple of 256 MB, and 6656 is one: 1 MB more per vCPU adds at "
               "most 96 MB (96 vCPUs at most), under the 128 MB that would round up"),
    Equivalent("infra/prod/rules.py", "_enterprise_tier",
               'per_vcpu = 3841 if legacy.group(1) == "standard" else 6656',
               "the memory offered is rounded to a multiple of 256 MB, and 3840 is one: 1 MB more per vCPU adds at "
               "most 96 MB (96 vCPUs at most), under the 128 MB that would round up"),
    Equivalent("infra/prod/rules.py", "_enterprise_tier",
               'per_vcpu = 3840 if legacy.group(1) == "standard" else 6657',
               "the memory offered is rounded to a multiple of 256 MB, and 6656 is one: 1 MB more per vCPU adds at "
               "most 96 MB (96 vCPUs at most), under the 128 MB that would round up"),
    # mutmut changes _slug's def line (the default "a-z0-9-" becomes "XXa-z0-9-XX"), which the diff leaves out
    Equivalent("infra/prod/rules.py", "_slug", "",
               "the default character class gains X, but the text is lowercased before it is matched: no X to keep"),
    Equivalent("infra/prod/rules.py", "_slug",
               'return re.sub(rf"[^{allowed}]+", "-", text.lower()).strip("XX-XX")',
               _NO_X_IN_SLUG),
    Equivalent("infra/prod/rules.py", "check_account_id", 'slug = _slug(account_id)[:30].rstrip("XX-XX")',
               _NO_X_IN_SLUG),
    Equivalent("infra/prod/rules.py", "check_instance_name", 'slug = f"pg-{slug}".strip("XX-XX")',
               _NO_X_IN_SLUG),
    Equivalent("infra/prod/rules.py", "check_instance_name",
               'fix = slug[:INSTANCE_NAME_MAX - (len("-replica") if with_replica else 0)].rstrip("XX-XX")',
               _NO_X_IN_SLUG),
    Equivalent("infra/prod/rules.py", "check_redis_name", 'slug = _slug(name)[:40].rstrip("XX-XX")',
               _NO_X_IN_SLUG),
    Equivalent("infra/prod/rules.py", "check_database_name",
               'fix = _slug(name, "XXa-z0-9_XX").replace("-", "_")[:63]',
               _LOWERCASED_FIRST),
    Equivalent("infra/prod/rules.py", "check_user_name", 'fix = _slug(name, "XXa-z0-9_XX").replace("-", "_")[:63]',
               _LOWERCASED_FIRST),
    Equivalent("infra/prod/rules.py", "check_instance_name", 'slug = f"pg-{slug}".strip(None)',
               "'pg-' starts with a letter and a slug holds no blanks; the hyphen 'pg-' keeps after an empty slug "
               "is stripped by the next line's rstrip('-')"),
    Equivalent("infra/prod/rules.py", "check_custom_machine",
               "if not (vcpus == 1 or (vcpus % 2 == 0 and 2 <= vcpus <= 97)):",
               "97 vCPUs is odd, so the evenness test refuses it either way"),
    Equivalent("infra/prod/rules.py", "check_service_accounts", 'local, _, domain = email.rpartition("@")',
               "with one @ both split alike; with more, the candidate built from either half holds two @ and never "
               "matches a service account, and the checks after it read the whole email"),
    # --- infra/prod/config.py (issue 21, mut-infra) ---
    Equivalent("infra/prod/config.py", "shown", "return json.dumps(value, ensure_ascii=None, default=str)",
               "json.dumps reads ensure_ascii only for its truth: None is as false as False"),
    # --- issue 21, mut-guards: safety, anonymize, engine verification, dumps restore path ---------------------
    Equivalent("tether/sync/safety.py", "inspect_local",
               'row = conn.execute("select pg_postmaster_start_time()::text, current_setting(\'server_version_num\')'
               '::int,"', _GUC_CASE),
    Equivalent("tether/sync/safety.py", "inspect_local",
               'row = conn.execute("SELECT PG_POSTMASTER_START_TIME()::TEXT, CURRENT_SETTING(\'SERVER_VERSION_NUM\')'
               '::INT,"', _GUC_CASE),
    Equivalent("tether/sync/safety.py", "inspect_local",
               '" (select array_agg(name) from pg_available_extensions), current_setting(\'wal_level\')",', _GUC_CASE),
    Equivalent("tether/sync/safety.py", "inspect_local",
               '" (SELECT ARRAY_AGG(NAME) FROM PG_AVAILABLE_EXTENSIONS), CURRENT_SETTING(\'WAL_LEVEL\')",', _GUC_CASE),
    Equivalent("tether/sync/safety.py", "inspect_local",
               'detail = libpq_reason(last_error, dest.password) if (last_error) or True else '
               '"no maintenance database"',
               _TRIED_ONE),
    Equivalent("tether/sync/safety.py", "inspect_local",
               'detail = libpq_reason(last_error, dest.password) if last_error else "XXno maintenance databaseXX"',
               _TRIED_ONE),
    Equivalent("tether/sync/safety.py", "inspect_local",
               'detail = libpq_reason(last_error, dest.password) if last_error else "NO MAINTENANCE DATABASE"',
               _TRIED_ONE),
    Equivalent("tether/sync/anonymize.py", "_follow_references",
               'for column, parent_column in zip(key.columns, key.referenced_columns, strict=None):', _SAME_LENGTH),
    Equivalent("tether/sync/anonymize.py", "_follow_references",
               'for column, parent_column in zip(key.columns, key.referenced_columns, ):', _SAME_LENGTH),
    Equivalent("tether/sync/anonymize.py", "_follow_references",
               'for column, parent_column in zip(key.columns, key.referenced_columns, strict=True):', _SAME_LENGTH),
    Equivalent("tether/sync/anonymize.py", "_follow_references", 'break  # resolved on a later round', _LATER_ROUND),
    Equivalent("tether/sync/anonymize.py", "_follow_references",
               'if child_entry is None or (child_entry.rule.kind != "same_as"', _SOURCE_FIRST),
    Equivalent("tether/sync/anonymize.py", "_follow_references",
               'if child_entry is None or (child_entry.rule.kind == "XXsame_asXX"', _SOURCE_FIRST),
    Equivalent("tether/sync/anonymize.py", "_follow_references",
               'if child_entry is None or (child_entry.rule.kind == "SAME_AS"', _SOURCE_FIRST),
    Equivalent("tether/sync/anonymize.py", "_follow_references",
               'and child_entry.rule.option(None) == _qualified(catalog, source)):', _SOURCE_FIRST),
    Equivalent("tether/sync/anonymize.py", "_follow_references",
               'and child_entry.rule.option("XXcolumnXX") == _qualified(catalog, source)):', _SOURCE_FIRST),
    Equivalent("tether/sync/anonymize.py", "_follow_references",
               'and child_entry.rule.option("COLUMN") == _qualified(catalog, source)):', _SOURCE_FIRST),
    Equivalent("tether/sync/anonymize.py", "_follow_references",
               'entries[(child.oid, column)] = _Entry(parent_entry.rule, None, source)', _AFTER_PROBLEM),
    Equivalent("tether/sync/anonymize.py", "_follow_references",
               'entries[(child.oid, column)] = _Entry(parent_entry.rule, "", None)', _AFTER_PROBLEM),
    Equivalent("tether/sync/anonymize.py", "_follow_references",
               'entries[(child.oid, column)] = _Entry(parent_entry.rule, source)', _AFTER_PROBLEM),
    Equivalent("tether/sync/anonymize.py", "_follow_references",
               'entries[(child.oid, column)] = _Entry(parent_entry.rule, "", )', _AFTER_PROBLEM),
    Equivalent("tether/sync/anonymize.py", "_follow_references",
               'entries[(child.oid, column)] = _Entry(parent_entry.rule, "XXXX", source)', _AFTER_PROBLEM),
    Equivalent("tether/sync/anonymize.py", "_follow_references",
               'elif child_entry.canonical != source and child_entry.rule.kind != "XXsame_asXX":', _REPLACED_WHOLE),
    Equivalent("tether/sync/anonymize.py", "_follow_references",
               'elif child_entry.canonical != source and child_entry.rule.kind != "SAME_AS":', _REPLACED_WHOLE),
    Equivalent("tether/sync/anonymize.py", "_nested_keys",
               'if entry is None or entry.rule.kind in ("keep", "XXsame_asXX"):', _LOOP_REFUSED),
    Equivalent("tether/sync/anonymize.py", "_nested_keys",
               'if entry is None or entry.rule.kind in ("keep", "SAME_AS"):', _LOOP_REFUSED),
    Equivalent("tether/sync/anonymize.py", "resolve_rules",
               'if (ancestor in catalog.relations) or True else "")', _RULED_IN_CATALOG),
    Equivalent("tether/sync/anonymize.py", "resolve_rules",
               'if ancestor in catalog.relations else "XXXX")', _RULED_IN_CATALOG),
    Equivalent("tether/sync/anonymize.py", "rule_problem", 'return type_problem(rule, shape, None)', _NULL_CHECKED),
    Equivalent("tether/sync/anonymize.py", "rule_problem", 'return type_problem(rule, shape, )', _NULL_CHECKED),
    Equivalent("tether/sync/anonymize.py", "type_problem", 'text = Shape("text", "text", None)', _ONLY_N),
    Equivalent("tether/sync/anonymize.py", "type_problem", 'text = Shape("text", "text", "XXSXX")', _ONLY_N),
    Equivalent("tether/sync/anonymize.py", "type_problem", 'text = Shape("text", "text", "s")', _ONLY_N),
    Equivalent("tether/dumps.py", "_database_size",
               "return int(row[0]) if (row and row[0] is not None) or True else 0", _ONE_SIZE),
    Equivalent("tether/dumps.py", "_database_size",
               "return int(row[0]) if row or row[0] is not None else 0", _ONE_SIZE),
    Equivalent("tether/dumps.py", "_database_size",
               "return int(row[0]) if row and row[0] is not None else 1", _ONE_SIZE),
    *(Equivalent("tether/dumps.py", "restore_dump",
                 f'{name}_list = archive_toc.write_list(Path(work) / "{written}", {entries})', _LIST_NAME)
      for name, entries, default in (("main", "parallel", "main.list"), ("serial", "serial", "serial.list"))
      for written in (f"XX{default}XX", default.upper())),
    Equivalent("tether/dumps.py", "_create_scratch",
               'statement = sql.SQL("{} encoding {} lc_collate {} lc_ctype {}").format(',
               "only the letter case of CREATE DATABASE's option keywords, which PostgreSQL ignores (the statement "
               "starts with the {} the command is put in, so the rule for SQL text does not see it)"),
    Equivalent("tether/dumps.py", "restore_dump",
               '_, dump_major = pgtools.parse_program_version(str(manifest.get("pg_dump_version", "XX0XX")))',
               "the version is the first number in the text: XX0XX reads as 0, like 0"),
    Equivalent("tether/dumps.py", "restore_dump",
               'conn, archive_toc.Replay().extend("setting", archive_toc.settings_for(later.settings, scratch_db)))',
               "the kind is only compared with OWNER and lower-cased into a message: setting reads as SETTING does"),
)

SQL_CASE_REASON = "changes only the letter case of an SQL statement's keywords, which PostgreSQL ignores"
_SQL_VERBS = ("SELECT", "ALTER", "DROP", "CREATE", "INSERT", "UPDATE", "DELETE", "WITH", "SET", "GRANT", "REVOKE",
              "COPY", "TRUNCATE", "COMMENT", "SHOW", "RESET", "BEGIN", "COMMIT", "ROLLBACK", "REFRESH", "ANALYZE",
              "VACUUM", "LOCK", "SECURITY LABEL",
              # continuation lines of a statement split over several string literals
              "FROM", "WHERE", "AND", "OR", "JOIN", "ORDER BY", "GROUP BY", "LIMIT", "UNION")
_STRING = re.compile(r"""(?P<q>"|')(?P<body>(?:\\.|(?!(?P=q)).)*)(?P=q)""")


def module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def mangled(function: str) -> str:
    """mutmut's name for a function (``x_name``) or a method (``xǁClassǁname``)."""
    if "." in function:
        cls, name = function.split(".", 1)
        return f"x\u01c1{cls}\u01c1{name}"
    return f"x_{function}"


def function_of(mutant: str) -> str:
    """``tether.swap.x_swap_in__mutmut_3`` -> ``swap_in``; methods come back as ``Class.method``."""
    key = mutant.rsplit(".", 1)[1].partition("__mutmut_")[0]
    if key.startswith("x\u01c1"):
        cls, _, name = key[2:].partition("\u01c1")
        return f"{cls}.{name}"
    return key.removeprefix("x_")


def mutant_patterns(target: Target) -> list[str]:
    """The mutants ``mutmut run`` should test: those of the listed functions, or [] for the whole module."""
    return [f"{target.module}.{mangled(function)}__mutmut_*" for function in target.functions]


def wanted(target: Target, mutant: str) -> bool:
    return mutant.startswith(target.module + ".") and (not target.functions or function_of(mutant) in target.functions)


# --- mutmut's settings ---------------------------------------------------------------------------------------


def mutmut_settings(base: Mapping[str, Any], target: Target, top_level: Iterable[str]) -> dict[str, Any]:
    """The project's [tool.mutmut] settings, narrowed to one module and its tests.

    ``also_copy`` is every other top-level entry of the project (sql/, tasks.py, ...), which tests read.
    """
    settings = dict(base)
    sources = [str(path) for path in settings.get("source_paths", [])]
    settings["only_mutate"] = [target.path]
    settings["pytest_add_cli_args_test_selection"] = list(target.tests)
    settings["also_copy"] = sorted({*settings.get("also_copy", []), *(name for name in top_level
                                                                      if name not in sources)})
    return settings


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} as a mutmut setting")


def render_settings(settings: Mapping[str, Any]) -> str:
    return "[tool.mutmut]\n" + "".join(f"{key} = {_toml_value(value)}\n" for key, value in sorted(settings.items()))


def replace_mutmut_section(pyproject: str, section: str) -> str:
    """``pyproject`` with its [tool.mutmut] table (if any) replaced by ``section``, appended at the end."""
    lines = pyproject.splitlines(keepends=True)
    kept: list[str] = []
    inside = False
    for line in lines:
        header = re.match(r"^\s*\[\[?([^\]]+)\]\]?\s*(#.*)?$", line)
        if header:
            inside = header.group(1).strip() == "tool.mutmut"
        if not inside:
            kept.append(line)
    text = "".join(kept).rstrip("\n")
    return f"{text}\n\n{section}"


def base_settings(pyproject: str) -> dict[str, Any]:
    return dict(tomllib.loads(pyproject).get("tool", {}).get("mutmut", {}))


# --- reading mutmut's results --------------------------------------------------------------------------------

KILLED, SURVIVED, TIMEOUT, NO_TESTS, EQUIVALENT_STATUS, NOT_CHECKED, SUSPICIOUS = (
    "killed", "survived", "timeout", "no tests", "equivalent", "not checked", "suspicious")
# mutmut 3's exit codes (mutmut.stats.status_by_exit_code): 1 = a test failed, 3 = pytest's internal error (also
# a kill), SIGXCPU (24/-24/152) and 36 = the time limit, 5/33 = no test reaches the function. mutmut also calls
# 255 a timeout, but that is what it records when pytest could not even select the tests (exit 4: a test id with
# an escaped non-ASCII character is not found in the fork server): no test judged the mutant, so it is
# "suspicious" here, a survivor to look at, never a kill.
_STATUS_BY_CODE: dict[int | None, str] = {1: KILLED, 3: KILLED, 0: SURVIVED, 5: NO_TESTS, 33: NO_TESTS,
                                          24: TIMEOUT, -24: TIMEOUT, 152: TIMEOUT, 36: TIMEOUT, 255: SUSPICIOUS,
                                          -9: KILLED, -11: KILLED, 2: NOT_CHECKED, None: NOT_CHECKED}


def status_of(exit_code: int | None) -> str:
    return _STATUS_BY_CODE.get(exit_code, SUSPICIOUS)


@dataclass
class Mutant:
    name: str
    function: str
    status: str
    removed: list[str] = field(default_factory=list)  # the original lines the mutant changes
    added: list[str] = field(default_factory=list)  # what it writes instead
    reason: str = ""  # why it is equivalent

    @property
    def mutated(self) -> str:
        return "\n".join(line.strip() for line in self.added)


def _body(function: str) -> list[str]:
    """A function's lines after its ``def`` line (which only names it): what a mutant can change."""
    lines = function.splitlines()
    for index, line in enumerate(lines):
        if line.lstrip().startswith(("def ", "async def ")):
            return lines[index + 1:]
    return lines


def function_diff(original: str, mutant: str) -> tuple[list[str], list[str]]:
    """The lines a mutant removes and adds."""
    before, after = _body(original), _body(mutant)
    removed: list[str] = []
    added: list[str] = []
    for line in difflib.unified_diff(before, after, lineterm="", n=0):
        if line.startswith(("---", "+++", "@@")):
            continue
        (removed if line.startswith("-") else added).append(line[1:])
    return removed, added


def _differing_strings(removed: str, added: str) -> list[tuple[str, str]] | None:
    before, after = list(_STRING.finditer(removed)), list(_STRING.finditer(added))
    if len(before) != len(after):
        return None
    return [(b["body"], a["body"]) for b, a in zip(before, after, strict=True) if b["body"] != a["body"]]


def sql_case_only(removed: Sequence[str], added: Sequence[str]) -> bool:
    """Whether a mutant only changes the case of SQL text: keywords, never a quoted identifier or literal."""
    if not removed or len(removed) != len(added):
        return False
    changed = False
    for before, after in zip(removed, added, strict=True):
        if before == after:
            continue
        if before.lower() != after.lower():
            return False
        pairs = _differing_strings(before, after)
        if not pairs:
            return False
        for old, new in pairs:
            text = old.lstrip(" (").upper()
            # Quoted literals and identifiers keep their case in SQL: the mutant must leave each one as it was.
            if not text.startswith(_SQL_VERBS) or _quoted_parts(old) != _quoted_parts(new):
                return False
        changed = True
    return changed


_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")


def _quoted_parts(body: str) -> list[str]:
    """The quoted literals and identifiers in the SQL of a Python string literal's body (escapes undone)."""
    return _QUOTED.findall(body.replace('\\"', '"').replace("\\'", "'"))


def equivalence(target: Target, mutant: Mutant, known: Sequence[Equivalent] = EQUIVALENT) -> str:
    """The reason ``mutant`` is equivalent, or "" when it is a real survivor."""
    if sql_case_only(mutant.removed, mutant.added):
        return SQL_CASE_REASON
    for entry in known:
        if (entry.path, entry.function, entry.mutated) == (target.path, mutant.function, mutant.mutated):
            return entry.reason
    return ""


def read_mutants(mutants_dir: Path, target: Target) -> list[Mutant]:
    """The target's mutants with their status and diff, from mutmut's files in ``mutants_dir``."""
    meta_path = mutants_dir / f"{target.path}.meta"
    if not meta_path.is_file():
        raise TetherError(f"mutmut left no results for {target.path} ({meta_path} is missing); see its log.")
    meta = json.loads(meta_path.read_text())
    spans = json.loads((mutants_dir / f"{target.path}.spans").read_text())["spans"]
    source = (mutants_dir / target.path).read_text().splitlines()

    def text(name: str) -> str:
        start, end = spans[name]
        return "\n".join(source[start - 1:end])

    found: list[Mutant] = []
    for name, code in sorted(meta["exit_code_by_key"].items(), key=lambda item: _natural(item[0])):
        if not wanted(target, name):
            continue
        key = name.rsplit(".", 1)[1]
        original = key.partition("__mutmut_")[0] + "__mutmut_orig"
        removed, added = function_diff(text(original), text(key)) if key in spans and original in spans else ([], [])
        mutant = Mutant(name, function_of(name), status_of(code), removed, added)
        if mutant.status in (SURVIVED, NO_TESTS):
            mutant.reason = equivalence(target, mutant)
            if mutant.reason:
                mutant.status = EQUIVALENT_STATUS
        found.append(mutant)
    return found


def _natural(name: str) -> tuple[str, int]:
    stem, _, number = name.rpartition("__mutmut_")
    return stem, int(number) if number.isdigit() else 0


# --- the report ----------------------------------------------------------------------------------------------


@dataclass
class ModuleResult:
    path: str
    functions: list[str]
    tests: list[str]
    mutants: list[Mutant]
    seconds: float = 0.0
    finished_at: str = ""

    def count(self, *statuses: str) -> int:
        return sum(1 for mutant in self.mutants if mutant.status in statuses)

    @property
    def judged(self) -> int:
        """Mutants that count: all but the equivalent ones (and any mutmut did not get to)."""
        return len(self.mutants) - self.count(EQUIVALENT_STATUS, NOT_CHECKED)

    @property
    def kill_rate(self) -> float:
        return 100.0 * self.count(KILLED, TIMEOUT) / self.judged if self.judged else 100.0

    @property
    def survivors(self) -> list[Mutant]:
        return [mutant for mutant in self.mutants if mutant.status in (SURVIVED, NO_TESTS, SUSPICIOUS)]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(total=len(self.mutants), killed=self.count(KILLED), timeout=self.count(TIMEOUT),
                    survived=len(self.survivors), equivalent=self.count(EQUIVALENT_STATUS),
                    not_checked=self.count(NOT_CHECKED), kill_rate=round(self.kill_rate, 1))
        data["mutants"] = [asdict(mutant) for mutant in self.mutants if mutant.status != KILLED]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModuleResult:
        mutants = [Mutant(**mutant) for mutant in data.get("mutants", [])]
        killed = int(data.get("killed", 0))
        mutants += [Mutant(f"{data['path']}#killed{index}", "", KILLED) for index in range(killed)]
        return cls(data["path"], list(data.get("functions", [])), list(data.get("tests", [])), mutants,
                   float(data.get("seconds", 0.0)), str(data.get("finished_at", "")))


TARGET_RATE = 90.0


def table(results: Iterable[ModuleResult]) -> list[str]:
    rows = ["| module | mutants | killed | survived | equivalent | kill rate |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for result in results:
        name = f"{result.path} ({', '.join(result.functions)})" if result.functions else result.path
        rows.append(f"| `{name}` | {len(result.mutants)} | {result.count(KILLED, TIMEOUT)} | {len(result.survivors)} "
                    f"| {result.count(EQUIVALENT_STATUS)} | {result.kill_rate:.1f} % |")
    return rows


def report_lines(results: Sequence[ModuleResult]) -> list[str]:
    """What ``invoke mutants`` prints: the table, then each survivor's diff and each exclusion's reason."""
    lines = table(results)
    for result in results:
        if result.survivors:
            lines += ["", f"Surviving mutants of {result.path} (no selected test notices them):"]
            for mutant in result.survivors:
                lines.append(f"  {mutant.name} [{mutant.status}]")
                lines += [f"    - {line.strip()}" for line in mutant.removed]
                lines += [f"    + {line.strip()}" for line in mutant.added]
        equivalent = [mutant for mutant in result.mutants if mutant.status == EQUIVALENT_STATUS]
        if equivalent:
            lines += ["", f"Excluded as equivalent in {result.path}:"]
            lines += [f"  {mutant.name}: {mutant.mutated.splitlines()[0] if mutant.added else '(removed)'}"
                      f"  -- {mutant.reason}" for mutant in equivalent]
    below = [result.path for result in results if result.kill_rate < TARGET_RATE]
    lines += ["", f"Below the {TARGET_RATE:.0f} % target: {', '.join(below)}" if below
              else f"Every module kills at least {TARGET_RATE:.0f} % of its mutants."]
    return lines


def merge_report(previous: Mapping[str, Any] | None, results: Sequence[ModuleResult]) -> dict[str, Any]:
    """The report file's contents: this run's modules, and the last results of the others."""
    modules = dict((previous or {}).get("modules", {}))
    for result in results:
        modules[result.path] = result.as_dict()
    order = [target.path for target in TARGETS]
    ordered = {path: modules[path] for path in sorted(modules, key=lambda p: (order.index(p) if p in order
                                                                                 else len(order), p))}
    return {"target_rate": TARGET_RATE, "modules": ordered}


def select_targets(module: str | None, targets: Sequence[Target] = TARGETS) -> list[Target]:
    if not module:
        return list(targets)
    wanted_path = module.strip().removeprefix("./")
    chosen = [target for target in targets if target.path == wanted_path]
    if not chosen:
        raise ConfigError(f"{module!r} is not one of the modules `invoke mutants` knows: "
                          f"{', '.join(target.path for target in targets)}. Add it to TARGETS in "
                          "tether/mutation.py with the tests that exercise it.")
    return chosen


# --- running mutmut ------------------------------------------------------------------------------------------

_PROGRESS = re.compile(r"(\d+)/(\d+)\s+\S+\s+(\d+)")
_SKIPPED_ENTRIES = {".git", ".venv", ".runtime", ".tools", ".pulumi", "mutants", "__pycache__", ".mypy_cache",
                    ".ruff_cache", ".pytest_cache", "dumps"}


def project_files(root: Path) -> list[Path]:
    """The project's files as a fresh clone would have them (plus uncommitted and new ones), relative to root."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, check=False)
    if listed.returncode == 0:
        names = [name for name in listed.stdout.decode().split("\0") if name]
        return [Path(name) for name in names if (root / name).is_file()]
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not _SKIPPED_ENTRIES & set(relative.parts):
            found.append(relative)
    return found


def copy_project(root: Path, destination: Path) -> list[str]:
    """Copy the project's files into ``destination``; returns the top-level entries copied."""
    top: set[str] = set()
    for relative in project_files(root):
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative, target)
        top.add(relative.parts[0])
    return sorted(top)


def mutmut_program() -> Path:
    program = Path(sys.executable).parent / "mutmut"
    if not program.is_file():
        raise TetherError("mutmut is not installed in this environment: run `./dev --bootstrap` (it installs the dev "
                          "extras, mutmut included) and try again.")
    return program


def processes_under(directory: Path) -> list[int]:
    """Processes whose command line names ``directory``: the test servers a killed mutant run left behind."""
    needle = str(directory).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def stop_processes_under(directory: Path, wait: float = 5.0) -> list[int]:
    """Stop what runs from ``directory`` (SIGQUIT: PostgreSQL's immediate shutdown), SIGKILL what stays."""
    pids = processes_under(directory)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and processes_under(directory):
        time.sleep(0.1)
    for pid in processes_under(directory):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


ProgressCallback = Callable[[str, int, int, int], None]  # (module, done, total, killed so far)


def _pump(stream: Any, log: Any, label: str, on_progress: ProgressCallback | None) -> None:
    """Copy mutmut's output to its log, reporting its "done/total killed" counter as it goes."""
    last: tuple[int, int, int] | None = None
    for chunk in iter(lambda: stream.read1(65536), b""):
        log.write(chunk)
        text = chunk.decode(errors="replace")
        matches = _PROGRESS.findall(text)
        if matches and on_progress:
            done, total, killed = (int(value) for value in matches[-1])
            if last is None or (done, total) != last[:2]:
                last = (done, total, killed)
                on_progress(label, done, total, killed)


def run_target(root: Path, target: Target, work_root: Path, *, jobs: int,
               on_progress: ProgressCallback | None = None) -> ModuleResult:
    """Mutate one module in a fresh copy of the project; the test servers it starts are all stopped after."""
    started = time.monotonic()
    work = work_root / target.slug
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    top = copy_project(root, work)
    pyproject = (root / "pyproject.toml").read_text()
    settings = mutmut_settings(base_settings(pyproject), target, top)
    (work / "pyproject.toml").write_text(replace_mutmut_section(pyproject, render_settings(settings)))
    # The test servers' directories go in a directory of this run's own (world-traversable: the servers run as
    # an unprivileged user), so that what a timed-out mutant left running can be found and stopped.
    scratch = Path(tempfile.mkdtemp(prefix="tether-mutants-"))
    scratch.chmod(0o755)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTEST_", "MUTANT_")) and key != "CI"}
    env.update(TMPDIR=str(scratch), PYTHONDONTWRITEBYTECODE="1")
    argv = [str(mutmut_program()), "run", "--max-children", str(jobs), *mutant_patterns(target)]
    log_path = work / "mutmut.log"
    try:
        with log_path.open("wb") as log, subprocess.Popen(argv, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as child:
            pump = threading.Thread(target=_pump, args=(child.stdout, log, target.path, on_progress), daemon=True)
            pump.start()
            try:
                code = child.wait()
            except BaseException:
                child.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=10)
                child.kill()
                raise
            finally:
                pump.join(timeout=10)
    finally:
        stop_processes_under(scratch)
        shutil.rmtree(scratch, ignore_errors=True)
    if code != 0:
        tail = log_path.read_bytes()[-1500:].decode(errors="replace").replace("\r", "\n")
        raise TetherError(f"mutmut failed on {target.path} (exit code {code}); the end of {log_path}:\n{tail}")
    mutants = read_mutants(work / "mutants", target)
    return ModuleResult(target.path, list(target.functions), list(target.tests), mutants,
                        round(time.monotonic() - started, 1),
                        dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


def read_report(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run(root: Path, targets: Sequence[Target], work_root: Path, *, jobs: int,
        on_progress: ProgressCallback | None = None,
        on_done: Callable[[ModuleResult], None] | None = None) -> tuple[list[ModuleResult], dict[str, Any]]:
    """Mutate each target in turn; the report file is updated after each module, so an interrupted run keeps
    what it finished."""
    work_root.mkdir(parents=True, exist_ok=True)
    report_path = work_root / "report.json"
    results: list[ModuleResult] = []
    report: dict[str, Any] = read_report(report_path) or {}
    for target in targets:
        result = run_target(root, target, work_root, jobs=jobs, on_progress=on_progress)
        results.append(result)
        report = merge_report(report, [result])
        report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        if on_done:
            on_done(result)
    return results, report
