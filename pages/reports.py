"""Reports: generate a version's PDF compliance report, list and download stored reports (hash verified),
and record the sign-off that approves or rejects the version."""

from __future__ import annotations

import streamlit as st

from audit.services.datasets import list_datasets
from audit.services.jobs import NO_WORKER_AFTER_S, NO_WORKER_HINT, list_jobs, submit_job
from audit.services.registry import input_kind, list_models
from audit.services.reports import list_reports, report_bytes, sign_report
from pages.ui import current_principal, literal, short_hash, show_error

STATUS_ICON = {"pass": "✅ pass", "fail": "❌ fail", "info": "ℹ️ info", "missing": "⚠️ missing"}

principal = current_principal()
st.title("Compliance reports")

families = list_models()
if not families:
    st.info("The registry is empty.")
    st.stop()
c1, c2 = st.columns(2)
fam = c1.selectbox("Model family", families, format_func=lambda f: f["family"])
ver = c2.selectbox("Version", fam["versions"], index=len(fam["versions"]) - 1,
                   format_func=lambda v: f"{v['version']} ({v['status']})")

with st.form("generate"):
    c1, c2 = st.columns([2, 1])
    author = c1.text_input("Author printed on the cover", value=principal.username)
    compute = c2.checkbox("Compute missing explanations, quality checks and drift", value=True)
    go = st.form_submit_button("Generate report", type="primary", disabled=not principal.can("report"))
if not principal.can("report"):
    st.caption("Your role may read and download reports; generating and signing them needs the auditor role.")
SUBJECT = f"{fam['family']}/{ver['version']}"


def submit(kind: str, params: dict) -> None:
    """Queue the work for the background worker; its progress shows below the form that started it."""
    try:
        job = submit_job(kind, params, actor=principal)
        st.session_state.setdefault("reports_page_jobs", []).append(job.id)
    except (ValueError, PermissionError) as exc:
        show_error(exc)


def version_jobs(kind: str) -> None:
    """This version's jobs of ``kind``: live while they run (anyone's), and how the ones started in this
    session ended. When one ends the page reruns, so its report appears in the list below."""
    mine = set(st.session_state.get("reports_page_jobs", []))
    jobs = [j for j in list_jobs(limit=50, kinds=[kind], actor=principal) if j.subject == SUBJECT]
    active = {j.id for j in jobs if j.active}
    key = f"reports_active:{kind}:{SUBJECT}"
    seen, st.session_state[key] = st.session_state.get(key), active
    if seen and seen - active:
        st.rerun()
    for j in jobs:
        if j.active:
            st.progress(min(1.0, j.progress), text=literal(f"Job #{j.id} ({j.label.lower()}, {j.submitted_by}) "
                                                            f"{j.status} · {j.progress:.0%} · {j.message}"[:140]))
        elif j.id in mine and j.status == "done":
            st.success(f"Job #{j.id} done: report {j.result.get('report_id')} stored (listed below).")
            if kind == "full_audit":
                st.table([{"section": k, "status": v} for k, v in (j.result.get("sections") or {}).items()])
                for step, reason in (j.result.get("skipped") or {}).items():
                    st.caption(f"Skipped {literal(step)}: {literal(reason)}")
        elif j.id in mine:
            st.error(f"Job #{j.id} {j.status}: {literal(j.error or j.message)}")
    if active:
        st.caption("Runs in the background worker: you can leave this page and come back (see also the Jobs page).")
    if any(j.waiting_s > NO_WORKER_AFTER_S for j in jobs):
        st.warning(NO_WORKER_HINT)


def live(kind: str) -> None:
    has_active = any(j.active and j.subject == SUBJECT for j in list_jobs(limit=50, kinds=[kind], actor=principal))
    st.fragment(run_every=2 if has_active else None)(version_jobs)(kind)


if go:
    submit("report", {"family": fam["family"], "version": ver["version"], "author": author.strip() or None,
                      "compute_missing": compute})
live("report")

kind = input_kind(fam.get("task"))
datasets = [d["name"] for d in list_datasets() if d["kind"] == kind and d["labels"]]
with st.expander("Run the full audit (every analysis the data allows, then the report)"):
    with st.form("full_audit"):
        c1, c2 = st.columns(2)
        ds_name = c1.selectbox("Reference set", datasets, key="fa_dataset")
        concepts_text = c2.text_input("Concepts to test (comma-separated, optional)", key="fa_concepts")
        run_all = st.form_submit_button("Run the full audit",
                                        disabled=not (principal.can("run") and principal.can("report")) or not datasets)
    if not datasets:
        st.caption(f"No labelled {kind} reference set is stored.")
    if run_all:
        submit("full_audit", {"family": fam["family"], "version": ver["version"], "dataset": ds_name,
                              "concepts": [c.strip() for c in concepts_text.split(",") if c.strip()],
                              "author": author.strip() or None})
    live("full_audit")

try:
    reports = list_reports(family=fam["family"], version=ver["version"])
except ValueError as exc:
    show_error(exc)
    st.stop()
st.subheader(f"Reports for {literal(fam['family'])} {literal(ver['version'])}")
if not reports:
    st.info("No report has been generated for this version yet.")
    st.stop()
version_signed = next((r for r in reports if r["signoff"]), None)
if version_signed:
    so = version_signed["signoff"]
    st.markdown(f"**Decision:** {so['decision']} by {literal(so['signed_by'])} on {so['signed_at'][:19]} UTC "
                f"(report {version_signed['id']}): {literal(so['reason'])}")

for r in reports:
    title = (f"Report {r['id']} · {r['created_at'][:19]} · {r['pages'] or '?'} pages · "
             f"{'signed: ' + r['signoff']['decision'] if r['signoff'] else 'not signed'}")
    with st.expander(title, expanded=r is reports[0]):
        st.markdown(f"SHA-256 `{r['sha256']}` · generated by {literal(r['created_by'])} · "
                    f"author {literal(r['author']) or '—'}")
        if r["findings"]:
            st.dataframe([{"area": f["area"], "check": f["check"], "result": STATUS_ICON.get(f["status"], f["status"]),
                           "detail": f["detail"]} for f in r["findings"]], hide_index=True, use_container_width=True)
        try:
            filename, data = report_bytes(r["id"], actor=principal)
            st.download_button("Download PDF", data, file_name=filename, mime="application/pdf",
                               key=f"dl-{r['id']}")
            st.caption(f"File hash verified against the stored record ({short_hash(r['sha256'])}…).")
        except (ValueError, PermissionError, OSError, RuntimeError) as exc:
            st.error(f"The stored file cannot be served: {literal(exc)}")
        if r["signoff"]:
            so = r["signoff"]
            st.info(f"Signed ({so['decision']}) by {literal(so['signed_by'])} at {so['signed_at'][:19]} UTC: "
                    f"{literal(so['reason'])}. A signed report is immutable.")
        elif version_signed:
            st.caption("This version already has a recorded decision; a new decision needs a new version.")
        elif not principal.can("sign"):
            st.caption("Signing off needs the sign permission (auditors and admins).")
        elif r["created_by"] == principal.username:
            st.caption("You generated this report, so another user with the sign permission signs it (four-eyes).")
        else:
            with st.form(f"sign-{r['id']}"):
                decision = st.radio("Decision", ["approved", "rejected"], horizontal=True)
                reason = st.text_area("Reason (recorded with your name and the time)")
                signed = st.form_submit_button("Sign off")
            if signed:
                try:
                    out = sign_report(r["id"], decision=decision, reason=reason, actor=principal)
                    st.success(f"{literal(out['family'])} {literal(out['version'])} is now {out['status']}.")
                    st.rerun()
                except (ValueError, PermissionError) as exc:
                    show_error(exc)
