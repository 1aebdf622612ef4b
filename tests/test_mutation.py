"""`invoke mutants`: its tables stay true to the code, its settings and report are right, and it runs mutmut."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tether import mutation
from tether.errors import ConfigError
from tether.mutation import (
    EQUIVALENT,
    TARGETS,
    Equivalent,
    ModuleResult,
    Mutant,
    Target,
    function_diff,
    function_of,
    mangled,
    sql_case_only,
    status_of,
)

ROOT = Path(__file__).resolve().parents[1]


def _functions(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {f"{node.name}.{item.name}" for item in node.body
                      if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)}
    return names


@pytest.mark.parametrize("target", TARGETS, ids=lambda target: target.path)
def test_every_target_names_real_code_and_tests(target):
    assert (ROOT / target.path).is_file()
    assert set(target.functions) <= _functions(target.path)
    for test in target.tests:
        assert (ROOT / test.split("::")[0]).is_file(), test
    assert target.why


def test_every_equivalent_mutant_names_a_target_and_a_function():
    paths = {target.path for target in TARGETS}
    for entry in EQUIVALENT:
        assert entry.path in paths and entry.function in _functions(entry.path), entry
        assert entry.mutated.strip() == entry.mutated and entry.reason


@pytest.mark.parametrize(("function", "key"), [("swap_in", "x_swap_in"), ("_check_counts", "x__check_counts"),
                                               ("TocEntry.kind", "x\u01c1TocEntry\u01c1kind")])
def test_mutmut_names(function, key):
    assert mangled(function) == key
    assert function_of(f"tether.mod.{key}__mutmut_12") == function


def test_mutant_patterns_and_selection():
    whole = Target("tether/swap.py", ("tests/test_swap.py",), "why")
    some = Target("tether/sync/engine.py", ("t",), "why", functions=("_verify", "A.b"))
    assert mutation.mutant_patterns(whole) == []
    assert mutation.mutant_patterns(some) == ["tether.sync.engine.x__verify__mutmut_*",
                                              "tether.sync.engine.x\u01c1A\u01c1b__mutmut_*"]
    assert mutation.wanted(some, "tether.sync.engine.x__verify__mutmut_3")
    assert not mutation.wanted(some, "tether.sync.engine.x__verify_more__mutmut_3")
    assert not mutation.wanted(some, "tether.sync.engines.x__verify__mutmut_3")
    assert mutation.wanted(whole, "tether.swap.x_anything__mutmut_1")
    assert some.slug == "tether-sync-engine" and some.label == "tether/sync/engine.py (_verify, A.b)"


def test_settings_narrow_the_projects_to_one_module():
    pyproject = (ROOT / "pyproject.toml").read_text()
    base = mutation.base_settings(pyproject)
    assert base["process_isolation"] == "forkserver" and base["source_paths"] == ["tether", "infra"]
    target = TARGETS[0]
    settings = mutation.mutmut_settings(base, target, ["infra", "sql", "tasks.py", "tests", "tether"])
    assert settings["only_mutate"] == [target.path]
    assert settings["pytest_add_cli_args_test_selection"] == list(target.tests)
    assert settings["also_copy"] == ["sql", "tasks.py", "tests"]
    rewritten = mutation.replace_mutmut_section(pyproject, mutation.render_settings(settings))
    parsed = tomllib.loads(rewritten)
    assert parsed["tool"]["mutmut"] == settings
    original = tomllib.loads(pyproject)
    del original["tool"]["mutmut"], parsed["tool"]["mutmut"]
    assert parsed == original  # every other table kept as it was


def test_replace_mutmut_section_without_one():
    text = '[project]\nname = "x"\n\n[tool.other]\na = 1\n'
    out = mutation.replace_mutmut_section(text, mutation.render_settings({"b": ["é", 'q"'], "c": True, "d": 1.5}))
    assert tomllib.loads(out) == {"project": {"name": "x"}, "tool": {"other": {"a": 1},
                                                                     "mutmut": {"b": ["é", 'q"'], "c": True, "d": 1.5}}}
    with pytest.raises(TypeError):
        mutation.render_settings({"x": {"a": 1}})


@pytest.mark.parametrize(("removed", "added", "only_case"), [
    (['conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))'],
     ['conn.execute("select 1 from pg_database where datname = %s", (name,))'], True),
    (['sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")'], ['sql.SQL("drop database if exists {} with (force)")'],
     True),
    (['x = "SELECT \'Ab\'"'], ['x = "select \'ab\'"'], False),  # a quoted literal inside: its case matters
    (['x = "SELECT \\"Odd\\" FROM t"'], ['x = "select \\"odd\\" from t"'], False),  # a quoted identifier
    (['retired = scratch_name(target, "old")'], ['retired = scratch_name(target, "OLD")'], False),  # not SQL
    (['" (SELECT oid FROM pg_database WHERE datname = %s),"'], ['" (select oid from pg_database where datname = %s),"'],
     True),  # a statement's continuation line
    (['x = "SELECT 1"'], ['x = "SELECT 2"'], False),
    (['x = "SELECT 1"'], [], False),
    ([], [], False),
    # Quoted parts the mutant leaves as they were: only keywords changed.
    (['"SELECT pid, backend_type = \'client backend\' FROM pg_stat_activity"'],
     ['"select pid, backend_type = \'client backend\' from pg_stat_activity"'], True),
    (['"SELECT pid, backend_type = \'client backend\' FROM pg_stat_activity"'],
     ['"SELECT PID, BACKEND_TYPE = \'CLIENT BACKEND\' FROM PG_STAT_ACTIVITY"'], False),
    (['x = "SELECT \\"Odd\\" FROM t"'], ['x = "select \\"Odd\\" from t"'], True),
    (["x = 'SELECT \\'Ab\\' FROM t'"], ["x = 'select \\'ab\\' from t'"], False),
], ids=["select", "drop", "literal", "identifier", "not-sql", "continuation", "not-case", "removed", "nothing",
        "literal-kept", "literal-changed", "identifier-kept", "escaped-literal-changed"])
def test_sql_case_only(removed, added, only_case):
    assert sql_case_only(removed, added) is only_case


def test_function_diff_ignores_the_name():
    original = "\n\ndef x_f__mutmut_orig(a):\n    b = a + 1\n    return b\n"
    mutant = "\n\ndef x_f__mutmut_3(a):\n    b = a - 1\n    return b\n"
    assert function_diff(original, mutant) == (["    b = a + 1"], ["    b = a - 1"])


@pytest.mark.parametrize(("code", "status"), [(1, "killed"), (3, "killed"), (0, "survived"), (33, "no tests"),
                                              (5, "no tests"), (-24, "timeout"), (36, "timeout"), (None, "not checked"),
                                              (77, "suspicious"),
                                              (255, "suspicious")])  # pytest could not select the tests: no verdict
def test_status_of(code, status):
    assert status_of(code) == status


def _result() -> ModuleResult:
    mutants = [Mutant(f"m.x_f__mutmut_{i}", "f", "killed") for i in range(17)]
    mutants += [Mutant("m.x_f__mutmut_20", "f", "timeout"),
                Mutant("m.x_f__mutmut_21", "f", "survived", ["    a = 1"], ["    a = 2"]),
                Mutant("m.x_f__mutmut_22", "f", "equivalent", ["    b = 1"], ["    b = 1.0"], "same number"),
                Mutant("m.x_f__mutmut_23", "f", "no tests")]
    return ModuleResult("tether/m.py", [], ["tests/t.py"], mutants, 12.5, "now")


def test_kill_rate_leaves_out_equivalent_mutants_only():
    result = _result()
    assert result.judged == 20 and result.kill_rate == pytest.approx(90.0)
    assert [mutant.name for mutant in result.survivors] == ["m.x_f__mutmut_21", "m.x_f__mutmut_23"]
    data = result.as_dict()
    assert (data["total"], data["killed"], data["timeout"], data["survived"], data["equivalent"]) == (21, 17, 1, 2, 1)
    again = ModuleResult.from_dict(data)
    assert (again.judged, again.kill_rate, len(again.survivors)) == (20, pytest.approx(90.0), 2)


def test_report_lines_show_the_table_survivors_and_reasons():
    lines = mutation.report_lines([_result()])
    assert lines[2] == "| `tether/m.py` | 21 | 18 | 2 | 1 | 90.0 % |"
    text = "\n".join(lines)
    assert "  m.x_f__mutmut_21 [survived]\n    - a = 1\n    + a = 2" in text
    assert "m.x_f__mutmut_22: b = 1.0  -- same number" in text
    assert text.endswith("Every module kills at least 90 % of its mutants.")
    low = _result()
    low.mutants[0].status = "survived"
    assert mutation.report_lines([low])[-1] == "Below the 90 % target: tether/m.py"


def test_merge_report_keeps_other_modules_in_target_order():
    previous = {"modules": {"infra/prod/rules.py": {"path": "infra/prod/rules.py"},
                            "tether/m.py": {"path": "old"}}}
    result = _result()
    result.path = TARGETS[0].path
    merged = mutation.merge_report(previous, [result])
    assert list(merged["modules"]) == [TARGETS[0].path, "infra/prod/rules.py", "tether/m.py"]
    assert merged["modules"][TARGETS[0].path]["kill_rate"] == 90.0


def test_equivalence_matches_the_mutated_code_exactly():
    target = Target("tether/x.py", (), "why")
    known = [Equivalent("tether/x.py", "f", "a = 2", "because")]
    assert mutation.equivalence(target, Mutant("n", "f", "survived", ["a = 1"], ["  a = 2"]), known) == "because"
    assert mutation.equivalence(target, Mutant("n", "g", "survived", ["a = 1"], ["a = 2"]), known) == ""
    assert mutation.equivalence(target, Mutant("n", "f", "survived", ["a = 1"], ["a = 3"]), known) == ""


def test_an_unknown_module_is_one_clear_error():
    assert mutation.select_targets(None) == list(TARGETS)
    assert mutation.select_targets("./tether/swap.py") == [TARGETS[0]]
    with pytest.raises(ConfigError, match=r"not one of the modules `invoke mutants` knows: tether/swap\.py"):
        mutation.select_targets("tether/nope.py")


def test_leftover_processes_of_a_run_are_stopped(tmp_path):
    marker = tmp_path / "run-dir"
    marker.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(marker)])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(tmp_path / "other")])
    try:
        assert mutation.processes_under(marker) == [child.pid]
        assert mutation.stop_processes_under(marker) == [child.pid]
        assert child.wait(timeout=5) != 0
        assert other.poll() is None
    finally:
        for process in (child, other):
            process.kill()
            process.wait()


@pytest.mark.slow
def test_mutmut_runs_on_a_small_target_and_its_results_are_read(tmp_path):
    """The real mutmut, on one small pure function and the table of cases that judges it."""
    target = Target("tether/swap.py", ("tests/test_swap_guards.py::test_parse_scratch_name",), "a smoke test",
                    functions=("parse_scratch_name",))
    progress: list[tuple[int, int]] = []
    result = mutation.run_target(ROOT, target, tmp_path, jobs=2,
                                 on_progress=lambda path, done, total, killed: progress.append((done, total)))
    assert len(result.mutants) >= 10 and all(mutant.function == "parse_scratch_name" for mutant in result.mutants)
    assert result.count("killed") >= len(result.mutants) - 2 and result.count("not checked") == 0
    assert all(mutant.added or mutant.removed for mutant in result.mutants if mutant.status == "survived")
    assert progress and all(total == progress[0][1] for _, total in progress)
    assert (tmp_path / "tether-swap" / "mutmut.log").is_file()
