"""Subset specs as text: parsing, the rules file's subset: section, the flags' precedence, and the task wiring."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import ConfigError
from tether.sync.subset_spec import (
    DEFAULT_WHOLE_BELOW,
    Root,
    SubsetFlags,
    SubsetSpec,
    parse_root,
    parse_size,
    resolve_spec,
    spec_from_section,
)

from .test_tasks import LOCAL, calls  # noqa: F401  (calls is a fixture)


def run(*argv: str, exit: bool = False) -> None:
    """The task as tasks.py declares it, with the subset's configuration key."""
    from invoke import Collection, Program

    from tether.tasks import sync as sync_tasks

    namespace = Collection()
    namespace.add_task(sync_tasks.sync_prod)
    namespace.configure({"sync": {"spare": None, "snapshot": None, "subset_whole_below": None}})
    Program(namespace=namespace).run(["invoke", *argv], exit=exit)


@pytest.mark.parametrize(("text", "expected"), [
    ("app.profiles:10%", Root("app.profiles", "percent", 10.0)),
    ("app.profiles: 0.5 %", Root("app.profiles", "percent", 0.5)),
    ("app.profiles:100%", Root("app.profiles", "percent", 100.0)),
    ("app.profiles:1000", Root("app.profiles", "rows", 1000)),
    ("app.*:5%", Root("app.*", "percent", 5.0)),
    ("profiles:5", Root("profiles", "rows", 5)),
    ("app.profiles:where=created_at > now() - interval '90 days'",
     Root("app.profiles", "where", "created_at > now() - interval '90 days'")),
    ("app.profiles:WHERE=a = 'x:y'", Root("app.profiles", "where", "a = 'x:y'")),
    ('"Mixed Schema"."Odd:Table":3%', Root("Mixed Schema.Odd:Table", "percent", 3.0, exact=True)),
    ('"we""ird".t:2', Root('we"ird.t', "rows", 2, exact=True)),
], ids=["percent", "fraction", "all", "rows", "glob", "bare-name", "where", "where-colon", "quoted", "quote-in-name"])
def test_specs_parse(text, expected):
    assert parse_root(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("app.profiles", "no ':'"),
    ("app.profiles:0%", "above 0"),
    ("app.profiles:101%", "at most 100"),
    ("app.profiles:0.00001%", "smallest sample"),
    ("app.profiles:0", "at least 1"),
    ("app.profiles:-5", "not '-5'"),
    ("app.profiles:ten", "not 'ten'"),
    ("app.profiles:where=", "needs a condition"),
    ("a.b.c:5%", "schema.table"),
    (".b:5%", "schema.table"),
    ('"open.t:5%', "unclosed"),
    ("   ", "empty"),
], ids=["no-colon", "zero", "over", "too-small", "zero-rows", "negative", "word", "empty-where", "three-parts",
        "no-schema", "unclosed", "blank"])
def test_bad_specs_say_why(text, message):
    with pytest.raises(ValueError, match=message):
        parse_root(text)


def test_percentages_become_thresholds():
    assert parse_root("t.x:5%").threshold == 50_000
    assert parse_root("t.x:0.0001%").threshold == 1
    assert parse_root("t.x:100%").threshold == 1_000_000


@pytest.mark.parametrize(("value", "expected"), [
    (0, 0), (4096, 4096), ("1MB", 1024**2), ("512kB", 512 * 1024), ("2 GB", 2 * 1024**3), ("1.5mb", 1572864),
    ("10", 10)])
def test_sizes(value, expected):
    assert parse_size(value, "x") == expected


@pytest.mark.parametrize("value", [-1, "big", "1 parsec", True, "1MB2"])
def test_bad_sizes(value):
    with pytest.raises(ConfigError, match="x must"):
        parse_size(value, "x")


def test_section_forms_and_digest():
    spec = spec_from_section({"roots": ["app.a:5%", {"table": "app.b", "where": "x > 1"},
                                        {"table": "app.c", "rows": 10}, {"table": "app.d", "percent": 2.5}],
                              "children": "app.e, app.f", "depth": 2, "seed": 7, "whole_below": "2MB"}, "f.yaml")
    assert spec is not None
    assert [root.describe() for root in spec.roots] == ["app.a:5%", "app.b:where=x > 1", "app.c:10", "app.d:2.5%"]
    assert spec.children == ("app.e", "app.f") and spec.depth == 2 and spec.seed == "7"
    assert spec.whole_below == 2 * 1024**2
    reordered = SubsetSpec(tuple(reversed(spec.roots)), ("app.f", "app.e"), 2, "7", 2 * 1024**2)
    assert reordered.digest() == spec.digest()
    for change in ({"seed": "8"}, {"depth": 3}, {"whole_below": 1}, {"children": ("app.e",)}):
        other = SubsetSpec(**{**{"roots": spec.roots, "children": spec.children, "depth": 2, "seed": "7",
                                 "whole_below": 2 * 1024**2}, **change})  # type: ignore[arg-type]
        assert other.digest() != spec.digest(), change
    assert spec_from_section(None, "f.yaml") is None


@pytest.mark.parametrize(("section", "message"), [
    ({"roots": []}, "at least one spec"),
    ({"roots": "app.a"}, "no ':'"),
    ({"roots": ["app.a:5%"], "depth": -1}, "0 to 20"),
    ({"roots": ["app.a:5%"], "depth": "2"}, "0 to 20"),
    ({"roots": ["app.a:5%"], "children": [1]}, "table globs"),
    ({"roots": ["app.a:5%"], "seed": ""}, "non-empty"),
    ({"roots": ["app.a:5%"], "whole_below": "lots"}, "whole_below"),
    ({"roots": ["app.a:5%"], "sample": 1}, "unknown key"),
    ({"roots": [{"table": "app.a", "percent": "5"}]}, "neither a spec"),
    (["app.a:5%"], "must be a mapping"),
], ids=["no-roots", "bad-root", "negative-depth", "text-depth", "bad-children", "empty-seed", "bad-size",
        "unknown-key", "mapping-type", "list"])
def test_bad_sections_are_one_clear_error(section, message):
    with pytest.raises(ConfigError, match=message):
        spec_from_section(section, "rules.yaml")


def test_flags_override_the_rules_file(tmp_path: Path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("tables: {}\nsubset:\n  roots: [app.a:5%]\n  children: [app.b]\n  seed: team\n")
    from_file = resolve_spec(SubsetFlags(), rules)
    assert from_file is not None and [root.describe() for root in from_file.roots] == ["app.a:5%"]
    assert from_file.children == ("app.b",) and from_file.seed == "team"
    assert from_file.whole_below == DEFAULT_WHOLE_BELOW
    assert resolve_spec(SubsetFlags(whole_below="4kB"), rules).whole_below == 4096  # type: ignore[union-attr]
    flags = resolve_spec(SubsetFlags(("app.c:where=a, b",), children=("app.d",), depth=3, seed="mine"), rules)
    assert flags is not None
    assert [root.describe() for root in flags.roots] == ["app.c:where=a, b"]  # not split on the comma
    assert (flags.children, flags.depth, flags.seed) == (("app.d",), 3, "mine")
    assert resolve_spec(SubsetFlags(off=True), rules) is None
    rules.write_text("tables: {}\nsubset:\n  roots: [app.a:5%]\n  whole_below: 0\n")
    assert resolve_spec(SubsetFlags(whole_below="4kB"), rules).whole_below == 0  # type: ignore[union-attr]
    assert resolve_spec(SubsetFlags(), tmp_path / "missing.yaml") is None


@pytest.mark.parametrize(("flags", "message"), [
    (SubsetFlags(("a.b:5%",), off=True), "contradict"),
    (SubsetFlags(depth=2), "--subset-depth only mean"),
    (SubsetFlags(("a.b:5%",), seed="  "), "must not be empty"),
    (SubsetFlags(("a.b:5%",), depth=99), "0 to 20"),
    (SubsetFlags(("a.b:5%", "a.c:lots")), "after the table"),
], ids=["both", "depth-alone", "blank-seed", "deep", "bad-spec"])
def test_bad_flags(flags, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        resolve_spec(flags, tmp_path / "none.yaml")


def test_subset_flags_reach_the_sync(calls, tmp_path):  # noqa: F811
    rules = tmp_path / "rules.yaml"
    rules.write_text("tables: {}\n")
    run("sync-prod", "--dest", LOCAL, "--rules", str(rules), "--subset", "app.a:5%", "--subset",
        "app.b:where=x IN (1, 2)", "--subset-children", "app.c,app.d", "--subset-children", "app.e",
        "--subset-depth", "2", "--subset-seed", "s1")
    spec = calls["options"].subset
    assert [root.describe() for root in spec.roots] == ["app.a:5%", "app.b:where=x IN (1, 2)"]
    assert spec.children == ("app.c", "app.d", "app.e") and spec.depth == 2 and spec.seed == "s1"
    run("sync-prod", "--dest", LOCAL, "--rules", str(rules))
    assert calls["options"].subset is None
    with pytest.raises(SystemExit):
        run("sync-prod", "--dest", LOCAL, "--subset", "app.a:5%", "--subset-depth", "deep", exit=True)


def test_the_rules_file_section_reaches_the_sync(calls, tmp_path, monkeypatch):  # noqa: F811
    rules = tmp_path / "rules.yaml"
    rules.write_text("tables: {}\nsubset:\n  roots: [app.a:5%]\n")
    monkeypatch.setenv("INVOKE_SYNC_SUBSET_WHOLE_BELOW", "64kB")
    run("sync-prod", "--dest", LOCAL, "--rules", str(rules))
    assert calls["options"].subset.whole_below == 64 * 1024
    run("sync-prod", "--dest", LOCAL, "--rules", str(rules), "--no-subset")
    assert calls["options"].subset is None


def test_subset_plan_without_a_subset_is_an_error(calls, tmp_path, capsys):  # noqa: F811
    rules = tmp_path / "rules.yaml"
    rules.write_text("tables: {}\n")
    with pytest.raises(SystemExit) as exit_:
        run("sync-prod", "--rules", str(rules), "--subset-plan", exit=True)
    assert exit_.value.code != 0
    assert "--subset-plan shows a subset's plan" in capsys.readouterr().err
    assert "options" not in calls
