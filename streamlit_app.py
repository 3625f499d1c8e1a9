"""Entry point of the audit workbench: the sign-in gate and the router over the pages, nothing else.

Every script run resolves the server-side session (audit/services/governance/sessions.py) from this tab's cookie value or
the browser's HttpOnly cookie, so a reload or a new tab stays signed in, and a sign-out, expiry, password
reset or disabled user ends access on the next interaction in every tab. Serve it with `streamlit run
serve.py`, whose routes set and clear that cookie; single sign-on (st.login) is offered when
.streamlit/secrets.toml has an [auth] section.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import streamlit as st

from audit.services.governance import sessions
from audit.services.governance.auth import AuthError, authenticate
from audit.services.governance.principals import Principal
from audit.services.governance.identities import UnmappedIdentity, sign_in_with_identity
from pages.ui import literal
from audit.services.governance.throttle import client_address

st.set_page_config(page_title="Model audit workbench", page_icon=":material/search:", layout="wide")


def _route(path: str) -> str:
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}{path}" if base else path


def _browser_post(path: str, header: str, value: str) -> None:
    """A same-origin POST from the page (serve.py answers it); the response may set or delete the cookie."""
    call = json.dumps([_route(path), {"method": "POST", "credentials": "same-origin", "cache": "no-store",
                                      "headers": {header: value}}])
    st.html(f"<script>fetch(...{call});</script>", unsafe_allow_javascript=True, width="content")


def _sso_providers() -> list[str | None] | None:
    """The OIDC providers of .streamlit/secrets.toml ([auth] alone: one unnamed provider); None without one."""
    try:
        auth = st.secrets.get("auth")
    except FileNotFoundError:  # no secrets file: single sign-on is not configured
        return None
    if not auth:
        return None
    named = [name for name, value in auth.items() if isinstance(value, dict) or hasattr(value, "keys")]
    return named or [None]


def _start_session(principal: Principal, cookie: str) -> None:
    st.session_state["principal"] = principal
    st.session_state["session_cookie"] = cookie
    st.session_state["cookie_handoff"] = sessions.issue_handoff(cookie)
    st.session_state.pop("session_note", None)


def _browser_cookie() -> str | None:
    """The HttpOnly session cookie the browser sent with this tab's connection. On HTTPS only its __Host- form
    is read (serve.py sets that one there), so a cookie planted over plain HTTP by another service on the same
    host name is never taken for a session. serve.py decides HTTPS by the same rule (TLS, or an https Origin)."""
    origin = (st.context.headers.get("Origin") or "").lower()
    https = origin.startswith("https://") or (st.context.url or "").lower().startswith("https://")
    return st.context.cookies.get(sessions.cookie_name(https=https))


def _resolve() -> Principal | None:
    """The user this tab is signed in as now (the role read afresh), or None."""
    cookie = st.session_state.get("session_cookie") or _browser_cookie()
    principal = sessions.resolve_session(cookie) if cookie else None
    if principal is None:
        if st.session_state.pop("principal", None) is not None:
            st.session_state["session_note"] = ("Your session ended (signed out in another tab, expired or revoked "
                                                "by an administrator). Please sign in again.")
        st.session_state.pop("session_cookie", None)
        return None
    st.session_state["principal"] = principal
    st.session_state["session_cookie"] = cookie
    return principal


def _sso_sign_in() -> None:
    """Turn a provider identity (st.user, after st.login) into a local session, once per identity."""
    claims: dict[str, Any] = st.user.to_dict()
    key = f"{claims.get('iss')}|{claims.get('sub')}"
    if st.session_state.get("sso_refused", ("",))[0] == key:
        return  # refused already: do not log a failed sign-in on every rerun
    try:
        principal, cookie = sign_in_with_identity(claims)
    except UnmappedIdentity as exc:
        st.session_state["sso_refused"] = (key, str(exc))
        return
    _start_session(principal, cookie)


def login_page() -> None:
    st.title("Model audit workbench")
    if note := st.session_state.get("session_note"):
        st.info(note)
    with st.form("login"):
        username = st.text_input("Username")
        password = st.text_input("Password", type="password")
        ok = st.form_submit_button("Sign in")
    if ok:
        try:
            # The address the server saw: failed sign-ins throttle this client, never the account for everyone.
            principal = authenticate(username, password, client=client_address(st.context.ip_address,
                                                                                 st.context.headers))
            _start_session(principal, sessions.create_session(principal))
            st.rerun()
        except AuthError as exc:
            st.error(literal(exc))
    providers = _sso_providers()
    if providers is None:
        return
    if importlib.util.find_spec("authlib") is None:
        st.caption("Single sign-on is configured but Authlib is not installed (pip install 'streamlit[auth]').")
        return
    if refused := st.session_state.get("sso_refused"):
        st.error(literal(refused[1]))
        st.button("Sign out of the identity provider", on_click=st.logout)
        return
    for provider in providers:
        label = f"Sign in with {literal(provider)}" if provider else "Sign in with single sign-on"
        st.button(label, key=f"sso-{provider}", on_click=st.login, args=(provider,) if provider else ())


def sign_out() -> None:
    sessions.revoke(st.session_state.pop("session_cookie", None))
    st.session_state.pop("principal", None)
    st.session_state.pop("cookie_handoff", None)
    st.session_state["clear_cookie"] = True


signing_out = st.session_state.pop("clear_cookie", False)
sso = _sso_providers() is not None
provider_signed_in = sso and bool(st.user.get("is_logged_in"))  # st.login's identity cookie
principal = _resolve()
if principal is None and provider_signed_in and not signing_out:
    _sso_sign_in()
    principal = _resolve()
if principal is None:
    if signing_out:
        _browser_post("/api/signout", "X-Audit-Signout", "1")  # the session is already revoked; tidy the browser
        if provider_signed_in:
            st.logout()  # else the provider's identity would sign this tab straight back in
    nav = st.navigation([st.Page(login_page, title="Sign in", icon=":material/login:")])
else:
    with st.sidebar:
        st.caption(f"Signed in as **{literal(principal.username)}** ({principal.role})")
        st.button("Sign out", on_click=sign_out)
        code = st.session_state.get("cookie_handoff")
        if code and sessions.handoff_pending(code):
            _browser_post("/api/session", "X-Audit-Handoff", code)  # a reload or a new tab stays signed in
        elif code:
            st.session_state.pop("cookie_handoff", None)
    nav = st.navigation({
        "Models": [st.Page("pages/registry.py", title="Registry", icon=":material/inventory_2:", default=True),
                   st.Page("pages/datasets.py", title="Datasets", icon=":material/dataset:")],
        "Explain": [st.Page("pages/explain.py", title="Explain", icon=":material/local_fire_department:"),
                    st.Page("pages/text.py", title="Text attributions", icon=":material/text_fields:"),
                    st.Page("pages/counterfactuals.py", title="Counterfactuals", icon=":material/compare_arrows:")],
        "Audit": [st.Page("pages/concepts.py", title="Concept tests", icon=":material/lightbulb:"),
                  st.Page("pages/bias.py", title="Bias audit", icon=":material/balance:"),
                  st.Page("pages/drift.py", title="Drift", icon=":material/trending_up:")],
        "Reports": [st.Page("pages/reports.py", title="Reports", icon=":material/description:")],
        "Jobs": [st.Page("pages/jobs.py", title="Jobs", icon=":material/pending_actions:")],
        "Governance": [st.Page("pages/admin.py", title="Users and audit trail", icon=":material/shield:")],
    })
nav.run()
