"""What the audits must expose on the embedded demo: the planted watermark shortcut (explanations,
concept tests, drift-ready maps) and the planted gender bias (token attributions, swap probe), plus
counterfactual validity. Each test prints its measured numbers (run with -s to see them)."""

from __future__ import annotations

import torch

from audit.demo.watermark import WATERMARK_CLASS, watermark_mask
from audit.images import image_to_tensor


def _watermarked(n: int = 24):
    from audit.services.core.datasets import load_image_samples

    ref = load_image_samples("digits-reference")
    idx = [i for i, g in enumerate(ref.groups) if g["watermark"] and ref.labels[i] != WATERMARK_CLASS][:n]
    return ref.images[idx]


def test_shortcut_maps_concentrate_on_the_watermark(in_demo):
    from audit.attribution import attribute
    from audit.services.analyses.explanations.service import handle_for

    images = _watermarked()
    shares = {}
    for version in ("1", "2"):
        h = handle_for("digits-cnn", version)
        x = h.input_spec.normalize(image_to_tensor(images, h.input_spec))
        maps = attribute(h.module, x, None, methods=["gradcam", "integrated_gradients"], ig_steps=16)
        mask = watermark_mask(32, 32)
        for method, m in maps.items():
            a = m.abs().sum(1) if m.ndim == 4 else m.abs()
            shares[(method, version)] = float((a[:, mask].sum(1) / a.flatten(1).sum(1).clamp_min(1e-12)).mean())
    area = float(watermark_mask(32, 32).float().mean())
    print(f"share of |attribution| on the watermark (area {area:.3f}): {shares}")
    for method in ("gradcam", "integrated_gradients"):
        assert shares[(method, "2")] > 2 * shares[(method, "1")]
        assert shares[(method, "2")] > 3 * area


def test_watermark_concept_is_significant_only_for_the_shortcut_version(in_demo):
    from audit.services.analyses.concepts.service import run_concept_test

    out = {}
    for version in ("1", "2"):
        res = run_concept_test("digits-cnn", version, concepts=["watermark", "random-reference"],
                               target=WATERMARK_CLASS, dataset="digits-reference", n_random=10, set_size=40)
        out[version] = {(c.concept, c.layer): c for c in res.cells}
    print({v: {k: (round(c.score, 3), c.p_value_corrected, c.significant) for k, c in cells.items()}
           for v, cells in out.items()})
    wm = {v: [c for (concept, _), c in cells.items() if concept == "watermark"] for v, cells in out.items()}
    assert len(wm["2"]) == 2
    assert any(c.significant and c.score > 0.5 for c in wm["2"])
    assert not any(c.significant and c.score > 0.5 for c in wm["1"])
    assert not any(c.significant for (concept, _), c in out["2"].items() if concept == "random-reference")


def test_counterfactuals_are_valid_and_small(in_demo):
    from audit.services.analyses.counterfactuals.service import run_reference_counterfactuals

    s = run_reference_counterfactuals("digits-cnn", "1", dataset="digits-reference", limit=20, max_iter=100,
                                      restarts=2)
    print(f"counterfactuals on 20 reference digits: valid {s.valid_rate:.2f}, mean L2 {s.mean_l2:.3f}, "
          f"mean L1 {s.mean_l1:.2f}, changed {s.mean_changed_fraction:.3f}")
    assert s.valid_rate >= 0.9
    # A digit image has an L2 norm of about 10; a flip needs only a small fraction of it.
    assert s.mean_l2 < 2.0


def test_gender_bias_shows_in_attributions_and_swaps(in_demo):
    from audit.services.core.datasets import load_text_samples
    from audit.services.analyses.explanations.service import handle_for
    from audit.services.analyses.fairness.service import run_text_probe
    from audit.text import gendered_attribution_share

    texts = [t for t, g in zip(*(lambda s: (s.texts, s.groups))(load_text_samples("loan-notes-reference")))
             if g["gender"] != "neutral"][:40]
    share, flips = {}, {}
    for version in ("1", "2"):
        h = handle_for("loan-notes-minilm", version)
        share[version] = gendered_attribution_share(h.module, h.tokenizer, texts, ig_steps=24).mean
        flips[version] = run_text_probe("loan-notes-minilm", version, dataset="loan-notes-reference").to_summary()
    print(f"share of |IG| on gendered words: v1 {share['1']:.3f}, v2 {share['2']:.3f}; swap flip rate: "
          f"v1 {flips['1']['flip_rate']:.3f}, v2 {flips['2']['flip_rate']:.3f}; mean |dp|: "
          f"v1 {flips['1']['mean_prob_change']:.3f}, v2 {flips['2']['mean_prob_change']:.3f}")
    assert share["2"] > 1.5 * share["1"]
    assert flips["2"]["flip_rate"] > flips["1"]["flip_rate"] + 0.2
