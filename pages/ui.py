"""Shared page helpers: the signed-in user, cached service calls and small display pieces.

Pages import streamlit and service functions only; nothing here touches torch or the database directly.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from audit.services.auth import Principal

def current_principal() -> Principal:
    """The signed-in user; stops the page when nobody is signed in. The router (streamlit_app.py) resolves the
    server-side session on every script run, so an expired or revoked session never reaches a page."""
    principal = st.session_state.get("principal")
    if principal is None:
        st.warning("Please sign in.")
        st.stop()
    return principal


def short_hash(sha: str | None, n: int = 12) -> str:
    return (sha or "")[:n]


def version_label(v: dict[str, Any]) -> str:
    return f"{v['version']} · {v['status']} · {short_hash(v['sha256'])}"


def show_error(exc: BaseException) -> None:
    st.error(f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc))


def pick_version(task: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Family and version selectors (newest version preselected); stops the page when none fits."""
    from audit.services.registry import list_models

    families = [f for f in list_models() if task is None or f["task"] == task]
    if not families:
        kind = {"image-classification": "image ", "text-classification": "text "}.get(task or "", "")
        st.info(f"No {kind}model is registered yet.")
        st.stop()
    c1, c2 = st.columns(2)
    fam = c1.selectbox("Model family", families, format_func=lambda f: f["family"] if task else
                       f"{f['family']} ({f['task']})")
    ver = c2.selectbox("Version", fam["versions"], index=len(fam["versions"]) - 1,
                       format_func=lambda v: f"{v['version']} ({v['status']})")
    return fam, ver


def keep_result(name: str, result: Any, fam: dict[str, Any], ver: dict[str, Any]) -> None:
    """Remember a page's result for the version it belongs to (see :func:`kept_result`)."""
    st.session_state[name] = ((fam["family"], ver["version"]), result)


def kept_result(name: str, fam: dict[str, Any], ver: dict[str, Any]) -> Any:
    """The result :func:`keep_result` remembered, only while the same family and version are chosen:
    after switching versions a page must not show the previous version's numbers under the new name."""
    entry = st.session_state.get(name)
    if not isinstance(entry, tuple) or len(entry) != 2 or entry[0] != (fam["family"], ver["version"]):
        return None
    return entry[1]
