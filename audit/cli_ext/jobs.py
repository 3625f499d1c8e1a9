"""CLI commands for the job queue: ``worker`` and ``jobs list|show|cancel|retry|download`` (the ``--background``
path every long command shares is ``audit.cli_ext.common.submit_background``)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from audit.cli_ext.common import CliError, emit, shell_operator


def cmd_worker(args: argparse.Namespace) -> int:
    from audit.services.jobs.worker import Worker
    from storage.db import migrate

    executor = args.executor or os.environ.get("AUDIT_EXECUTOR", "local")
    if executor not in ("local", "ray"):
        raise CliError(f"--executor (or AUDIT_EXECUTOR) must be local or ray, got {executor!r}")
    if args.ray_address and executor != "ray":
        raise CliError("--ray-address needs --executor ray")
    migrate()
    worker = Worker(executor=executor, ray_address=args.ray_address, poll_s=args.poll)
    if args.lease:
        worker.lease_s = args.lease

    first: list[float] = []

    def stop(signum: int, _frame: Any) -> None:
        # Asked again: stop now (the job's lease expires and another worker resumes it). A second signal
        # within a second is the same request (Ctrl-C reaches the whole process group, then `make run`
        # sends SIGTERM), not a second press.
        if first and time.monotonic() - first[0] > 1.0:
            raise KeyboardInterrupt
        if not first:
            first.append(time.monotonic())
            emit(f"worker {worker.worker_id}: stopping at the next batch boundary (again to stop now)",
                 file=sys.stderr, flush=True)
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    emit(f"worker {worker.worker_id} ({executor}) waiting for jobs", file=sys.stderr, flush=True)
    ran = worker.run(once=args.once)
    emit(f"worker {worker.worker_id} stopped after {ran} job(s)", file=sys.stderr, flush=True)
    return 0


def _print_job(job: Any) -> None:
    line = (f"{job.id:>5}  {job.kind:<16} {job.status:<9} {job.progress:>5.0%}  {job.executor:<5} "
            f"{job.subject:<28} {job.submitted_by:<16} {(job.created_at or '')[:19]}")
    emit(line.rstrip())
    if job.error:
        emit(f"       error: {job.error}")
    elif job.message and job.status == "running":
        emit(f"       {job.message}")


def cmd_jobs(args: argparse.Namespace) -> int:
    from audit.services.analyses.reports.records import job_report
    from audit.services.jobs import queue as J
    from storage.db import migrate

    migrate()
    actor = shell_operator()
    if args.jobs_cmd == "list":
        rows = J.list_jobs(limit=args.limit, statuses=[args.status] if args.status else None, actor=actor)
        if args.json:
            emit(json.dumps([j.to_json() for j in rows], indent=2, default=str))
        elif not rows:
            emit("no jobs")
        for j in rows if not args.json else []:
            _print_job(j)
        return 0
    if args.jobs_cmd == "show":
        job = J.get_job(args.id, actor=actor)
        if args.json:
            emit(json.dumps(job.to_json(), indent=2, default=str))
        else:
            _print_job(job)
            emit(f"       parameters: {json.dumps(job.parameters, default=str)}")
            if job.result:
                emit(f"       result: {json.dumps(job.result, default=str)}")
        return 0
    if args.jobs_cmd == "cancel":
        job = J.cancel_job(args.id, actor=actor)
        emit(f"job {job.id}: {job.status if job.status == 'cancelled' else 'cancel requested'}")
        return 0
    if args.jobs_cmd == "retry":
        job = J.retry_job(args.id, actor=actor)
        emit(json.dumps({"job": job.id}))
        return 0
    if args.jobs_cmd == "download":
        out = Path(args.out)
        if out.suffix.lower() != ".pdf":
            raise CliError(f"--out must name a .pdf file, got {out}")
        if not out.parent.exists():
            raise CliError(f"the folder {out.parent} does not exist")
        _, data = job_report(args.id, actor=actor)
        out.write_bytes(data)
        import hashlib

        emit(f"{hashlib.sha256(data).hexdigest()}  {out}")
        return 0
    raise CliError(f"unknown jobs command {args.jobs_cmd!r}")


def add_background_flag(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--background", action="store_true",
                    help='queue the work as a job for `python -m audit worker` and print {"job": ID}')


def add_commands(sub: Any) -> None:
    sp = sub.add_parser("worker", help="claim and run queued jobs (audits that outlive the browser tab)")
    sp.add_argument("--executor", choices=["local", "ray"], help="where samples are computed (default: "
                    "AUDIT_EXECUTOR or local); ray shards reference-set explanations over a Ray cluster")
    sp.add_argument("--ray-address", help="an existing Ray cluster (default: start a local one)")
    sp.add_argument("--once", action="store_true", help="run the queued jobs, then exit when none is left")
    sp.add_argument("--poll", type=float, default=1.0, help="seconds between looks at an empty queue (1)")
    sp.add_argument("--lease", type=float, help="lease in seconds (default AUDIT_JOB_LEASE_S or 30)")
    sp.set_defaults(fn=cmd_worker)

    sp = sub.add_parser("jobs", help="list, show, cancel, retry jobs; download a finished report")
    js = sp.add_subparsers(dest="jobs_cmd", required=True)
    a = js.add_parser("list")
    a.add_argument("--status", choices=["queued", "running", "done", "failed", "cancelled"])
    a.add_argument("--limit", type=int, default=50)
    a.add_argument("--json", action="store_true")
    a = js.add_parser("show")
    a.add_argument("id", type=int)
    a.add_argument("--json", action="store_true")
    a = js.add_parser("cancel", help="a queued job at once, a running one at its next batch boundary")
    a.add_argument("id", type=int)
    a = js.add_parser("retry", help="queue a failed or cancelled job again (stored results are reused)")
    a.add_argument("id", type=int)
    a = js.add_parser("download", help="write the PDF of a finished report or full-audit job")
    a.add_argument("id", type=int)
    a.add_argument("--out", required=True)
    sp.set_defaults(fn=cmd_jobs)
