"""The issue's replay on the demo: the 120 loan notes written to a CSV with their label names and imported as a
new user would give the bias audit the numbers of the demo's own set (accuracy 0.875 on version 1, the same
worst group), not the numbers of their sorted positions. And a database stored before label names existed is
migrated: its samples get the names their positions stood for."""

from __future__ import annotations

import csv

import pytest

pytestmark = pytest.mark.slow


def test_the_loan_notes_imported_by_name_give_the_demo_s_own_bias_numbers(in_demo, tmp_path):
    from audit.services.core.datasets import import_text_dataset, load_text_samples
    from audit.services.analyses.fairness.service import run_bias_audit

    own = load_text_samples("loan-notes-reference")
    path = tmp_path / "notes.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label", "gender"])
        for t, y, g in zip(own.texts, own.labels, own.groups):
            w.writerow([t, own.label_names[y], g["gender"]])
    name = f"notes-by-name-{tmp_path.name}"[:100]
    import_text_dataset(name, path, group_columns=["gender"])
    a = run_bias_audit("loan-notes-minilm", "1", dataset="loan-notes-reference", attributes=["gender"], n_boot=0)
    b = run_bias_audit("loan-notes-minilm", "1", dataset=name, attributes=["gender"], n_boot=0)
    assert a.overall["accuracy"] == pytest.approx(0.875, abs=0.05)
    assert b.overall == a.overall and b.worst_group == a.worst_group
    assert [(g.group, g.rates) for g in b.by_group] == [(g.group, g.rates) for g in a.by_group]


def test_a_database_from_before_label_names_is_migrated(tmp_path):
    """Migration 0009 on a database at 0008 whose set lists its names in its own order."""
    import json
    import os

    from alembic import command
    from sqlalchemy import create_engine, text

    from storage.db import alembic_config, migrate

    home = tmp_path / "home"
    before = os.environ.get("AUDIT_HOME")
    os.environ["AUDIT_HOME"] = str(home)
    try:
        home.mkdir()
        cfg = alembic_config()
        command.upgrade(cfg, "0008")
        engine = create_engine(f"sqlite:///{home / 'audit.db'}")
        with engine.begin() as c:
            c.execute(text("INSERT INTO datasets (id, name, kind, description, content_sha256, labels, created_at) "
                           "VALUES (1, 'old', 'text', '', 'x', :labels, '2026-01-01')"),
                      {"labels": json.dumps(["approve", "decline"])})
            for i, y in enumerate([1, 0, None]):
                c.execute(text("INSERT INTO samples (dataset_id, sample_key, content_sha256, label, groups, text) "
                               "VALUES (1, :k, :h, :y, '{}', 't')"), {"k": f"old-{i}", "h": f"h{i}", "y": y})
        migrate()
        with engine.begin() as c:
            rows = c.execute(text("SELECT label, label_name FROM samples ORDER BY id")).fetchall()
        assert [tuple(r) for r in rows] == [(1, "decline"), (0, "approve"), (None, None)]
    finally:
        if before is None:
            os.environ.pop("AUDIT_HOME", None)
        else:
            os.environ["AUDIT_HOME"] = before
