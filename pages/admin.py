"""Administration: users and roles, sign-in sessions, single sign-on identities, installation settings, and the
hash-chained audit trail with its exported head. Every action goes through a service that checks the role."""

from __future__ import annotations

import json

import streamlit as st

from audit.services.governance import auth, identities, sessions, settings
from audit.services.governance.audit_trail import export_csv, export_rows, log_head, verify_log
from pages.ui import current_principal, literal, show_error

principal = current_principal()
st.title("Users and audit trail")

tab_users, tab_sessions, tab_sso, tab_settings, tab_log = st.tabs(
    ["Users", "Sign-in sessions", "Single sign-on", "Settings", "Audit trail"])
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
                    st.success(f"User {literal(name.strip())} ({role}) created")
                except (ValueError, PermissionError) as exc:
                    show_error(exc)
        users = [u["username"] for u in auth.list_users(actor=principal)]
        c1, c2 = st.columns(2)
        who = c1.selectbox("User", users)
        if c2.button("Disable user") and who:
            try:
                auth.set_active(who, False, actor=principal)
                st.success(f"{literal(who)} disabled")
            except (ValueError, PermissionError) as exc:
                show_error(exc)

with tab_sessions:
    if not principal.can("manage_users"):
        st.info("Only administrators see and end sign-in sessions.")
    else:
        live = sessions.list_sessions(actor=principal)
        st.caption("Live sessions, newest first. Ending one signs that browser out on its next click or reload.")
        st.dataframe([{**r, "created_at": f"{r['created_at']:%Y-%m-%d %H:%M} UTC",
                       "expires_at": f"{r['expires_at']:%Y-%m-%d %H:%M} UTC"} for r in live],
                     hide_index=True, width="stretch")
        if live:
            c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
            sid = c1.selectbox("Session", [r["id"] for r in live],
                               format_func=lambda i: next(f"{r['id']} · {r['username']} · {r['via']}"
                                                          for r in live if r["id"] == i))
            if c2.button("End session", key="revoke-session"):
                try:
                    sessions.revoke_session_by_id(sid, actor=principal)
                    st.rerun()
                except (ValueError, PermissionError) as exc:
                    show_error(exc)

with tab_sso:
    if not principal.can("manage_users"):
        st.info("Only administrators map single sign-on identities.")
    else:
        st.caption("An identity from the OpenID Connect provider (.streamlit/secrets.toml, [auth]) signs in as the "
                   "local user it is mapped to, with that user's role. Unmapped identities get no access.")
        with st.form("map-identity"):
            c1, c2, c3 = st.columns([2, 1, 2])
            issuer = c1.text_input("Issuer (the 'iss' claim)", placeholder="https://accounts.example.org")
            claim = c2.selectbox("Match on", ["subject", "email"], help="The subject is stable; an e-mail address "
                                 "is accepted only when the provider says it is verified.")
            value = c3.text_input("Subject or e-mail")
            c1, _ = st.columns([1, 2])
            target = c1.selectbox("Local user", [u["username"] for u in auth.list_users(actor=principal)])
            if st.form_submit_button("Map identity"):
                try:
                    key = {"subject": value} if claim == "subject" else {"email": value}
                    row = identities.map_identity(issuer, target, actor=principal, **key)
                    st.success(f"{literal(row['claim'])}={literal(row['value'])} now signs in as {literal(row['username'])}")
                except (ValueError, PermissionError) as exc:
                    show_error(exc)
        mapped = identities.list_identities(actor=principal)
        st.dataframe(mapped, hide_index=True, width="stretch")
        if mapped:
            c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
            pick = c1.selectbox("Mapped identity", range(len(mapped)),
                                format_func=lambda i: f"{mapped[i]['issuer']} {mapped[i]['claim']}="
                                                      f"{mapped[i]['value']} -> {mapped[i]['username']}")
            if c2.button("Unmap", key="unmap-identity"):
                row = mapped[pick]
                key = {"subject": row["value"]} if row["claim"] == "sub" else {"email": row["value"]}
                try:
                    n = identities.unmap_identity(row["issuer"], actor=principal, **key)
                    st.success(f"Unmapped; {n} session(s) it had opened were ended.")
                    st.rerun()
                except (ValueError, PermissionError) as exc:
                    show_error(exc)

with tab_settings:
    if not principal.can("manage_users"):
        st.info("Only administrators change installation settings.")
    else:
        current = {r["key"]: r for r in settings.list_settings(actor=principal)}
        ts = current[settings.TORCHSCRIPT_UPLOADS]
        st.caption("Each change is written to the audit log with who changed it from what to what.")
        wanted = st.toggle("Accept TorchScript uploads from the browser", value=bool(ts["value"]),
                           help=ts["description"] + ". The command line may always register TorchScript.")
        if wanted != bool(ts["value"]):
            try:
                settings.set_setting(settings.TORCHSCRIPT_UPLOADS, wanted, actor=principal)
                st.rerun()
            except (ValueError, PermissionError) as exc:
                show_error(exc)
        ip = current[settings.IMPORT_PATH_UPLOADS]
        wanted_ip = st.toggle("Accept architectures named by import path from the browser", value=bool(ip["value"]),
                              help=ip["description"] + ". The command line may always register them.")
        if wanted_ip != bool(ip["value"]):
            try:
                settings.set_setting(settings.IMPORT_PATH_UPLOADS, wanted_ip, actor=principal)
                st.rerun()
            except (ValueError, PermissionError) as exc:
                show_error(exc)
        cp = current[settings.CHECKPOINT_EVERY]
        with st.form("checkpoint-interval"):
            every = st.number_input("Sign an audit-log checkpoint every N events", min_value=1, max_value=50,
                                    value=int(cp["value"]), step=1, help=cp["description"])
            if st.form_submit_button("Save interval"):
                try:
                    settings.set_setting(settings.CHECKPOINT_EVERY, int(every), actor=principal)
                    st.success(f"Checkpoint every {int(every)} events")
                except (ValueError, PermissionError) as exc:
                    show_error(exc)
        st.dataframe([{"key": r["key"], "value": str(r["value"]), "default": str(r["default"]),
                       "updated by": r["updated_by"], "updated at": r["updated_at"]}
                      for r in settings.list_settings(actor=principal)], hide_index=True, width="stretch")

with tab_log:
    if principal.can("manage_users"):
        # Deferred: the head (and its checkpoint) is taken when the button is clicked, not on every page run.
        st.download_button("Export the signed head (keep it off this server)",
                           lambda: json.dumps(log_head(actor=principal), sort_keys=True),
                           file_name="audit-log-head.json", mime="application/json",
                           help="python -m audit verify-log --anchor FILE later proves the log was neither cut nor "
                                "rewritten up to this head.")
    if principal.can("verify_log") and st.button("Verify the hash chain"):
        report = verify_log(actor=principal)
        if report.ok:
            st.success(f"Intact: {report.checked} entries verified")
        else:
            st.error(f"Tampered: {len(report.problems)} problem(s)")
            for p in report.problems:
                st.markdown(literal(p))
    if principal.can("read_trail"):
        # Cells a spreadsheet would run as formulas are shown (and exported) with a leading apostrophe.
        st.download_button("Download the newest 1000 entries (CSV)", lambda: export_csv(1000, actor=principal),
                           file_name="audit-trail.csv", mime="text/csv")
        st.dataframe(export_rows(200, actor=principal), hide_index=True, use_container_width=True)
    else:
        st.info("Only administrators read the audit trail.")
