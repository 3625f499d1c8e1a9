"""The report's localisation evidence on a reference set with regions, checked against Captum's saliency
and a direct computation of relevance mass and the pointing game."""

from __future__ import annotations

import torch

from audit.report.content import Section, Table
from audit.report.sections.localisation import add_localisation


def _reference_with_regions(with_regions: bool = True):
    from audit.services.core.datasets import add_image_dataset

    g = torch.Generator().manual_seed(3)
    regions = [[2, 4, 14, 20] if i % 2 == 0 else None for i in range(10)] if with_regions else None
    add_image_dataset("boxes" if with_regions else "plain", torch.rand(10, 1, 32, 32, generator=g),
                      [i % 10 for i in range(10)], [{} for _ in range(10)], label_names=[str(i) for i in range(10)],
                      regions=regions)


def test_scores_match_captum_saliency_and_the_definitions(audit_home, register_small_cnn):
    from captum.attr import Saliency

    from audit.services.governance.principals import SYSTEM
    from audit.services.core.datasets import load_image_samples
    from audit.services.core.handles import handle_for
    from audit.services.analyses.quality.localisation import gather_localisation

    register_small_cnn()
    _reference_with_regions()
    h = handle_for("tiny", "1")
    samples = load_image_samples("boxes")
    x_all = h.input_spec.normalize(samples.images)
    with torch.no_grad():
        predicted = h.module(x_all).argmax(1).tolist()
    ev = gather_localisation(h, "tiny", "1", "boxes", samples.keys, predicted, ["saliency"], {"seed": 0},
                             actor=SYSTEM)
    assert ev is not None and len(ev.samples) == 5  # the five samples that declare a region
    picks = [0, 2, 4, 6, 8]
    assert ev.samples == [samples.keys[i] for i in picks]
    x = x_all[picks].clone().requires_grad_(True)
    sal = Saliency(h.module).attribute(x, target=[predicted[i] for i in picks], abs=True).detach()[:, 0].double()
    mass = (sal[:, 4:20, 2:14].sum(dim=(1, 2)) / sal.sum(dim=(1, 2))).mean().item()
    flat = sal.flatten(1).argmax(1)
    rows, cols = flat // 32, flat % 32
    point = ((rows >= 4) & (rows < 20) & (cols >= 2) & (cols < 14)).double().mean().item()
    got_mass, got_point = ev.scores["saliency"]
    assert abs(got_mass - mass) < 1e-4 and abs(got_point - point) < 1e-9
    assert abs(ev.chance - (12 * 16) / (32 * 32)) < 1e-9
    # The section prints those numbers, by the method's name as people say it.
    sec = add_localisation(Section("quality", "Explanation quality"), ev)
    table = next(b for b in sec.blocks if isinstance(b, Table))
    assert table.rows[0][:3] == ["Saliency", f"{got_mass:.4f}", f"{got_point:.4f}"]
    assert "Saliency puts" in sec.findings[0].detail


def test_no_regions_no_evidence(audit_home, register_small_cnn):
    from audit.services.governance.principals import SYSTEM
    from audit.services.core.handles import handle_for
    from audit.services.analyses.quality.localisation import gather_localisation

    register_small_cnn()
    _reference_with_regions(with_regions=False)
    h = handle_for("tiny", "1")
    assert gather_localisation(h, "tiny", "1", "plain", [], [], ["saliency"], {}, actor=SYSTEM) is None
