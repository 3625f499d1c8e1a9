"""Run the storage tests on SQLite and, where AUDIT_TEST_PG_URL names a server, on PostgreSQL too."""

from __future__ import annotations

import os

import pytest

from tests.conftest import empty_postgres

PG_URL = os.environ.get("AUDIT_TEST_PG_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, audit_home):
    """A migrated, empty database of each backend; yields the backend name."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    if not PG_URL:
        pytest.skip("AUDIT_TEST_PG_URL is not set (.ci/run starts a PostgreSQL server and sets it)")
    with empty_postgres(PG_URL):
        yield "postgresql"
