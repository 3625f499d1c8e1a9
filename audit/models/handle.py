"""ModelHandle: a loaded, validated model version ready for the engine (eval mode, on its device)."""

from __future__ import annotations

import hashlib
import json
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
        spec = InputSpec.from_dict(input_spec)
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


def materialize_hf_dir(manifest: dict[str, str], read_bytes, cache_root: Path) -> Path:  # noqa: ANN001
    """Rebuild a Hugging Face directory from the artifact store (hashes verified by ``read_bytes``)."""
    target = cache_root / manifest_sha256(manifest)
    if target.is_dir():
        return target
    tmp = Path(tempfile.mkdtemp(dir=cache_root, prefix=".tmp-"))
    try:
        for rel, digest in manifest.items():
            dest = tmp / rel
            if dest.resolve().parent != (tmp / Path(rel).parent).resolve() or ".." in Path(rel).parts:
                raise ModelLoadError(f"unsafe path in manifest: {rel}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(read_bytes(digest))
        tmp.rename(target)
    except FileExistsError:
        shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target

