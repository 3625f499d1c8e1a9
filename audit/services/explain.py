"""Explain use cases: attribute one image or a reference set, store every map with its provenance,
return stored results for repeated requests, and re-verify a stored map by recomputing it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Protocol, Sequence

import numpy as np
import torch

from audit.env import library_versions
from audit.images import decode_image, image_to_tensor
from audit.models.handle import ModelHandle
from audit.services.auth import SYSTEM, Principal, require
from audit.services.core import digest, tracked_run
from audit.services.datasets import load_image_samples, sample_index
from audit.services.handles import cached_handle, handle_for  # noqa: F401 - re-exported for callers
from audit.services.registry import RegistryError
from storage import auditlog
from storage.artifacts import ArtifactIntegrityError, ArtifactStore, sha256_bytes
from storage.db import transaction
from storage.orm import Explanation
from storage.repositories import ExplanationRepository, ModelRepository

log = logging.getLogger(__name__)
Progress = Optional[Callable[[float, str], None]]

REVERIFY_RTOL = 1e-3


class ExplainError(ValueError):
    """An explanation request that cannot be served; the message says why."""


@dataclass
class StoredMap:
    method: str
    target: int
    attribution: np.ndarray
    explanation_id: int
    cached: bool
    duration_s: float
    parameters: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    engine: Optional[dict[str, Any]] = None  # what the map was computed on (engine_record); None: not recorded


@dataclass
class ImageExplanation:
    family: str
    version: str
    sample_sha256: str
    sample_key: Optional[str]
    image: np.ndarray  # [C, H, W] in [0, 1], the model's input before normalisation
    probabilities: np.ndarray
    labels: list[str]
    target: int
    true_label: Optional[int]
    maps: dict[str, StoredMap]
    costs: dict[str, dict[str, Any]]
    layer: Optional[str]
    skipped: dict[str, str] = field(default_factory=dict)  # method -> why it does not apply to this model


@dataclass
class BatchExplanation:
    """What ``explain_methods`` returns: per sample, method -> stored map; costs of what was computed;
    and the methods that do not apply to the model, with the reason (nothing stored for them)."""

    maps: list[dict[str, StoredMap]]
    costs: dict[str, dict[str, Any]]
    skipped: dict[str, str] = field(default_factory=dict)


def params_key(method: str, layer: Optional[str], options: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The stored parameters and the cache key of one method's map: every option the method declares as
    changing its result (its default where not given), the layer where the class declares it reads one
    (``needs_layer``; None otherwise), the method name. Any other argument leaves the key alone.
    A tensor baseline is stored as an artifact and keyed by its content."""
    from audit.attribution import method_spec, result_option_defaults

    params: dict[str, Any] = {}
    for name, default in result_option_defaults(method).items():
        value = options.get(name, default)
        if isinstance(value, torch.Tensor):
            arr = value.detach().float().cpu().numpy()
            value = {"artifact": ArtifactStore().put_array(arr), "shape": list(arr.shape)}
        params[name] = value
    params["layer"] = layer if method_spec(method).needs_layer else None
    params["method"] = method
    return params, digest(params)


def engine_options(params: dict[str, Any]) -> dict[str, Any]:
    """Stored parameters back into engine options (tensor baselines read from the artifact store)."""
    opts = {k: v for k, v in params.items() if k not in ("layer", "method")}
    for k, v in list(opts.items()):
        if isinstance(v, dict) and "artifact" in v:
            opts[k] = torch.from_numpy(ArtifactStore().get_array(v["artifact"]).copy())
    return opts


def _image_input(handle: ModelHandle, *, dataset: Optional[str], sample_key: Optional[str],
                 image_bytes: Optional[bytes]) -> tuple[torch.Tensor, str, Optional[str], Optional[int], Optional[int]]:
    if handle.input_spec is None:
        raise ExplainError("this model takes text; use the Text page")
    if image_bytes is not None:
        img = decode_image(image_bytes)
        raw = image_to_tensor(img, handle.input_spec)
        return raw, sha256_bytes(image_bytes), None, None, None
    if dataset is None or sample_key is None:
        raise ExplainError("give a reference sample (dataset and sample id) or an uploaded image")
    samples = load_image_samples(dataset, keys=[sample_key], model=handle)
    raw = image_to_tensor(samples.images[0], handle.input_spec)
    return raw, samples.hashes[0], sample_key, samples.labels[0], None


def explain_image(
    family: str, version: str, *, methods: Sequence[str], dataset: Optional[str] = None,
    sample_key: Optional[str] = None, image_bytes: Optional[bytes] = None, target: Optional[int] = None,
    options: Optional[dict[str, Any]] = None, actor: Principal = SYSTEM, progress: Progress = None,
) -> ImageExplanation:
    """Explain one image with each method; stored maps are returned instead of recomputed."""
    require(actor, "run")
    if not methods:
        raise ExplainError("choose at least one method")
    options = dict(options or {})
    handle = handle_for(family, version)
    raw, sample_sha, key, true_label, _ = _image_input(handle, dataset=dataset, sample_key=sample_key,
                                                       image_bytes=image_bytes)
    x = handle.input_spec.normalize(raw).to(handle.device)
    probs = handle.predict_proba(x)[0].cpu()
    from audit.services.predict import require_finite

    require_finite(probs[None], [key or "the uploaded image"])
    if target is None:
        target = int(probs.argmax())
    if not 0 <= target < len(handle.labels):
        raise ExplainError(f"target {target} is not a class of this model (0..{len(handle.labels) - 1})")
    batch = explain_methods(handle, family, version, x, [sample_sha], [target], methods, options,
                            sample_ids=[None], actor=actor, progress=progress)
    return ImageExplanation(
        family=family, version=version, sample_sha256=sample_sha, sample_key=key, image=raw[0].numpy(),
        probabilities=probs.numpy(), labels=list(handle.labels), target=target, true_label=true_label,
        maps=batch.maps[0], costs=batch.costs, layer=handle.target_layer, skipped=batch.skipped,
    )


def explain_batch(handle: ModelHandle, family: str, version: str, x: torch.Tensor, sample_shas: list[str],
                   targets: list[int], methods: Sequence[str], options: dict[str, Any], *,
                   sample_ids: list[Optional[int]], actor: Principal, progress: Progress,
                   run_id: Optional[int] = None) -> tuple[list[dict[str, StoredMap]], dict[str, dict[str, Any]]]:
    """Return stored maps where they exist; compute the rest in one engine call and store them at once.

    ``x`` is the model input (normalised, on the model's device); one target per sample. Every method
    must apply to the model (its callers index every map); a method that does not raises ExplainError
    with the reason. :func:`explain_methods` skips such methods instead."""
    batch = explain_methods(handle, family, version, x, sample_shas, targets, methods, options,
                            sample_ids=sample_ids, actor=actor, progress=progress, run_id=run_id)
    if batch.skipped:
        method, reason = next(iter(batch.skipped.items()))
        raise ExplainError(f"{method}: {reason}")
    return batch.maps, batch.costs


def explain_methods(handle: ModelHandle, family: str, version: str, x: torch.Tensor, sample_shas: list[str],
                    targets: list[int], methods: Sequence[str], options: dict[str, Any], *,
                    sample_ids: list[Optional[int]], actor: Principal, progress: Progress,
                    run_id: Optional[int] = None) -> BatchExplanation:
    """:func:`explain_batch`, except that methods which do not apply to the model (the engine's
    ``skipped``) are left out of the maps, stored nowhere, and returned with their reasons."""
    layer = options.pop("layer", None) or handle.target_layer
    keys = {m: params_key(m, layer, options) for m in methods}
    out = _stored_maps(family, version, sample_shas, targets, methods, keys)
    work = _work_for(out, methods, x, targets, layer, options)
    if work is None:
        return BatchExplanation(out, {})
    require(actor, "run")  # reading stored maps is open to every role; computing new ones is not
    if progress is not None:
        work.options["progress"] = progress
    result = compute_batch(handle, work)
    return _store_batch(family, version, out, work, result, keys, sample_shas, targets, sample_ids,
                        seed=int(options.get("seed", 0)), actor=actor, run_id=run_id)


@dataclass
class BatchWork:
    """One batch of engine work: the rows of the batch that miss a map, their inputs and targets, and the
    methods to compute for them (with the engine options)."""

    rows: list[int]
    methods: list[str]
    x: torch.Tensor
    targets: torch.Tensor
    layer: Optional[str]
    options: dict[str, Any]


class BatchExecutor(Protocol):
    """Computes batches of engine work and yields ``(tag, result)`` in the order given; ``None`` work
    yields ``None``. A result has the engine's ``maps``, ``info``, ``probabilities``, ``device`` and
    ``skipped``. :class:`LocalExecutor` runs here; the job worker's Ray executor shards over a cluster."""

    name: str

    def map(self, handle: ModelHandle, items: Iterable[tuple[Any, Optional[BatchWork]]]
            ) -> Iterator[tuple[Any, Any]]: ...


def compute_batch(handle: ModelHandle, work: BatchWork) -> Any:
    """Run the engine on one batch of work in this process."""
    from audit.attribution import explain

    try:
        with handle.lock:  # the cached module is shared by every session; the engine hooks it for the call
            return explain(handle.module, work.x, work.targets, work.methods, work.layer, **work.options)
    except (ValueError, TypeError) as exc:
        raise ExplainError(str(exc)) from exc


class LocalExecutor:
    """Each batch in turn, in this process."""

    name = "local"

    def map(self, handle: ModelHandle, items: Iterable[tuple[Any, Optional[BatchWork]]]
            ) -> Iterator[tuple[Any, Any]]:
        for tag, work in items:
            yield tag, None if work is None else compute_batch(handle, work)


def _stored(row: Explanation, store: ArtifactStore) -> StoredMap:
    """A stored row as the map it holds (``cached``: nothing was computed for it now)."""
    return StoredMap(row.method, row.target, store.get_array(row.attribution_sha256), row.id, True, row.duration_s,
                     dict(row.parameters), dict(row.metrics or {}), dict(row.engine) if row.engine else None)


def _stored_maps(family: str, version: str, sample_shas: Sequence[str], targets: Sequence[int],
                 methods: Sequence[str], keys: dict[str, tuple[dict[str, Any], str]]) -> list[dict[str, StoredMap]]:
    store = ArtifactStore()
    out: list[dict[str, StoredMap]] = [{} for _ in sample_shas]
    with transaction() as s:
        mv = ModelRepository(s).version(family, version)
        version_id = mv.id
        repo = ExplanationRepository(s)
        for i, (sha, tgt) in enumerate(zip(sample_shas, targets)):
            for m in methods:
                row = repo.find(model_version_id=version_id, sample_sha256=sha, method=m, target=tgt,
                                params_sha256=keys[m][1])
                if row is not None:
                    out[i][m] = _stored(row, store)
    return out


def _work_for(out: list[dict[str, StoredMap]], methods: Sequence[str], x: torch.Tensor, targets: Sequence[int],
              layer: Optional[str], options: dict[str, Any]) -> Optional[BatchWork]:
    """What is left to compute of a batch after the stored maps were found; None when nothing is."""
    todo_methods = [m for m in methods if any(m not in o for o in out)]
    if not todo_methods:
        return None
    todo_rows = [i for i, o in enumerate(out) if any(m not in o for m in todo_methods)]
    tb = torch.tensor([targets[i] for i in todo_rows], dtype=torch.long, device=x.device)
    return BatchWork(todo_rows, todo_methods, x[todo_rows], tb, layer,
                     {k: v for k, v in options.items() if k != "layer"})


def _store_batch(family: str, version: str, out: list[dict[str, StoredMap]], work: BatchWork, result: Any,
                 keys: dict[str, tuple[dict[str, Any], str]], sample_shas: Sequence[str], targets: Sequence[int],
                 sample_ids: Sequence[Optional[int]], *, seed: int, actor: Principal,
                 run_id: Optional[int]) -> BatchExplanation:
    """Store the computed maps of one batch (one transaction, one audit-log event) into ``out``."""
    store = ArtifactStore()
    todo_rows = work.rows
    skipped = dict(result.skipped)
    todo_methods = [m for m in work.methods if m not in skipped]
    for m in todo_methods:
        if not torch.isfinite(result.maps[m]).all():
            raise ExplainError(f"{m} produced NaN or infinite attributions; nothing was stored")
    probs = result.probabilities.detach().cpu().numpy()
    device = str(result.device)
    libs = library_versions()
    costs: dict[str, dict[str, Any]] = {}
    for m, info in result.info.items():
        costs[m] = {"time_s": info.time_s, "forward_samples": info.forward_samples,
                    "backward_samples": info.backward_samples, "peak_mem_bytes": info.peak_mem_bytes,
                    "shared_pass": info.shared_pass, "notes": list(info.notes)}
    with transaction() as s:
        mv = ModelRepository(s).version(family, version)
        repo = ExplanationRepository(s)
        for j, i in enumerate(todo_rows):
            for m in todo_methods:
                if m in out[i]:
                    continue
                arr = result.maps[m][j].detach().float().cpu().numpy()
                info = result.info[m]
                metrics: dict[str, Any] = {}
                if info.completeness_delta is not None:
                    metrics["completeness_delta"] = float(info.completeness_delta.reshape(-1)[j])
                params, phash = keys[m]
                # Another process may have stored the same key meanwhile: the store is the cache, keep theirs.
                existing = repo.find(model_version_id=mv.id, sample_sha256=sample_shas[i], method=m,
                                     target=targets[i], params_sha256=phash)
                if existing is not None:
                    out[i][m] = _stored(existing, store)
                    continue
                row = repo.add(Explanation(
                    model_version_id=mv.id, sample_id=sample_ids[i], sample_sha256=sample_shas[i], method=m,
                    target=targets[i], params_sha256=phash, parameters=params,
                    attribution_sha256=store.put_array(arr), attribution_shape=list(arr.shape),
                    model_output=[float(v) for v in probs[j]], metrics=metrics, seed=seed,
                    device=device, library_versions=libs, duration_s=float(info.time_s) / max(1, len(todo_rows)),
                    run_id=run_id, engine=dict(info.engine),
                ))
                out[i][m] = StoredMap(m, targets[i], arr, row.id, False, row.duration_s, params, metrics,
                                      dict(info.engine))
        if todo_methods:
            auditlog.append(s, actor=actor.username, action="explanation.create", subject=f"{family}/{version}",
                            details={"methods": list(todo_methods), "samples": len(todo_rows), "run_id": run_id,
                                     "skipped": sorted(skipped)})
    return BatchExplanation(out, costs, skipped)


@dataclass
class ReferenceRunSummary:
    run_id: int
    samples: int
    computed: int
    reused: int
    seconds: float
    executor: str = "local"


def explain_reference_set(
    family: str, version: str, dataset: str, *, methods: Sequence[str], batch_size: int = 16,
    options: Optional[dict[str, Any]] = None, limit: Optional[int] = None, actor: Principal = SYSTEM,
    progress: Progress = None, executor: Optional[BatchExecutor] = None, keys: Optional[Sequence[str]] = None,
) -> ReferenceRunSummary:
    """Explain every sample of a reference set (predicted class), batch by batch; ``keys``: only these
    samples (in the set's order), e.g. the ones a report will show.

    Each batch is stored in its own transaction, so an interrupted run keeps whole batches only and a
    rerun computes just what is missing (the unique key prevents duplicate rows). ``progress`` is called
    after each stored batch (a job worker stops there when it raises); ``executor`` computes the batches
    (default: here, one after the other).
    """
    from audit.services.predict import require_finite

    require(actor, "run")
    if batch_size < 1:
        raise ExplainError(f"batch size must be at least 1, got {batch_size}")
    options = dict(options or {})
    handle = handle_for(family, version)
    samples = load_image_samples(dataset, model=handle, keys=keys)
    n = len(samples.keys) if limit is None else min(limit, len(samples.keys))
    if n == 0:
        raise ExplainError(f"dataset {dataset} has no samples")
    parameters = {"dataset": dataset, "methods": list(methods), "limit": limit, "options": options,
                  **({"keys": list(keys)} if keys is not None else {})}
    executor = executor or LocalExecutor()
    layer = options.pop("layer", None) or handle.target_layer
    keys = {m: params_key(m, layer, options) for m in methods}
    seed = int(options.get("seed", 0))
    computed = reused = 0
    with tracked_run("explain", family=family, version=version, parameters=parameters, actor=actor,
                     seed=seed, device=str(handle.device)) as run:
        def batches() -> Iterator[tuple[Any, Optional[BatchWork]]]:
            for b0 in range(0, n, batch_size):
                b1 = min(n, b0 + batch_size)
                raw = image_to_tensor(samples.images[b0:b1], handle.input_spec)
                x = handle.input_spec.normalize(raw).to(handle.device)
                probs = handle.predict_proba(x)
                require_finite(probs, samples.keys[b0:b1])
                targets = probs.argmax(1).tolist()
                hashes = samples.hashes[b0:b1]
                out = _stored_maps(family, version, hashes, targets, methods, keys)
                work = _work_for(out, methods, x, targets, layer, options)
                yield (b1, hashes, targets, out, work), work

        for (b1, hashes, targets, out, work), result in executor.map(handle, batches()):
            if result is not None:
                batch = _store_batch(family, version, out, work, result, keys, hashes, targets,
                                     [None] * len(hashes), seed=seed, actor=actor, run_id=run.run_id)
                if batch.skipped:
                    method, reason = next(iter(batch.skipped.items()))
                    raise ExplainError(f"{method}: {reason}")
                out = batch.maps
            for o in out:
                for sm in o.values():
                    computed += not sm.cached
                    reused += sm.cached
            if progress:
                progress(b1 / n, f"{b1}/{n} samples")
    return ReferenceRunSummary(run.run_id, n, computed, reused, run.elapsed, executor.name)


@dataclass
class ReverifyResult:
    explanation_id: int
    method: str
    matches: bool
    max_abs_diff: float
    rank_correlation: float
    tolerance: float
    message: str = ""


def reverify(explanation_id: int, *, dataset: Optional[str] = None, image_bytes: Optional[bytes] = None,
             actor: Principal = SYSTEM) -> ReverifyResult:
    """Recompute a stored map with its stored parameters and seed; report whether it matches."""
    from audit.attribution import explain, spearman

    require(actor, "run")
    store = ArtifactStore()
    with transaction() as s:
        row = s.get(Explanation, explanation_id)
        if row is None:
            raise ExplainError(f"no stored explanation with id {explanation_id}")
        mv = ModelRepository(s).version_by_id(row.model_version_id)
        family, version = mv.family.name, mv.version
        params, method, target, sample_sha = dict(row.parameters), row.method, row.target, row.sample_sha256
        map_sha = row.attribution_sha256
    try:
        stored = store.get_array(map_sha)
    except ArtifactIntegrityError as exc:
        with transaction() as s:
            auditlog.append(s, actor=actor.username, action="explanation.reverify", subject=str(explanation_id),
                            details={"matches": False, "error": "stored map fails its hash check"})
        return ReverifyResult(explanation_id, method, False, float("inf"), float("nan"), REVERIFY_RTOL,
                              f"does not match: the stored map fails its hash check ({exc})")
    handle = handle_for(family, version)
    if image_bytes is not None:
        if sha256_bytes(image_bytes) != sample_sha:
            raise ExplainError("the uploaded image is not the one this explanation was computed on")
        raw = image_to_tensor(decode_image(image_bytes), handle.input_spec)
    else:
        raw = _find_sample(dataset, sample_sha, handle)
    x = handle.input_spec.normalize(raw).to(handle.device)
    with handle.lock:
        res = explain(handle.module, x, torch.tensor([target], device=x.device), [method], params.get("layer"),
                      **engine_options(params))
    fresh = res.maps[method][0].detach().float().cpu().numpy()
    diff = float(np.max(np.abs(fresh - stored)))
    scale = float(np.max(np.abs(stored))) or 1.0
    rho = float(spearman(torch.from_numpy(fresh).reshape(1, -1), torch.from_numpy(stored).reshape(1, -1)).reshape(-1)[0])
    ok = bool(diff <= REVERIFY_RTOL * scale + 1e-7)
    with transaction() as s:
        auditlog.append(s, actor=actor.username, action="explanation.reverify", subject=str(explanation_id),
                        details={"matches": ok, "max_abs_diff": diff, "rank_correlation": rho})
    message = ("matches: recomputed within the tolerance" if ok else
               f"does not match: largest difference {diff:.3g} exceeds {REVERIFY_RTOL:g} x the map's scale {scale:.3g}")
    return ReverifyResult(explanation_id, method, ok, diff, rho, REVERIFY_RTOL, message)


def _find_sample(dataset: Optional[str], sample_sha: str, handle: ModelHandle) -> torch.Tensor:
    from audit.services.datasets import find_sample

    found = find_sample(sample_sha, dataset=dataset) or (find_sample(sample_sha) if dataset else None)
    if found is not None:
        samples = load_image_samples(found[0], keys=[found[1]], model=handle)
        return image_to_tensor(samples.images[0], handle.input_spec)
    raise ExplainError("the sample of this explanation is not in a stored dataset; upload the image to re-verify")


def stored_explanations(family: str, version: str, method: Optional[str] = None) -> list[dict[str, Any]]:
    with transaction() as s:
        mv = ModelRepository(s).version(family, version)
        if mv is None:
            raise RegistryError(f"{family} {version} is not registered")
        return [{"id": r.id, "method": r.method, "target": r.target, "sample_sha256": r.sample_sha256,
                 "attribution_sha256": r.attribution_sha256, "params_sha256": r.params_sha256,
                 "seed": r.seed, "device": r.device, "duration_s": r.duration_s, "metrics": dict(r.metrics or {}),
                 "engine": dict(r.engine) if r.engine else None,
                 "created_at": r.created_at.isoformat() if r.created_at else None}
                for r in ExplanationRepository(s).for_version(mv.id, method)]


def stored_maps_for(family: str, version: str, dataset: str, method: str,
                    options: Optional[dict[str, Any]] = None) -> np.ndarray:
    """The stored maps of one method for every sample of a reference set, in dataset order, computed
    with ``options`` (default: the engine defaults). Raises when a sample has none: run
    explain_reference_set with the same options first."""
    samples = sample_index(dataset)
    store = ArtifactStore()
    opts = dict(options or {})
    layer = opts.pop("layer", None) or handle_for(family, version).target_layer
    _, phash = params_key(method, layer, opts)
    with transaction() as s:
        mv = ModelRepository(s).version(family, version)
        rows = [r for r in ExplanationRepository(s).for_version(mv.id, method) if r.params_sha256 == phash]
    by_sample: dict[str, Explanation] = {}
    for r in rows:
        by_sample.setdefault(r.sample_sha256, r)
    missing = [k for k, h in zip(samples.keys, samples.hashes) if h not in by_sample]
    if missing:
        raise ExplainError(f"{len(missing)} samples of {dataset} have no stored {method} map (e.g. {missing[0]})")
    return np.stack([store.get_array(by_sample[h].attribution_sha256) for h in samples.hashes])
