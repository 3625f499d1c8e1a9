"""Administration: users and roles, and the hash-chained audit trail."""

from __future__ import annotations

import streamlit as st

from audit.services import auth
from audit.services.audit_trail import recent_entries, verify_log
from pages.ui import current_principal, show_error

principal = current_principal()
st.title("Users and audit trail")

tab_users, tab_log = st.tabs(["Users", "Audit trail"])
with tab_users:
    if not principal.can("manage_users"):
        st.info("Only administrators manage users.")
    else:
        st.dataframe(auth.list_users(actor=principal), hide_index=True, use_container_width=True)
        with st.form("add-user"):
            c1, c2, c3 = st.columns(3)
            name = c1.text_input("New user")
            role = c2.selectbox("Role", ["viewer", "auditor", "admin"])
            password = c3.text_input("Initial password", type="password")
            if st.form_submit_button("Add user"):
                try:
                    auth.create_user(name, password, role, actor=principal)
                    st.success(f"User {name} ({role}) created")
                except (ValueError, PermissionError) as exc:
                    show_error(exc)
        users = [u["username"] for u in auth.list_users(actor=principal)]
        c1, c2 = st.columns(2)
        who = c1.selectbox("User", users)
        if c2.button("Disable user") and who:
            try:
                auth.set_active(who, False, actor=principal)
                st.success(f"{who} disabled")
            except (ValueError, PermissionError) as exc:
                show_error(exc)

with tab_log:
    if st.button("Verify the hash chain"):
        report = verify_log()
        if report.ok:
            st.success(f"Intact: {report.checked} entries verified")
        else:
            st.error(f"Tampered: {len(report.problems)} problem(s)")
            for p in report.problems:
                st.write(p)
    st.dataframe(recent_entries(200), hide_index=True, use_container_width=True)
