"""A re-sync of the same schema with the same rules reviews only what it copies: nothing when nothing changed,
the changed tables otherwise (a column that started to hold e-mails stops it before a row moves)."""

from __future__ import annotations

import pytest

from tether.errors import ConfigError
from tether.sync.anonymization import Anonymization
from tether.sync.engine import sync

from .conftest import execute, table_digest


def test_an_unchanged_resync_skips_the_review_a_changed_table_gets_it(sync_servers, sync_options, monkeypatch):
    source = sync_servers.source_copy()
    dest = sync_servers.dest()
    options = sync_options()
    reviewed: list[list[str]] = []
    enforce = Anonymization.enforce

    def recording(self, snapshot, address, snapshot_id, catalog, plan):
        reviewed.append(sorted(copy.name for copy in plan.copies))
        return enforce(self, snapshot, address, snapshot_id, catalog, plan)

    monkeypatch.setattr(Anonymization, "enforce", recording)
    sync(source, dest, options)
    assert len(reviewed) == 1 and "app.people" in reviewed[0]  # a first sync reviews every table

    assert sync(source, dest, options).mode == "unchanged"
    assert len(reviewed) == 1  # nothing copied, nothing to review

    execute(source, "INSERT INTO app.log_lines (line) VALUES ('a line')")
    assert sync(source, dest, options).mode == "incremental"
    assert reviewed[-1] == ["app.log_lines"]

    # Content that turned personal without a schema change: the review of the changed table stops the sync.
    before = table_digest(dest, "app.log_lines")
    execute(source, "UPDATE app.log_lines SET line = 'jeanne.dupont' || length(line) || '@orange.fr'")
    with pytest.raises(ConfigError, match=r"app\.log_lines\.line"):
        sync(source, dest, options)
    assert table_digest(dest, "app.log_lines") == before
