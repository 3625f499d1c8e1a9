"""ModelHandle: a loaded, validated model version ready for the engine (eval mode, on its device)."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from audit.models.formats import check_batches, load_other_format
from audit.models.loading import (
    InputSpec,
    ModelLoadError,
    build_from_state_dict,
    check_image_model,
    find_default_target_layer,
    hf_image_input_spec,
    load_hf_dir,
    load_hf_image_dir,
    load_state_dict_file,
    load_torchscript,
    select_device,
    validate_labels,
)


log = logging.getLogger(__name__)

@dataclass
class ModelHandle:
    module: nn.Module
    task: str
    labels: list[str]
    sha256: str
    format: str
    input_spec: Optional[InputSpec] = None
    target_layer: Optional[str] = None
    tokenizer: Any = None
    family: Optional[str] = None
    version: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)
    # One cached handle is shared by every session of the app: hook captures, attention-implementation
    # switches and other temporary changes to ``module`` happen under this lock (re-entrant, so a
    # service holding it can call helpers that take it again).
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    @property
    def device(self) -> torch.device:
        try:
            return next(self.module.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    def preprocess(self, image: Any) -> torch.Tensor:
        """PIL image, HxW(xC) uint8/float array in [0, 1], or [C,H,W] tensor -> normalised [1, C, H, W]."""
        if self.input_spec is None:
            raise ValueError("this model takes text, not images")
        from audit.images import image_to_tensor

        x = image_to_tensor(image, self.input_spec)
        return self.input_spec.normalize(x).to(self.device)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        # Under the lock: while another session holds it, capture hooks may be on the module, and a forward
        # from here would overwrite the activations they recorded.
        with self.lock:
            logits = self.module(x.to(self.device))
        return torch.softmax(logits.float(), dim=-1)


def manifest_sha256(files: dict[str, str]) -> str:
    """Hash of a directory: canonical JSON of relative path -> file SHA-256."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def build_handle(
    *, task: str, fmt: str, labels: list[str], sha256: str, path: Path,
    architecture: Optional[str] = None, arch_kwargs: Optional[dict[str, Any]] = None,
    input_spec: Optional[dict[str, Any]] = None, target_layer: Optional[str] = None,
    device: Optional[str] = None, family: Optional[str] = None, version: Optional[str] = None,
    provenance: Optional[dict[str, Any]] = None,
) -> ModelHandle:
    """Load and validate a model from a local file or directory. Raises ModelLoadError with one line.

    ``provenance``: what the registry recorded at registration (an import-path architecture's source
    hash is checked against it)."""
    labels = validate_labels(labels)
    tokenizer = None
    spec = None
    if fmt == "hf" and task == "text-classification":
        module, tokenizer = load_hf_dir(path)
        n_out = int(getattr(module.config, "num_labels", 0))
        if n_out != len(labels):
            raise ModelLoadError(f"the model has {n_out} outputs but {len(labels)} labels were given")
    else:
        if task != "image-classification":
            raise ModelLoadError(f"format {fmt!r} is supported for image-classification only")
        if fmt == "hf":
            module = load_hf_image_dir(path)
            if input_spec is None:
                input_spec = hf_image_input_spec(path)
            if input_spec is None:
                raise ModelLoadError(
                    f"{Path(path).name} has no preprocessor_config.json: give the input spec "
                    "(--input-size C,H,W with --mean and --std)"
                )
        elif input_spec is None:
            raise ModelLoadError("an input spec (channels, height, width, mean, std) is required for image models")
        try:
            spec = InputSpec.from_dict(input_spec)
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from None
        if fmt == "state_dict":
            if not architecture:
                raise ModelLoadError("an architecture name is required with a weights file")
            module = build_from_state_dict(architecture, load_state_dict_file(path), arch_kwargs or {})
        elif fmt == "torchscript":
            module = load_torchscript(path)
        elif fmt in ("exported", "import_path", "onnx"):
            module = load_other_format(fmt, path, architecture=architecture, arch_kwargs=arch_kwargs or {},
                                       provenance=provenance or {})
        elif fmt != "hf":
            raise ModelLoadError(f"unknown model format {fmt!r}")
        module.eval()
        check_image_model(module, spec, labels)
        if fmt in ("exported", "onnx"):
            check_batches(module, tuple(spec.shape), Path(path).name)
        if target_layer:
            names = dict(module.named_modules())
            if target_layer not in names:
                raise ModelLoadError(f"target layer {target_layer!r} is not a module of this model")
        else:
            target_layer = find_default_target_layer(module, tuple(spec.shape))
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    module.to(select_device(device))
    return ModelHandle(module=module, task=task, labels=labels, sha256=sha256, format=fmt, input_spec=spec,
                       target_layer=target_layer, tokenizer=tokenizer, family=family, version=version)


def _hf_dir_matches(folder: Path, manifest: dict[str, str]) -> list[str]:
    """What differs between ``folder`` and the registered files: missing, added or changed (by SHA-256)."""
    found = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file() or p.is_symlink()}
    problems = [f"{rel} is missing" for rel in sorted(set(manifest) - set(found))]
    problems += [f"{rel} is not part of the registered model" for rel in sorted(set(found) - set(manifest))]
    for rel in sorted(set(manifest) & set(found)):
        path = found[rel]
        if path.is_symlink() or _sha256_path(path) != manifest[rel]:
            problems.append(f"{rel} does not match its registered SHA-256")
    return problems


def _sha256_path(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_hf_dir(manifest: dict[str, str], read_bytes, cache_root: Path) -> Path:  # noqa: ANN001
    tmp = Path(tempfile.mkdtemp(dir=cache_root, prefix=".tmp-"))
    try:
        for rel, digest in manifest.items():
            dest = tmp / rel
            if dest.resolve().parent != (tmp / Path(rel).parent).resolve() or ".." in Path(rel).parts:
                raise ModelLoadError(f"unsafe path in manifest: {rel}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(read_bytes(digest))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def materialize_hf_dir(manifest: dict[str, str], read_bytes, cache_root: Path) -> Path:  # noqa: ANN001
    """Rebuild a Hugging Face directory from the artifact store (hashes verified by ``read_bytes``).

    The folder is a cache outside the store's checks, so every call re-hashes it against the manifest; a
    folder with a changed, missing or extra file is replaced by a fresh copy from the store (logged), never
    loaded."""
    target = cache_root / manifest_sha256(manifest)
    for _ in range(3):
        if target.is_dir():
            problems = _hf_dir_matches(target, manifest)
            if not problems:
                return target
            log.warning("model cache %s differs from the registered files (%s); rebuilding it from the artifact "
                        "store", target, "; ".join(problems[:3]))
            stale = cache_root / f".stale-{secrets.token_hex(8)}"
            try:
                target.rename(stale)
            except FileNotFoundError:
                pass  # another process moved it first
            shutil.rmtree(stale, ignore_errors=True)
        tmp = _write_hf_dir(manifest, read_bytes, cache_root)
        try:
            tmp.rename(target)
        except OSError:  # another process put a copy there first: check that one on the next turn
            shutil.rmtree(tmp, ignore_errors=True)
    if target.is_dir() and not _hf_dir_matches(target, manifest):
        return target
    raise ModelLoadError(f"model cache {target} keeps changing while it is rebuilt; stop whatever writes to it")
