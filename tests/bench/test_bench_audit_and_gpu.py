"""The full-audit and GPU benchmarks: what they refuse, and the floor they set the explanations against."""

from __future__ import annotations

import argparse

import pytest
import torch

from audit.bench import audit as bench_audit
from audit.bench import gpu as bench_gpu


def _args(home) -> argparse.Namespace:  # noqa: ANN001
    return bench_audit._parse(["--home", str(home)])


def test_a_home_that_already_holds_results_is_refused(tiny_image, tmp_path, monkeypatch):
    """"From an empty store" is checked, not assumed: a copied home with a stored map is refused."""
    from audit.services.core.datasets import load_image_samples
    from audit.services.analyses.explanations.service import explain_image

    key = load_image_samples("ref").keys[0]
    explain_image("tiny", "1", methods=["saliency"], dataset="ref", sample_key=key)
    monkeypatch.setenv("AUDIT_HOME", str(tiny_image))
    with pytest.raises(SystemExit, match=r"already holds stored results .*'explanations': 1"):
        bench_audit._prepare_home(_args(tiny_image), tmp_path / "copy")


def test_a_home_without_results_is_copied_and_used(tiny_image, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    assert bench_audit._prepare_home(_args(tiny_image), copy) == 0.0
    assert bench_audit._stored_results() == {t: 0 for t in bench_audit.RESULT_TABLES}
    assert (copy / "audit.db").is_file()


def test_the_explanation_floor_counts_the_declared_passes(tiny_image):
    """IG with 8 Gauss-Legendre steps plus the fused gradient pass: 8 path points, the two end points and
    the shared forward; 8 path backwards and the shared backward."""
    floor = bench_audit._explanation_floor("tiny", "1", ["integrated_gradients", "saliency", "gradcam"],
                                           {"ig_steps": 8}, n=4)
    assert (floor["forward_samples"], floor["backward_samples"]) == (11, 9)
    expected = 4 * (11 * floor["forward_s_per_sample"] + 9 * floor["backward_s_per_sample"])
    assert floor["floor_s"] == pytest.approx(expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the skip path is for machines without CUDA")
def test_gpu_bench_says_it_is_skipped_without_cuda(capsys):
    assert bench_gpu.main([]) == 0
    assert "no CUDA device here" in capsys.readouterr().out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_bench_ig_agrees_with_captum():
    res = bench_gpu.bench_ig(bench_gpu._parse(["--images", "2", "--steps", "8", "--rounds", "1"]))
    assert res["max_rel_diff_vs_captum"] < 1e-3 and res["ours_over_floor"] > 0


def test_gpu_bench_occlusion_part_compares_crops_full_forwards_and_captum_on_cpu():
    """The part a GPU run uses to pick incremental's default there, run small on CPU: the crop path
    agrees with full forwards and every side is timed."""
    res = bench_gpu.bench_occlusion(bench_gpu._parse(["--images", "1", "--size", "48", "--rounds", "1"]),
                                    device="cpu")
    assert res["max_rel_diff_crops_vs_full"] < 1e-4
    assert set(res["seconds"]) == {"crops", "full", "captum"}
    assert all(s["min"] > 0 for s in res["seconds"].values())
    assert res["full_over_crops"] == pytest.approx(res["seconds"]["full"]["median"] / res["seconds"]["crops"]["median"])
