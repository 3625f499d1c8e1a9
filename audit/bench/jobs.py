"""Benchmark: reference-set explanation throughput through the job worker's executors, and the queue's
overhead per job.

``python -m audit.bench jobs [--samples N] [--batch-size B] [--arch resnet18|small_cnn] [--jobs J]``: in a
temporary AUDIT_HOME, one registered model explained over N reference images with the local executor (1
and 2 torch threads) and the Ray executor on a local cluster of 1 and 2 CPUs (one single-threaded task per
CPU; "cold" includes starting the task processes and loading the model there, "warm" reuses them); each row
explains a fresh copy of the version, so nothing is served from the store. The queue rows
time submit + claim + finish of J jobs whose work is already stored (nothing to compute)."""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

METHODS = ["saliency", "gradcam", "integrated_gradients"]
OPTIONS = {"ig_steps": 16, "seed": 0}


def _setup(home: Path, arch: str, samples: int, copies: list[str]) -> None:
    from safetensors.torch import save_file

    from audit.services.core.datasets import add_image_dataset
    from audit.services.core.registry import ModelSource, register_version
    from storage.db import migrate

    os.environ["AUDIT_HOME"] = str(home)
    os.environ.pop("AUDIT_DB_URL", None)
    migrate()
    torch.manual_seed(0)
    if arch == "resnet18":
        from torchvision.models import resnet18

        module, kwargs, spec = resnet18(num_classes=10), {"num_classes": 10}, (3, 64, 64)
    else:
        from audit.models.zoo import SmallCNN

        module, kwargs, spec = SmallCNN(width=16), {"width": 16}, (1, 32, 32)
    weights = home / "weights.safetensors"
    save_file(module.state_dict(), str(weights))
    labels = [str(i) for i in range(10)]
    for family in copies:
        register_version(family=family, version="1", task="image-classification",
                         source=ModelSource("state_dict", weights, arch, kwargs), labels=labels,
                         input_spec={"channels": spec[0], "height": spec[1], "width": spec[2], "mean": [0.5],
                                     "std": [0.25]})
    g = torch.Generator().manual_seed(1)
    add_image_dataset("bench-ref", torch.rand(samples, spec[0], spec[1], spec[2], generator=g),
                      [i % 10 for i in range(samples)], [{} for _ in range(samples)], label_names=labels)


def _explain(family: str, batch_size: int, executor: Any) -> tuple[float, int]:
    from audit.services.analyses.explanations.service import explain_reference_set

    t0 = time.perf_counter()
    res = explain_reference_set(family, "1", "bench-ref", methods=METHODS, batch_size=batch_size,
                                options=dict(OPTIONS), executor=executor)
    return time.perf_counter() - t0, res.computed


def _queue_overhead(jobs: int) -> tuple[float, float]:
    """Seconds per job: (submit + claim + finish transitions alone, the same through a worker running
    the job's service on stored results)."""
    from audit.services.jobs import queue as J
    from audit.services.jobs.worker import Worker

    params = {"family": "local-1", "version": "1", "dataset": "bench-ref", "methods": METHODS, "limit": 1,
              "options": OPTIONS}
    t0 = time.perf_counter()
    for _ in range(jobs):
        job = J.submit_job("explain", params)
        claimed = J.claim_next(worker_id="bench", executor="local", lease_s=30)
        assert claimed is not None and claimed.id == job.id
        J.finish_job(job.id, worker_id="bench", status="done", result={}, progress=1.0)
    transitions = (time.perf_counter() - t0) / jobs
    for _ in range(jobs):
        J.submit_job("explain", params)
    t0 = time.perf_counter()
    ran = Worker(lease_s=30, poll_s=0.05).run(once=True)
    assert ran == jobs
    worker = (time.perf_counter() - t0) / jobs
    return transitions, worker


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m audit.bench jobs")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--arch", choices=["resnet18", "small_cnn"], default="resnet18")
    p.add_argument("--jobs", type=int, default=30, help="jobs timed for the queue overhead")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from audit.services.analyses.explanations.service import LocalExecutor
    from audit.services.jobs.ray_executor import RayExecutor, ray_available

    rows: list[tuple[str, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        # Copies of one version (same weights, same SHA-256): each row computes afresh, and a Ray task process
        # that loaded the model for one copy serves the next from its cache (the "warm" rows).
        copies = ["local-1", "local-2", "ray-1", "ray-2", "ray-1-warm", "ray-2-warm"]
        _setup(Path(tmp) / "home", args.arch, args.samples, copies)
        threads = torch.get_num_threads()
        for n in (1, 2):
            torch.set_num_threads(n)
            seconds, computed = _explain(f"local-{n}", args.batch_size, LocalExecutor())
            rows.append((f"local, {n} torch thread(s)", seconds, computed))
        torch.set_num_threads(threads)
        if ray_available():
            for n in (1, 2):
                ex = RayExecutor(num_cpus=n, task_threads=1)
                try:
                    seconds, computed = _explain(f"ray-{n}", args.batch_size, ex)
                    rows.append((f"ray, {n} worker(s) x 1 thread, cold", seconds, computed))
                    seconds, computed = _explain(f"ray-{n}-warm", args.batch_size, ex)
                    rows.append((f"ray, {n} worker(s) x 1 thread, warm", seconds, computed))
                finally:
                    ex.close()
        else:
            print("ray is not installed: the Ray rows are left out (pip install 'ray>=2.9')")
        transitions, worker = _queue_overhead(args.jobs)
    print(f"reference-set explanations: {args.arch}, {args.samples} images, batch {args.batch_size}, "
          f"methods {', '.join(METHODS)} (IG {OPTIONS['ig_steps']} steps); {os.cpu_count()} CPUs on this machine")
    print(f"{'executor':<36} {'seconds':>8} {'images/s':>9} {'maps':>6}")
    for name, seconds, computed in rows:
        print(f"{name:<36} {seconds:>8.2f} {args.samples / seconds:>9.2f} {computed:>6}")
    print(f"queue overhead per job ({args.jobs} jobs, SQLite): submit+claim+finish {transitions * 1000:.1f} ms; "
          f"through a worker, job already stored {worker * 1000:.1f} ms")
    return 0
