"""Entry point of the audit workbench: sign-in gate and the router over the pages, nothing else."""

from __future__ import annotations

import time

import streamlit as st

from audit.services.auth import AuthError, authenticate

st.set_page_config(page_title="Model audit workbench", page_icon=":material/search:", layout="wide")


def login_page() -> None:
    st.title("Model audit workbench")
    with st.form("login"):
        username = st.text_input("Username")
        password = st.text_input("Password", type="password")
        ok = st.form_submit_button("Sign in")
    if ok:
        try:
            st.session_state["principal"] = authenticate(username, password)
            st.session_state["login_at"] = time.time()
            st.rerun()
        except AuthError as exc:
            st.error(str(exc))


def logout() -> None:
    st.session_state.pop("principal", None)
    st.rerun()


principal = st.session_state.get("principal")
if principal is None:
    nav = st.navigation([st.Page(login_page, title="Sign in", icon=":material/login:")])
else:
    with st.sidebar:
        st.caption(f"Signed in as **{principal.username}** ({principal.role})")
        st.button("Sign out", on_click=logout)
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
        "Governance": [st.Page("pages/admin.py", title="Users and audit trail", icon=":material/shield:")],
    })
nav.run()
