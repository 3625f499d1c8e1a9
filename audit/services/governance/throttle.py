"""Sign-in throttling per client: failed attempts from one client (its address as the web server saw it) slow
down and then block that client, for one username or for all, without touching anyone else's sign-in.

State lives in the process (the Streamlit server is one process) and is keyed by database, so two installations
served by one process never share counters. A restart forgets it; the per-client window is short anyway.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

MAX_FAILED_LOGINS = 5  # per client and username, within WINDOW_S
MAX_CLIENT_FAILURES = 20  # per client, all usernames together, within WINDOW_S
WINDOW_S = 15 * 60.0
LOCKOUT_S = 15 * 60.0
LOGGED_FAILURES_PER_WINDOW = 10  # failed sign-ins written to the audit log per client and window
MAX_TRACKED = 10_000  # keys kept before old ones are pruned (a flood of made-up usernames stays bounded)
LOCAL_CLIENT = "local"
# Attempts without a client address (the command line, a browser on this machine, a reverse proxy whose
# forwarded address is not trusted) share one client: a 15-minute block there would let anyone block everyone,
# so that client is slowed instead, by a delay that doubles with each further failure, up to MAX_DELAY_S.
FIRST_DELAY_S = 5.0
MAX_DELAY_S = 60.0
TRUSTED_PROXY_ENV = "AUDIT_TRUSTED_PROXY"


@dataclass
class _Counter:
    failures: deque = field(default_factory=deque)  # monotonic times of recent failures
    blocked_until: float = 0.0  # wall-clock seconds (shown to the user as a time of day)
    logged: deque = field(default_factory=deque)  # monotonic times of failures written to the log
    quiet_noted: bool = False  # whether "further failures are not logged" was written this window


_lock = threading.Lock()
_counters: dict[tuple[str, ...], _Counter] = {}


def client_address(ip: Optional[str], headers: Optional[dict] = None) -> Optional[str]:
    """The client's address as the web server saw it; behind a reverse proxy (``AUDIT_TRUSTED_PROXY=1``) the
    address the proxy appended last to X-Forwarded-For. A browser cannot set that header past a proxy that
    appends, but could without one, so it is read only when the operator says a proxy is in front."""
    import os

    if os.environ.get(TRUSTED_PROXY_ENV, "").strip() in ("1", "true", "yes") and headers:
        forwarded = headers.get("X-Forwarded-For") or headers.get("x-forwarded-for") or ""
        last = forwarded.split(",")[-1].strip()
        if last:
            return last
    return ip


def client_key(client: Optional[str]) -> str:
    """A bounded, printable name for the client (its address); callers without one share LOCAL_CLIENT."""
    text = (client or "").strip()
    if not text:
        return LOCAL_CLIENT
    return "".join(ch if ch.isprintable() else "?" for ch in text[:64])


def _prune(now: float) -> None:
    if len(_counters) <= MAX_TRACKED:
        return
    wall = time.time()
    for key in [k for k, c in _counters.items()
                if (not c.failures or now - c.failures[-1] > WINDOW_S) and c.blocked_until <= wall]:
        del _counters[key]


def _counter(key: tuple[str, ...]) -> _Counter:
    c = _counters.get(key)
    if c is None:
        c = _counters[key] = _Counter()
    return c


def _drop_old(q: deque, now: float) -> None:
    while q and now - q[0] > WINDOW_S:
        q.popleft()


def blocked_until(database: str, client: str, username: str) -> Optional[float]:
    """Wall-clock time until which this client may not try this username (or any username), else None."""
    wall = time.time()
    with _lock:
        ends = [c.blocked_until for key in ((database, "pair", client, username), (database, "client", client))
                if (c := _counters.get(key)) is not None and c.blocked_until > wall]
    return max(ends) if ends else None


def record_failure(database: str, client: str, username: str) -> Optional[float]:
    """Count a failed attempt; returns the wall-clock end of the block it starts, if it starts one."""
    now, wall = time.monotonic(), time.time()
    with _lock:
        _prune(now)
        started = None
        for key, limit in (((database, "pair", client, username), MAX_FAILED_LOGINS),
                           ((database, "client", client), MAX_CLIENT_FAILURES)):
            c = _counter(key)
            _drop_old(c.failures, now)
            c.failures.append(now)
            if len(c.failures) < limit or c.blocked_until > wall:
                continue
            if client == LOCAL_CLIENT:  # slowed, not blocked: 5 s, 10 s, 20 s ... MAX_DELAY_S
                c.blocked_until = wall + min(FIRST_DELAY_S * 2.0 ** (len(c.failures) - limit), MAX_DELAY_S)
            else:
                c.blocked_until = wall + LOCKOUT_S
                c.failures.clear()
            started = max(started or 0.0, c.blocked_until)
        return started


def record_success(database: str, client: str, username: str) -> None:
    with _lock:
        _counters.pop((database, "pair", client, username), None)


def should_log(database: str, client: str) -> tuple[bool, bool]:
    """(log this failure, note once that further failures from this client are not logged this window)."""
    now = time.monotonic()
    with _lock:
        c = _counter((database, "log", client))
        _drop_old(c.logged, now)
        if not c.logged:
            c.quiet_noted = False
        if len(c.logged) < LOGGED_FAILURES_PER_WINDOW:
            c.logged.append(now)
            return True, False
        if not c.quiet_noted:
            c.quiet_noted = True
            return False, True
        return False, False


def reset() -> None:
    """Forget every counter (tests; an administrator's restart does the same)."""
    with _lock:
        _counters.clear()
