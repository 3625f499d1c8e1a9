"""The one cache of loaded model versions, shared by every service (and every app session).

A cached handle is shared: temporary changes to its module (capture hooks, attention switches) are made
under ``handle.lock``."""

from __future__ import annotations

from functools import lru_cache

from audit.models.handle import ModelHandle
from audit.services.core.registry import get_version, load_handle


@lru_cache(maxsize=6)
def cached_handle(database: str, family: str, version: str, sha256: str) -> ModelHandle:
    """Loaded models are reused across requests. The key holds the database too: the same weights can be
    registered elsewhere with another input spec or target layer."""
    return load_handle(family, version)


def handle_for(family: str, version: str) -> ModelHandle:
    from storage.db import database_url

    info = get_version(family, version)
    return cached_handle(database_url(), family, version, info["sha256"])
