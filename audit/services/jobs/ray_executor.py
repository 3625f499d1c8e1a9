"""The Ray executor of the job worker: batches of a reference-set explanation run as Ray tasks.

Each task loads the model version from the artifact store by its SHA-256 (every read hash-checked, once
per Ray worker process), computes the attributions of its batch with the same engine call as the local
executor, and returns plain arrays. Only the job worker writes to the database: it stores each batch as
its task completes, in order. Batches keep the local executor's composition, so maps are bitwise equal
where the engine is deterministic. Ray is optional; without it this module says how to install it."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np
import torch

from audit.services.analyses.explanations.service import BatchWork, ExplainError
from audit.services.jobs.kinds import JobError

log = logging.getLogger(__name__)

RAY_MISSING = ("the Ray executor needs the ray package, which is not installed: pip install 'ray>=2.9' "
               "(see README, Jobs and workers), or run the worker with --executor local")
LOCAL_CPUS = 2  # a local cluster's CPUs unless AUDIT_RAY_CPUS says otherwise
OBJECT_STORE_BYTES = 256 * 1024**2  # a local cluster's shared memory: maps of a few batches at a time
_INFO_FIELDS = ("method", "family", "time_s", "cpu_s", "forward_calls", "forward_samples", "backward_calls",
                "backward_samples", "shared_pass", "peak_mem_bytes", "est_peak_mem_bytes", "notes")


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


class ShardResult:
    """What the worker stores from one task: the engine result's fields the explain service reads."""

    def __init__(self, out: dict[str, Any]) -> None:
        from audit.attribution import MethodInfo

        # Ray hands back read-only views of its object store; the worker owns copies.
        self.maps = {m: torch.from_numpy(np.array(a)) for m, a in out["maps"].items()}
        self.probabilities = torch.from_numpy(np.array(out["probabilities"]))
        self.device = out["device"]
        self.skipped = dict(out["skipped"])
        self.info = {}
        for m, d in out["info"].items():
            delta = d.pop("completeness_delta", None)
            self.info[m] = MethodInfo(**d, completeness_delta=None if delta is None else torch.from_numpy(np.array(delta)))


class RayExecutor:
    """Runs batches as Ray tasks, keeping up to ``max_in_flight`` ahead of the one being stored."""

    name = "ray"

    def __init__(self, *, address: Optional[str] = None, num_cpus: Optional[int] = None,
                 max_in_flight: Optional[int] = None, task_threads: Optional[int] = None) -> None:
        try:
            import ray
        except ImportError:
            raise JobError(RAY_MISSING) from None
        self._ray = ray
        self._started_here = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                cpus = num_cpus or int(os.environ.get("AUDIT_RAY_CPUS", LOCAL_CPUS))
                # Ray's worker processes must import this package: a local cluster inherits PYTHONPATH.
                root = str(Path(__file__).resolve().parents[2])
                paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
                if root not in paths:
                    os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                         object_store_memory=OBJECT_STORE_BYTES)
                self._started_here = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.max_in_flight = max_in_flight or max(2, 2 * cpus)
        self.task_threads = task_threads or int(os.environ.get("AUDIT_RAY_TASK_THREADS", 1))
        self._task = ray.remote(num_cpus=1, max_retries=1)(compute_shard)

    def close(self) -> None:
        if self._started_here and self._ray.is_initialized():
            self._ray.shutdown()
        self._started_here = False

    def map(self, handle: Any, items: Iterable[tuple[Any, Optional[BatchWork]]]) -> Iterator[tuple[Any, Any]]:
        from audit.services.core.registry import model_record
        from storage.artifacts import ArtifactStore

        record = model_record(handle.family, handle.version)
        if record["sha256"] != handle.sha256:
            raise ExplainError(f"{handle.family} {handle.version}: the registry and the loaded model disagree")
        store_root = str(ArtifactStore().root)
        ray = self._ray
        pending: deque[tuple[Any, Any]] = deque()
        try:
            for tag, work in items:
                ref = None
                if work is not None:
                    ref = self._task.remote(record, store_root, work.x.detach().cpu().numpy(),
                                            work.targets.cpu().numpy(), list(work.methods), work.layer,
                                            _plain_options(work.options), self.task_threads)
                pending.append((tag, ref))
                while len(pending) > self.max_in_flight:
                    yield self._take(pending.popleft())
            while pending:
                yield self._take(pending.popleft())
        finally:
            # The consumer stopped early (cancel, error): the work still in flight is dropped, never stored.
            for _, ref in pending:
                if ref is not None:
                    ray.cancel(ref, force=True)

    def _take(self, item: tuple[Any, Any]) -> tuple[Any, Any]:
        tag, ref = item
        if ref is None:
            return tag, None
        try:
            return tag, ShardResult(self._ray.get(ref))
        except self._ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, (ValueError, TypeError)):
                raise ExplainError(str(cause).strip().splitlines()[0]) from None
            if isinstance(cause, Exception):
                raise cause from None
            raise


def _plain_options(options: dict[str, Any]) -> dict[str, Any]:
    """Engine options for a task: tensors travel as arrays (the task turns them back)."""
    return {k: ({"__array__": v.detach().cpu().numpy()} if isinstance(v, torch.Tensor) else v)
            for k, v in options.items() if k != "progress"}


# ------------------------------------------------------------------ inside a Ray task

_HANDLES: "OrderedDict[tuple[str, str], Any]" = OrderedDict()
_MAX_HANDLES = 4


def _handle(record: dict[str, Any], store_root: str) -> Any:
    """The task process's copy of the model, loaded once per (store, SHA-256), each read hash-checked."""
    from audit.services.core.registry import handle_from_record
    from storage.artifacts import ArtifactStore

    key = (store_root, record["sha256"])
    if key not in _HANDLES:
        cache = Path(store_root).parent / "cache" / "hf"
        _HANDLES[key] = handle_from_record(record, store=ArtifactStore(store_root), device="cpu", cache_root=cache)
        while len(_HANDLES) > _MAX_HANDLES:
            _HANDLES.popitem(last=False)
    _HANDLES.move_to_end(key)
    return _HANDLES[key]


def compute_shard(record: dict[str, Any], store_root: str, x: np.ndarray, targets: np.ndarray, methods: list[str],
                  layer: Optional[str], options: dict[str, Any], threads: int) -> dict[str, Any]:
    """One batch of attributions: the same engine call as the local executor, returned as arrays."""
    from audit.attribution import explain

    torch.set_num_threads(max(1, int(threads)))
    handle = _handle(record, store_root)
    opts = {k: (torch.from_numpy(v["__array__"]) if isinstance(v, dict) and "__array__" in v else v)
            for k, v in options.items()}
    res = explain(handle.module, torch.from_numpy(np.ascontiguousarray(x)).to(handle.device),
                  torch.from_numpy(np.ascontiguousarray(targets)).to(handle.device), methods, layer, **opts)
    info = {}
    for m, i in res.info.items():
        d = {f: getattr(i, f) for f in _INFO_FIELDS}
        d["notes"] = list(d["notes"])
        d["completeness_delta"] = None if i.completeness_delta is None else i.completeness_delta.detach().cpu().numpy()
        info[m] = d
    return {"maps": {m: t.detach().cpu().numpy() for m, t in res.maps.items()},
            "probabilities": res.probabilities.detach().cpu().numpy(), "device": str(res.device),
            "skipped": dict(res.skipped), "info": info}
