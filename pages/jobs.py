"""Jobs: long work queued for the worker (reference sets, concept tests, bias audits, counterfactuals,
drift, reports, full audits), live while it runs; cancel or retry it, download a finished report."""

from __future__ import annotations

import streamlit as st

from audit.services.analyses.reports.records import job_report
from audit.services.jobs.queue import NO_WORKER_AFTER_S, NO_WORKER_HINT, JobView, can_steer, cancel_job, list_jobs, queue_counts, retry_job
from pages.ui import current_principal, literal

REFRESH_S = 2
STATUS_TEXT = {"queued": "⏳ queued", "running": "▶️ running", "done": "✅ done", "failed": "❌ failed",
               "cancelled": "⏹️ cancelled"}

principal = current_principal()
st.title("Jobs")
st.caption("Long work runs in the background worker (`python -m audit worker`, started by `make run`): leave "
           "this page or close the tab and the work goes on; come back to see it finished.")

statuses = st.multiselect("Show", list(STATUS_TEXT), default=[], format_func=STATUS_TEXT.get,
                          placeholder="all statuses")


def _act(fn, job_id: int) -> None:  # noqa: ANN001 - a service call from a button
    try:
        fn(job_id, actor=principal)
    except (ValueError, PermissionError) as exc:
        st.session_state["jobs_error"] = str(exc)


def job_card(job: JobView, *, key: str) -> None:
    """One job: what it is, its progress or outcome, and the actions the user's role allows."""
    with st.container(border=True):
        c1, c2, c3 = st.columns([3, 5, 2], vertical_alignment="center")
        c1.markdown(f"**#{job.id} · {literal(job.label)}**  \n{literal(job.subject)}")
        c1.caption(f"{literal(job.submitted_by)} · {(job.created_at or '')[:19].replace('T', ' ')} UTC · "
                   f"{literal(job.executor)}")
        if job.status in ("queued", "running"):
            text = literal(job.message[:100]) if job.status == "running" else "waiting for a worker"
            if job.waiting_s > NO_WORKER_AFTER_S:
                text = NO_WORKER_HINT
            c2.progress(min(1.0, job.progress),
                        text=f"{STATUS_TEXT[job.status]} · {job.progress:.0%} · {text}")
        elif job.status == "done":
            c2.success(f"done · {literal(_result_text(job))}")
        elif job.status == "failed":
            c2.error(literal(job.error or "failed"))
        else:
            c2.warning(literal(job.message or "cancelled"))
        steer = can_steer(principal, job)
        if job.status in ("queued", "running") and steer:
            c3.button("Cancel", key=f"{key}-cancel-{job.id}", on_click=_act, args=(cancel_job, job.id),
                      disabled=job.cancel_requested, help="a running job stops at its next batch boundary")
        if job.status in ("failed", "cancelled") and steer:
            c3.button("Retry", key=f"{key}-retry-{job.id}", on_click=_act, args=(retry_job, job.id),
                      help="queue it again; what it stored is reused")
        if job.status == "done" and (job.result or {}).get("report_id") is not None:
            c3.download_button("Download PDF", data=lambda: job_report(job.id, actor=principal)[1],
                               file_name=job.result.get("filename") or f"job-{job.id}-report.pdf",
                               mime="application/pdf", key=f"{key}-pdf-{job.id}", on_click="ignore")


def _result_text(job: JobView) -> str:
    r = job.result or {}
    if "report_id" in r:
        return f"report {r['report_id']} stored (SHA-256 {str(r.get('sha256') or r.get('report_sha256'))[:12]}…)"
    if "samples" in r:
        return f"{r['samples']} samples: {r['computed']} maps computed, {r['reused']} reused"
    if "result_id" in r:
        return f"result {r['result_id']} stored" + (" (drift flagged)" if r.get("flagged") else "")
    return "done"


def active_jobs() -> None:
    """Queued and running jobs, refreshed every few seconds; when one ends the whole page reruns."""
    counts = queue_counts()
    cols = st.columns(len(STATUS_TEXT))
    for col, (status, label) in zip(cols, STATUS_TEXT.items()):
        col.metric(label, counts.get(status, 0))
    active = list_jobs(limit=100, statuses=["queued", "running"], actor=principal)
    ids = [j.id for j in active]
    seen = st.session_state.get("jobs_active_ids")
    st.session_state["jobs_active_ids"] = ids
    if seen is not None and set(seen) - set(ids):
        st.rerun()  # a job ended: show it among the finished ones
    if statuses and not set(statuses) & {"queued", "running"}:
        return
    for job in active:
        job_card(job, key="active")


error = st.session_state.pop("jobs_error", None)
if error:
    st.error(literal(error))
st.fragment(run_every=REFRESH_S)(active_jobs)()

final = [s for s in statuses if s in ("done", "failed", "cancelled")] if statuses else ["done", "failed", "cancelled"]
if final:
    st.subheader("Finished")
    finished = list_jobs(limit=100, statuses=final, actor=principal)
    if not finished:
        st.info("No finished jobs yet.")
    for job in finished:
        job_card(job, key="finished")
