"""The db.dump / db.restore / db.dumps tasks: flags, config defaults, JSON output and refusals."""

from __future__ import annotations

import json

import pytest
from dumps_support import marker, table_contents
from invoke import Config, Context
from invoke.exceptions import Exit

from tether.dump_manifest import manifest_path, sha256_of, write_manifest
from tether.tasks import dumps as dump_tasks


def _flags(task):
    return {argument.names[0]: argument for argument in task.get_arguments()}


def test_flags_read_like_the_documentation():
    dump_flags = _flags(dump_tasks.dump)
    assert {"db", "format", "jobs", "schema-only", "data-only", "exclude-table-data", "keep", "json"} <= set(dump_flags)
    assert dump_flags["exclude-table-data"].kind is list
    restore_flags = _flags(dump_tasks.restore)
    assert restore_flags["file"].positional and {"db", "jobs", "yes", "json"} <= set(restore_flags)
    assert set(_flags(dump_tasks.dumps)) == {"json"}


def test_dump_and_restore_tasks_with_json(sample_db, target_db, dumps_path, capsys):
    dump_tasks.dump(Context(), db=sample_db.url(), format_="directory", jobs="2",
                    exclude_table_data=["public.tickets"], keep="1", json_=True)
    made = json.loads(capsys.readouterr().out)
    assert made["database"] == sample_db.database  # a URL's dumps are filed under its database name
    assert made["options"] == {"format": "directory", "jobs": 2, "schema_only": False, "data_only": False,
                               "exclude_table_data": ["public.tickets"]}
    assert sample_db.password not in json.dumps(made)

    dump_tasks.restore(Context(), made["file"], db=target_db.url(), json_=True)
    restored = json.loads(capsys.readouterr().out)
    assert restored["database"] == target_db.database and restored["tables"] == len(made["row_estimates"])
    assert table_contents(target_db)["public.tickets"] == []

    dump_tasks.dumps(Context(), json_=True)
    listing = json.loads(capsys.readouterr().out)
    assert [(entry["name"], entry["verified"], entry["kind"]) for entry in listing] == [
        (made["file"], True, "postgres")]


def test_config_supplies_defaults(sample_db, dumps_path, capsys):
    config = Config(overrides={"dumps": {"db": sample_db.url(), "format": "directory", "jobs": 2}})
    dump_tasks.dump(Context(config=config), json_=True)
    made = json.loads(capsys.readouterr().out)
    assert made["format"] == "directory" and made["options"]["jobs"] == 2
    assert (dumps_path / made["file"]).is_dir() and manifest_path(dumps_path / made["file"]).exists()


def test_human_summary_and_listing(sample_db, dumps_path, capsys):
    dump_tasks.dump(Context(), db=sample_db.url())
    summary = capsys.readouterr().out
    assert "Dumped" in summary and "tables, about" in summary and sample_db.password not in summary
    dump_tasks.dumps(Context())
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "db", "format", "size", "created", "(UTC)", "ok"]
    assert lines[1].startswith(f"{sample_db.database}-") and lines[1].endswith("yes")


@pytest.mark.parametrize(
    ("kwargs", "code", "phrase"),
    [
        ({"db": "prod"}, 3, "never writes to production"),
        ({"db": "postgresql://app:pw-secret-1@203.0.113.7:5432/app"}, 3, "--yes"),
        ({"db": "postgresql://app:pw-secret-1@127.0.0.1:1/app", "jobs": "many"}, 2, "whole number"),
    ],
    ids=["prod", "remote-in-ci", "bad-jobs"],
)
def test_restore_refusals_are_clean_exits(kwargs, code, phrase, dumps_path, monkeypatch):
    # A well-formed artifact is enough: every refusal here happens before pg_restore would read it.
    artifact = dumps_path / "dev-20250101T000000Z.dump"
    artifact.write_bytes(b"PGDMP placeholder")
    write_manifest(artifact, {"kind": "postgres", "sha256": sha256_of(artifact), "size_bytes": 17,
                              "pg_dump_version": "15.0"})
    monkeypatch.setenv("CI", "true")
    with pytest.raises(Exit) as stopped:
        dump_tasks.restore(Context(), artifact.name, **kwargs)
    assert stopped.value.code == code
    assert phrase in str(stopped.value.message) and "pw-secret-1" not in str(stopped.value.message)


def test_restore_of_a_missing_file_names_the_listing(target_db, dumps_path):
    with pytest.raises(Exit) as stopped:
        dump_tasks.restore(Context(), "nope.dump", db=target_db.url())
    assert "invoke db.dumps" in str(stopped.value.message)
    assert marker(target_db) == "original"
