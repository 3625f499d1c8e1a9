"""Shared fixtures: an empty AUDIT_HOME per test, and one demo registry built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _use_home(path: Path) -> None:
    os.environ["AUDIT_HOME"] = str(path)
    os.environ.pop("AUDIT_DB_URL", None)
    os.environ.setdefault("AUDIT_DEVICE", "auto")
    os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture()
def audit_home(tmp_path: Path):
    """A fresh, migrated AUDIT_HOME for one test."""
    from storage.db import migrate

    before = os.environ.get("AUDIT_HOME")
    home = tmp_path / "home"
    _use_home(home)
    migrate()
    yield home
    if before is None:
        os.environ.pop("AUDIT_HOME", None)
    else:
        os.environ["AUDIT_HOME"] = before


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory):
    """The embedded demo built once into its own AUDIT_HOME (the slow part of the suite)."""
    from audit.demo.build import build_demo
    from storage.db import migrate

    home = tmp_path_factory.mktemp("demo-home")
    _use_home(home)
    migrate()
    summary = build_demo(seed=0)
    (home / "demo_seconds.txt").write_text(f"{summary.seconds:.1f}\n")
    return home


@pytest.fixture()
def in_demo(demo_home: Path):
    """Point the services at the demo registry for one test."""
    before = os.environ.get("AUDIT_HOME")
    _use_home(demo_home)
    yield demo_home
    if before is not None:
        os.environ["AUDIT_HOME"] = before
