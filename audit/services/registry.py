"""Registry use cases: register immutable model versions, list them, and load them for the engine."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from audit.datasets.problems import ImportLimits, Problems
from audit.datasets.sources import check_expansion
from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value
from audit.models.formats import architecture_name, pack_arch_kwargs, unpack_arch_kwargs

from audit.models.handle import ModelHandle, build_handle, manifest_sha256, materialize_hf_dir
from audit.models.loading import FORMATS, TASKS, ModelLoadError, hf_labels
from audit.models.tasks import input_kind  # noqa: F401 - re-exported for pages
from audit.services.auth import SYSTEM, Principal, require
from storage import auditlog
from storage.artifacts import ArtifactStore, discard_on_failure, sha256_file
from storage.db import audit_home, transaction
from storage.orm import VERSION_STATUSES, ModelVersion
from storage.repositories import ModelRepository

MAX_MODEL_BYTES = 512 * 1024 * 1024
ONNX_CHECK_IMAGES = 16  # reference images the ONNX conversion is checked on
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


class RegistryError(ValueError):
    """A registration or lookup that cannot proceed; the message says why in one line."""


@dataclass(frozen=True)
class ModelSource:
    """Where the model comes from: a weights file (+architecture: a zoo or torchvision name, or for
    ``import_path`` a 'package.module:Callable'), a TorchScript file, an HF dir, a torch.export archive
    (``exported``) or an ONNX file. An ONNX model is checked against onnxruntime on ``check_dataset``'s
    images (seeded random inputs without one) within ``tolerance`` (None: the default, 1e-4 of the
    logit scale)."""

    format: str
    path: Path
    architecture: Optional[str] = None
    arch_kwargs: Optional[dict[str, Any]] = None
    check_dataset: Optional[str] = None
    tolerance: Optional[float] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))


def _check_name(kind: str, value: str) -> str:
    value = (value or "").strip()
    if not NAME_RE.match(value):
        raise RegistryError(f"{kind} {value!r} must be 1-80 letters, digits, '.', '_' or '-'")
    return value


def _source_files(source: ModelSource) -> dict[str, Path]:
    if source.format == "hf":
        if not source.path.is_dir():
            raise RegistryError(f"{source.path} is not a directory")
        files = {str(p.relative_to(source.path)): p for p in sorted(source.path.rglob("*")) if p.is_file()}
    else:
        if not source.path.is_file():
            raise RegistryError(f"model file not found: {source.path}")
        files = {source.path.name: source.path}
    total = sum(p.stat().st_size for p in files.values())
    if total > MAX_MODEL_BYTES:
        raise RegistryError(f"the model is {total / 1e6:.0f} MB; the limit is {MAX_MODEL_BYTES / 1e6:.0f} MB")
    return files


def register_version(
    *, family: str, version: str, task: str, source: ModelSource, labels: Optional[list[str]],
    input_spec: Optional[dict[str, Any]] = None, target_layer: Optional[str] = None,
    parent: Optional[str] = None, notes: str = "", description: str = "",
    metrics: Optional[dict[str, Any]] = None, actor: Principal = SYSTEM,
) -> dict[str, Any]:
    """Validate the model fully, then store its artifact, its metadata and an audit-log entry at once.

    A Hugging Face directory without ``labels`` takes them from its config's ``id2label``; an HF
    image classifier without ``input_spec`` takes it from its ``preprocessor_config.json``.
    """
    require(actor, "register")
    family = _check_name("family", family)
    version = _check_name("version", version)
    if task not in TASKS:
        raise RegistryError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if source.format not in FORMATS:
        raise RegistryError(f"format must be one of {', '.join(FORMATS)}, got {source.format!r}")
    with transaction() as s:
        repo = ModelRepository(s)
        if repo.version(family, version) is not None:
            raise RegistryError(f"{family} {version} is already registered; versions are immutable, register a new one")
        fam = repo.family(family)
        if fam is not None and fam.task != task:
            raise RegistryError(f"family {family} holds {fam.task} models, not {task}")
    files = _source_files(source)
    if not labels and source.format == "hf":
        labels = hf_labels(source.path)
    provenance = _import_provenance(source)
    # Validation loads the model on the CPU before anything is written.
    handle = build_handle(
        task=task, fmt=source.format, labels=labels, sha256="", path=source.path,
        architecture=source.architecture, arch_kwargs=source.arch_kwargs, input_spec=input_spec,
        target_layer=target_layer, device="cpu",
    )
    if source.format == "onnx":
        provenance = {"onnx_check": _onnx_check(source, handle)}
    elif source.format == "exported":
        from audit.env import library_versions

        provenance = {"torch_version": library_versions().get("torch")}
    with discard_on_failure():  # the files this call stores go again unless the version row commits
        return _store_version(family, version, task, source, files, handle, parent, notes, description, metrics,
                              actor, provenance)


def _store_version(family: str, version: str, task: str, source: ModelSource, files: dict[str, Path],
                   handle: ModelHandle, parent: Optional[str], notes: str, description: str,
                   metrics: Optional[dict[str, Any]], actor: Principal, provenance: Any = None) -> dict[str, Any]:
    store = ArtifactStore()
    if source.format == "hf":
        manifest = {rel: sha256_file(p) for rel, p in files.items()}
        for p in files.values():
            store.put_file(p)
        sha = store.put_bytes(json.dumps(manifest, sort_keys=True).encode())
        arch = type(getattr(handle.module, "model", handle.module)).__name__  # HF image models are wrapped
    else:
        sha = store.put_file(source.path)
        arch = architecture_name(source.format, handle.module, source.architecture)
    with transaction() as s:
        repo = ModelRepository(s)
        if repo.version(family, version) is not None:
            raise RegistryError(f"{family} {version} is already registered; versions are immutable, register a new one")
        fam = repo.get_or_create_family(family, task, description)
        parent_row = None
        if parent:
            parent_row = repo.version(family, parent)
            if parent_row is None:
                raise RegistryError(f"parent version {parent!r} is not registered in {family}")
        else:
            existing = repo.versions(family)
            parent_row = existing[-1] if existing else None
        row = repo.add_version(ModelVersion(
            family_id=fam.id, version=version, artifact_sha256=sha, format=source.format, architecture=arch,
            arch_kwargs=pack_arch_kwargs(source.format, source.arch_kwargs, provenance), labels=handle.labels,
            input_spec=handle.input_spec.to_dict() if handle.input_spec else {},
            target_layer=handle.target_layer, parent_id=parent_row.id if parent_row else None,
            status="draft", created_by=actor.username, notes=notes, metrics=metrics or {},
        ))
        auditlog.append(s, actor=actor.username, action="model.register", subject=f"{family}/{version}",
                        details={"sha256": sha, "format": source.format, "architecture": arch})
        return version_summary(row, family_name=family, task=task)


def _import_provenance(source: ModelSource) -> dict[str, Any]:
    """Where an import-path architecture comes from (refused with one line when it does not resolve)."""
    if source.format != "import_path":
        return {}
    from audit.models.imported import import_provenance

    if not source.architecture:
        raise RegistryError("an import-path architecture needs 'package.module:Callable'")
    return import_provenance(source.architecture)


def _onnx_check(source: ModelSource, handle: ModelHandle) -> dict[str, Any]:
    """The converted module against onnxruntime: on the reference set's images when one is named."""
    import torch

    from audit.models.onnx_import import check_against_runtime, random_check_inputs

    spec = handle.input_spec
    if source.check_dataset:
        from audit.services.datasets import load_image_samples

        samples = load_image_samples(source.check_dataset)
        images = list(samples.images)[:ONNX_CHECK_IMAGES]
        if not images:
            raise RegistryError(f"dataset {source.check_dataset!r} holds no images to check the ONNX model on")
        x = torch.cat([handle.preprocess(img).cpu() for img in images])
        described = f"reference set {source.check_dataset} ({len(images)} images)"
    else:
        x = random_check_inputs(spec.shape, spec.normalize)
        described = f"{len(x)} seeded random inputs (uniform pixels, seed 0)"
    return check_against_runtime(source.path, handle.module, x, described=described,
                                 tolerance=source.tolerance).to_dict()


def iso_utc(dt: Optional[datetime]) -> Optional[str]:
    """SQLite returns naive datetimes; every stored time is UTC, so say so consistently."""
    if dt is None:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).isoformat()


def version_summary(row: ModelVersion, *, family_name: str, task: str) -> dict[str, Any]:
    return {
        "id": row.id, "family": family_name, "task": task, "version": row.version, "sha256": row.artifact_sha256,
        "format": row.format, "architecture": row.architecture, "labels": list(row.labels),
        "input_spec": dict(row.input_spec or {}), "target_layer": row.target_layer,
        "parent": row.parent.version if row.parent else None, "status": row.status,
        "created_by": row.created_by, "created_at": iso_utc(row.created_at),
        "notes": row.notes, "metrics": dict(row.metrics or {}),
        "provenance": unpack_arch_kwargs(row.format, row.arch_kwargs)[1],
    }


def list_models() -> list[dict[str, Any]]:
    """Every family with its versions, oldest version first."""
    with transaction() as s:
        out = []
        for fam in ModelRepository(s).families():
            out.append({
                "family": fam.name, "task": fam.task, "description": fam.description,
                "versions": [version_summary(v, family_name=fam.name, task=fam.task) for v in fam.versions],
            })
        return out


def get_version(family: str, version: str) -> dict[str, Any]:
    with transaction() as s:
        row = ModelRepository(s).version(family, version)
        if row is None:
            raise RegistryError(f"{family} {version} is not registered")
        return version_summary(row, family_name=family, task=row.family.task)


# A decision (approved/rejected) is made only by signing a stored report of the version
# (report_records.sign_report); here a version only moves between the two undecided states.
UNDECIDED = ("draft", "in-review")
DECIDED = ("approved", "rejected")


def allowed_statuses(status: str) -> list[str]:
    """The statuses set_status can move a version in ``status`` to (what a page may offer)."""
    return [s for s in UNDECIDED if s != status] if status in UNDECIDED else []


def set_status(family: str, version: str, status: str, *, reason: str = "", actor: Principal = SYSTEM) -> dict[str, Any]:
    """Move a version between draft and in-review. Approved and rejected come only from a sign-off on a
    stored report of the version, and are final: corrections are new versions."""
    require(actor, "run")
    if status not in VERSION_STATUSES:
        raise RegistryError(f"status must be one of {', '.join(VERSION_STATUSES)}")
    if status in DECIDED:
        raise RegistryError(f"a version becomes {status} only by signing a stored report of it (Reports page, or "
                            "python -m audit report-sign), by someone other than the report's author")
    with transaction() as s:
        row = ModelRepository(s).version(family, version)
        if row is None:
            raise RegistryError(f"{family} {version} is not registered")
        old = row.status
        if old in DECIDED:
            raise RegistryError(f"{family} {version} is {old}; a decided version never changes status, "
                                "register a new version for a correction")
        if old == status:
            raise RegistryError(f"{family} {version} is already {status}")
        # Conditional write: a sign-off (or another move) committed since the read above must not be overwritten.
        moved = s.execute(update(ModelVersion).where(ModelVersion.id == row.id, ModelVersion.status == old)
                          .values(status=status).execution_options(synchronize_session=False)).rowcount
        if moved != 1:
            raise RegistryError(f"{family} {version} changed while its status was being set (decided or moved by "
                                "someone else); reload and try again")
        set_committed_value(row, "status", status)
        auditlog.append(s, actor=actor.username, action="model.status", subject=f"{family}/{version}",
                        details={"from": old, "to": status, "reason": reason})
        return version_summary(row, family_name=family, task=row.family.task)


def load_handle(family: str, version: str, *, device: Optional[str] = None) -> ModelHandle:
    """Load a registered version from the artifact store (hashes verified) into a ModelHandle."""
    return handle_from_record(model_record(family, version), store=ArtifactStore(), device=device)


def model_record(family: str, version: str) -> dict[str, Any]:
    """Everything needed to load a version without the database (what a job worker ships to a Ray task)."""
    info = get_version(family, version)
    with transaction() as s:
        row = ModelRepository(s).version(family, version)
        info["arch_kwargs"] = dict(row.arch_kwargs or {})
    return info


def handle_from_record(info: dict[str, Any], *, store: ArtifactStore, device: Optional[str] = None,
                       cache_root: Optional[Path] = None) -> ModelHandle:
    """Load the version that ``info`` (a :func:`model_record`) describes from ``store``; every read is
    checked against its SHA-256, so a worker on another machine loads exactly the registered bytes."""
    family, version = info["family"], info["version"]
    if info["format"] == "hf":
        manifest = json.loads(store.get_bytes(info["sha256"]))
        if manifest_sha256(manifest) != info["sha256"]:
            raise RegistryError(f"{family} {version}: stored manifest does not match its hash")
        cache = cache_root or audit_home() / "cache" / "hf"
        cache.mkdir(parents=True, exist_ok=True)
        path = materialize_hf_dir(manifest, store.get_bytes, cache)
        image = info["task"] == "image-classification"
        return build_handle(task=info["task"], fmt="hf", labels=info["labels"], sha256=info["sha256"], path=path,
                            input_spec=info["input_spec"] if image else None,
                            target_layer=info["target_layer"] if image else None,
                            device=device, family=family, version=version)
    kwargs, provenance = unpack_arch_kwargs(info["format"], info.get("arch_kwargs"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("model.pt" if info["format"] == "torchscript" else "weights")
        path.write_bytes(store.get_bytes(info["sha256"]))
        return build_handle(
            task=info["task"], fmt=info["format"], labels=info["labels"], sha256=info["sha256"], path=path,
            architecture=info["architecture"], arch_kwargs=kwargs, input_spec=info["input_spec"],
            target_layer=info["target_layer"], device=device, family=family, version=version,
            provenance=provenance,
        )


# What an uploaded Hugging Face zip may expand to: the dataset imports' zip-bomb guard with the model size cap.
HF_ZIP_LIMITS = ImportLimits(max_files=1_000, max_total_bytes=MAX_MODEL_BYTES, max_file_bytes=MAX_MODEL_BYTES)


def _extract_hf_zip(archive: Path, dest: Path) -> Path:
    """Unpack an uploaded Hugging Face directory (a zip) safely; return the folder holding config.json.
    Every entry is checked (path, link, expansion) before the first one is read."""
    import zipfile

    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise RegistryError("a Hugging Face model is uploaded as a zip of its directory; this file is not a zip") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > HF_ZIP_LIMITS.max_files:
            raise RegistryError(f"the zip holds {len(infos)} files; the limit is {HF_ZIP_LIMITS.max_files}")
        for info in infos:
            rel = Path(info.filename)
            if rel.is_absolute() or ".." in rel.parts or (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise RegistryError(f"unsafe path in the zip: {info.filename}")
        problems = Problems()
        check_expansion(infos, HF_ZIP_LIMITS, problems, "the zip")
        if problems:
            raise RegistryError(f"the zip is refused, nothing was unpacked: {'; '.join(problems.items)}")
        for info in infos:
            target = dest / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:  # streamed: never a whole file in memory
                shutil.copyfileobj(src, out, 1 << 20)
    configs = sorted(dest.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise RegistryError("the zip holds no config.json: zip the directory that save_pretrained wrote")
    return configs[0].parent


def _torchscript_uploads_enabled() -> bool:
    from audit.services.settings import TORCHSCRIPT_UPLOADS, setting_value

    return bool(setting_value(TORCHSCRIPT_UPLOADS))


def _import_path_uploads_enabled() -> bool:
    from audit.services.settings import IMPORT_PATH_UPLOADS, setting_value

    return bool(setting_value(IMPORT_PATH_UPLOADS))


def register_upload(
    *, filename: str, data: bytes, fmt: str, actor: Principal, **kwargs: Any,
) -> dict[str, Any]:
    """Register from uploaded bytes (the Registry page): size cap, then the same validation as files.

    A Hugging Face model (``fmt="hf"``) is uploaded as a zip of its directory."""
    require(actor, "register")
    if fmt == "state_dict" and ":" in str(kwargs.get("architecture") or ""):
        fmt = "import_path"  # the page's architecture field names an installed package's callable
    if fmt == "torchscript" and not _torchscript_uploads_enabled():
        raise RegistryError("TorchScript uploads are disabled: a TorchScript archive is code that runs when it is "
                            "loaded; an administrator can enable them on the Admin page, or register it with "
                            "python -m audit register --torchscript")
    if fmt == "import_path" and not _import_path_uploads_enabled():
        raise RegistryError("architectures named by import path are disabled in the browser: importing a module runs "
                            "its code; an administrator can enable them on the Admin page, or register with "
                            "python -m audit register --arch package.module:Callable")
    if not data:
        raise RegistryError("the uploaded file is empty")
    if len(data) > MAX_MODEL_BYTES:
        raise RegistryError(f"the upload is {len(data) / 1e6:.0f} MB; the limit is {MAX_MODEL_BYTES / 1e6:.0f} MB")
    tmp = Path(tempfile.mkdtemp(prefix="upload-"))
    try:
        safe_name = Path(filename).name or "model"
        path = tmp / safe_name
        path.write_bytes(data)
        if fmt == "hf":
            unpacked = tmp / "unpacked"
            unpacked.mkdir()
            path = _extract_hf_zip(path, unpacked)
        source = ModelSource(format=fmt, path=path, architecture=kwargs.pop("architecture", None),
                             arch_kwargs=kwargs.pop("arch_kwargs", None))
        return register_version(source=source, actor=actor, **kwargs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["ModelSource", "RegistryError", "ModelLoadError", "register_version", "register_upload", "list_models",
           "get_version", "set_status", "allowed_statuses", "load_handle"]
