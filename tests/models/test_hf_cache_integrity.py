"""Issue 22, hole 4: the folder a Hugging Face model is materialised into (AUDIT_HOME/cache/hf/<manifest>) is
checked against the registered hashes on every load; a tampered, added or missing file is rebuilt from the
verified artifact store, so predictions stay those of the registered model."""

from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file

from audit.models.handle import manifest_sha256
from audit.services.core.registry import get_version, load_handle
from storage.artifacts import ArtifactStore, sha256_file

TEXTS = ["she has a stable income .", "mr applicant missed payments ."]


def _probabilities() -> torch.Tensor:
    h = load_handle("tiny-text", "1")
    enc = h.tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        return torch.softmax(h.module(**enc).logits, -1)


def _cache_dir(home):
    import json

    manifest = json.loads(ArtifactStore().get_bytes(get_version("tiny-text", "1")["sha256"]))
    return home / "cache" / "hf" / manifest_sha256(manifest), manifest


def test_a_zeroed_classifier_in_the_cache_is_not_used(tiny_text, caplog):
    before = _probabilities()
    _probabilities()
    assert "rebuilding" not in caplog.text  # an untouched cache is used as it is
    folder, manifest = _cache_dir(tiny_text)
    weights = folder / "model.safetensors"
    tensors = load_file(str(weights))
    zeroed = [k for k in tensors if k.startswith("classifier")]
    assert zeroed
    save_file({k: (torch.zeros_like(v) if k in zeroed else v) for k, v in tensors.items()}, str(weights),
              metadata={"format": "pt"})
    after = _probabilities()
    assert "model.safetensors does not match its registered SHA-256" in caplog.text
    assert torch.allclose(after, before, atol=1e-6), (before, after)
    assert sha256_file(weights) == manifest["model.safetensors"]


def test_an_added_or_missing_file_is_rebuilt(tiny_text):
    before = _probabilities()
    folder, manifest = _cache_dir(tiny_text)
    (folder / "pytorch_model.bin").write_bytes(b"not part of the registered model")
    (folder / "config.json").unlink()
    after = _probabilities()
    assert torch.allclose(after, before, atol=1e-6)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == sorted(manifest)
