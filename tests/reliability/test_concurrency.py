"""Two processes writing at once against SQLite: no lost rows, no 'database is locked', chain intact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from audit.models.zoo import SmallCNN
from audit.services.core.datasets import add_image_dataset
from audit.services.core.registry import ModelSource, register_version
from storage import auditlog
from storage.db import transaction
from storage.orm import AuditLogEntry, Explanation

ROOT = Path(__file__).resolve().parents[2]
LABELS = [str(i) for i in range(10)]
EVENTS = 60


@pytest.fixture()
def tiny(audit_home, tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(SmallCNN(width=8).state_dict(), str(path))
    register_version(family="tiny", version="1", task="image-classification",
                     source=ModelSource("state_dict", path, "small_cnn", {"width": 8}), labels=LABELS,
                     input_spec={"channels": 1, "height": 32, "width": 32, "mean": [0.5], "std": [0.5]})
    add_image_dataset("ref", torch.rand(12, 1, 32, 32), [0] * 12, [{}] * 12, label_names=LABELS)
    return audit_home


def test_two_writers_lose_nothing(tiny):
    env = dict(os.environ, AUDIT_HOME=str(tiny), PYTHONPATH=str(ROOT))
    with transaction() as s:
        before = s.query(AuditLogEntry).count()
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tests/reliability/writer.py"), m, str(EVENTS)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for m in ("saliency", "gradcam")]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert "database is locked" not in err
    with transaction() as s:
        assert s.query(Explanation).filter_by(method="saliency").count() == 12
        assert s.query(Explanation).filter_by(method="gradcam").count() == 12
        events = s.query(AuditLogEntry).filter_by(action="test.event").count()
        assert events == 2 * EVENTS
        assert s.query(AuditLogEntry).count() > before + 2 * EVENTS
        report = auditlog.verify(s)
    assert report.ok, report.problems


# Seam 8: one cached model handle shared by two app sessions (threads) at once.

def _slow_forward(module, seconds: float = 0.002):
    """A test-only pre-hook that sleeps (releasing the GIL) so two threads interleave inside a forward."""
    import time

    return module.register_forward_pre_hook(lambda _m, _inp: time.sleep(seconds))


def _in_two_threads(work_a, work_b):
    """Run both callables at the same moment; return their results, re-raising the first error."""
    import threading

    start = threading.Barrier(2)
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def run(i, work):
        try:
            start.wait()
            results[i] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate((work_a, work_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    if errors:
        raise errors[0]
    return results[0], results[1]


def _hooks(module) -> set[tuple[str, str, int]]:
    """Every hook on the module tree, as (module name, kind, hook id)."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return {(name, kind, key) for name, m in module.named_modules() for kind in kinds for key in getattr(m, kind)}


def test_two_sessions_compute_text_attention_on_one_cached_handle(tiny_text):
    import numpy as np

    from audit.services.core.handles import handle_for
    from audit.services.analyses.text.service import attention_maps, explain_texts

    handle = handle_for("tiny-text", "1")
    assert handle_for("tiny-text", "1") is handle  # the one cached handle every session gets
    # Registered models load with eager attention; one loaded with the library default (sdpa) returns no
    # attention weights and must be switched for the call, which is the change two sessions can race on.
    handle.module.set_attn_implementation("sdpa")
    texts_a = ["she has a stable income .", "ms applicant missed payments ."]
    texts_b = ["he has no debt .", "mr applicant has a stable income .", "her income and his debt ."]
    methods = ["attention", "attention_rollout", "grad_x_input"]
    single = {t: attention_maps("tiny-text", "1", t) for t in texts_a + texts_b}
    # transformers installs its own output-capturing hooks on the first output_attentions call and keeps
    # them; anything beyond those would have been left by us.
    library_hooks = _hooks(handle.module)

    def session(texts):
        maps = [attention_maps("tiny-text", "1", t) for _ in range(3) for t in texts]
        return maps, explain_texts("tiny-text", "1", texts, methods=methods)

    slow = _slow_forward(handle.module.bert.encoder.layer[0])
    try:
        (maps_a, stored_a), (maps_b, stored_b) = _in_two_threads(lambda: session(texts_a), lambda: session(texts_b))
    finally:
        slow.remove()
    for texts, maps in ((texts_a, maps_a), (texts_b, maps_b)):
        for t, got in zip(texts * 3, maps):
            assert got["tokens"] == single[t]["tokens"]
            np.testing.assert_allclose(got["attentions"], single[t]["attentions"], rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(got["rollout"], single[t]["rollout"], rtol=1e-5, atol=1e-7)
    for texts, entries in ((texts_a, stored_a), (texts_b, stored_b)):
        for t, entry in zip(texts, entries):
            assert not any(entry["cached"].values())
            np.testing.assert_allclose(entry["scores"]["attention_rollout"], single[t]["rollout"], rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(entry["scores"]["attention"], single[t]["attentions"][-1].mean(0)[0],
                                       rtol=1e-5, atol=1e-7)
    assert handle.module.config._attn_implementation == "sdpa"
    assert not handle.module.training
    assert _hooks(handle.module) == library_hooks


def test_two_sessions_compute_cams_on_one_cached_handle(tiny_image):
    import numpy as np

    from audit.attribution import attribute
    from audit.images import image_to_tensor
    from audit.services.core.datasets import load_image_samples
    from audit.services.analyses.explanations.service import explain_image
    from audit.services.core.handles import handle_for

    methods = ["gradcam", "gradcam_pp"]
    handle = handle_for("tiny", "1")
    samples = load_image_samples("ref")
    keys_a, keys_b = samples.keys[0:12:2], samples.keys[1:12:2]
    single = {}
    with handle.lock:
        for i, key in enumerate(samples.keys[:12]):
            x = handle.input_spec.normalize(image_to_tensor(samples.images[i], handle.input_spec)).to(handle.device)
            target = int(handle.predict_proba(x).argmax())
            single[key] = {m: v[0].detach().cpu().numpy() for m, v in attribute(handle.module, x, [target], methods,
                                                                          handle.target_layer).items()}
    assert not np.allclose(single[keys_a[0]]["gradcam"], single[keys_b[0]]["gradcam"])  # inputs tell apart

    def session(keys):
        return [explain_image("tiny", "1", methods=methods, dataset="ref", sample_key=k) for k in keys]

    # Slow down after the CAM layer: the window between a capture hook recording the layer and the
    # engine reading it is where another session's forward would overwrite it.
    slow = _slow_forward(handle.module.fc)
    try:
        got_a, got_b = _in_two_threads(lambda: session(keys_a), lambda: session(keys_b))
    finally:
        slow.remove()
    for keys, got in ((keys_a, got_a), (keys_b, got_b)):
        for key, exp in zip(keys, got):
            for m in methods:
                assert not exp.maps[m].cached
                np.testing.assert_allclose(exp.maps[m].attribution, single[key][m], rtol=1e-4, atol=1e-6,
                                           err_msg=f"{m} of {key} computed alongside another session")
    assert not _hooks(handle.module)
    assert not handle.module.training
