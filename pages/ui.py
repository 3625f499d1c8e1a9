"""Shared page helpers: the signed-in user, cached service calls and small display pieces.

Pages import streamlit and service functions only; nothing here touches torch or the database directly.
"""

from __future__ import annotations

import re
from typing import Any

import streamlit as st

from audit.services.governance.principals import Principal

# What turns plain text into Markdown in Streamlit's renderer (CommonMark, GFM, LaTeX, its :directives[...]):
# marks that act anywhere in a line, and list and heading-underline marks at the start of a line. A backslash
# before an ASCII punctuation mark makes it plain text.
_INLINE_MARKS = re.compile(r"[\\`*_~\[\]<>&!|$#]")
_LINE_START_MARKS = re.compile(r"^([ \t]*)(?:([-+=])|(\d+)([.)]))", re.MULTILINE)
# Bare links (http://..., www...., a@b.c) and :emoji:/:material/icon: shortcodes are found in the text after the
# Markdown is parsed, so a backslash does not stop them; an invisible word joiner inside the pattern does.
_WORD_JOINER = "\u2060"
_AUTO_MARKS = re.compile(r":(?=\S)|(?<=www)(?=\.)|(?=@)", re.IGNORECASE)


def literal(value: object) -> str:
    """Text from users or stored data (names, notes, reasons, samples, groups, messages) made safe for any
    element that renders Markdown (st.markdown, st.caption, st.info and its kin, headers, expander, metric and
    radio labels, progress text, image captions, st.table cells): it shows as typed and can never become an
    image the browser fetches, a link, emphasis, a list, HTML, an icon or LaTeX."""
    text = _INLINE_MARKS.sub(lambda m: "\\" + m.group(0), "" if value is None else str(value))
    text = _LINE_START_MARKS.sub(lambda m: m.group(1) + (f"\\{m.group(2)}" if m.group(2) else
                                                         f"{m.group(3)}\\{m.group(4)}"), text)
    return _AUTO_MARKS.sub(lambda m: m.group(0) + _WORD_JOINER, text)


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
    # Error messages quote what the user typed or stored (names, values): shown as text.
    st.error(literal(f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)))


def pick_version(task: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Family and version selectors (newest version preselected); stops the page when none fits."""
    from audit.services.core.registry import list_models

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
