"""LIME for images (Ribeiro et al. 2016, arXiv:1602.04938): SLIC superpixels switched on/off at
random, target probabilities fitted by a ridge regression weighted by an exponential kernel on
the cosine distance to the unperturbed image; a pixel gets its superpixel's coefficient. Each
sample's on/off design is drawn from its own generator, seeded from (seed, the sample's values).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..base import Evaluations, ExplainContext, Geometry, PerturbationMethod
from ..baselines import check_baseline, make_baseline
from ..options import (
    BLUR_SIGMA,
    INFERENCE_PATH,
    SEED,
    AttributionOptions,
    Option,
    non_negative,
    positive,
    positive_int,
)
from ..seeding import sample_seeds


def _check_hide(name: str, value: Any) -> None:
    if value != "superpixel_mean":
        check_baseline(name, value)


LIME_SAMPLES = Option("lime_samples", 200, "perturbed images per input", check=positive_int)
LIME_SEGMENTS = Option("lime_segments", 50, "SLIC superpixels requested", check=positive_int)
LIME_COMPACTNESS = Option("lime_compactness", 10.0, "SLIC compactness", check=positive)
LIME_KERNEL_WIDTH = Option("lime_kernel_width", 0.25, "width of the exponential kernel on cosine distance",
                           check=positive)
LIME_ALPHA = Option("lime_alpha", 1.0, "ridge penalty of the local linear model", check=non_negative)
LIME_HIDE = Option("lime_hide", "superpixel_mean", "what a switched-off superpixel shows: 'superpixel_mean' or a "
                   "baseline spec", check=_check_hide)


def superpixels(image: torch.Tensor, n_segments: int, compactness: float) -> np.ndarray:
    """SLIC labels [H, W] (0..n-1) of one image [C, H, W], scaled to [0, 1] first."""
    from skimage.segmentation import slic

    arr = image.detach().float().cpu().numpy()
    lo, hi = float(arr.min()), float(arr.max())
    arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    if arr.shape[0] == 1:
        labels = slic(arr[0], n_segments=n_segments, compactness=compactness, channel_axis=None, start_label=0)
    else:
        labels = slic(
            np.moveaxis(arr, 0, -1),
            n_segments=n_segments,
            compactness=compactness,
            channel_axis=-1,
            convert2lab=arr.shape[0] == 3,
            start_label=0,
        )
    # SLIC may skip label values; make them contiguous.
    _, contiguous = np.unique(labels, return_inverse=True)
    return contiguous.reshape(labels.shape)


def superpixel_mean(image: torch.Tensor, labels: torch.Tensor, n: int) -> torch.Tensor:
    """Each pixel replaced by its superpixel's mean colour."""
    c = image.shape[0]
    flat = image.reshape(c, -1)
    lab = labels.flatten()
    sums = torch.zeros(c, n, device=image.device).index_add_(1, lab, flat)
    counts = torch.bincount(lab, minlength=n).clamp_min(1).to(image.dtype)
    return (sums / counts)[:, lab].view_as(image)


class LIME(PerturbationMethod):
    name = "lime"
    listing = 130
    label = "LIME"
    paper = 'Ribeiro, Singh & Guestrin (2016). "Why Should I Trust You?": Explaining the Predictions of Any Classifier. KDD.'
    # seed and blur_sigma also reach 'uniform' and 'blur' fills
    options = (LIME_SAMPLES, LIME_SEGMENTS, LIME_COMPACTNESS, LIME_KERNEL_WIDTH, LIME_ALPHA, LIME_HIDE,
               BLUR_SIGMA, SEED, *INFERENCE_PATH)
    stochastic = True

    @classmethod
    def evaluations(cls, opts: AttributionOptions, geometry: Geometry) -> Evaluations:
        n = geometry.batch * opts.lime_samples
        return Evaluations(forward=n, backward=0, expanded=n)

    def run(self, ctx: ExplainContext) -> torch.Tensor:
        from sklearn.linear_model import Ridge

        opts = ctx.options
        x = ctx.inputs.float()
        s = opts.lime_samples
        seeds = sample_seeds(opts.seed, x)
        labels: list[torch.Tensor] = []
        designs: list[torch.Tensor] = []
        hidden: list[torch.Tensor] = []
        spec = opts.lime_hide
        fill = None if spec == "superpixel_mean" else make_baseline(spec, x, seed=opts.seed, blur_sigma=opts.blur_sigma)
        for b in range(ctx.batch):
            lab = torch.as_tensor(superpixels(x[b], opts.lime_segments, opts.lime_compactness), device=x.device)
            n = int(lab.max()) + 1
            z = np.random.default_rng(seeds[b]).integers(0, 2, size=(s, n)).astype(np.float32)
            z[0] = 1.0  # the unperturbed image anchors the local model
            labels.append(lab)
            designs.append(torch.as_tensor(z, device=x.device))
            hidden.append(superpixel_mean(x[b], lab, n) if fill is None else fill[b])

        def make(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
            rows = []
            tg = []
            for i in range(start, stop):
                b, k = divmod(i, s)
                on = designs[b][k][labels[b]].bool().unsqueeze(0)
                rows.append(torch.where(on, x[b], hidden[b]))
                tg.append(ctx.targets[b])
            return torch.stack(rows), torch.stack(tg)

        probs = ctx.scores_over(ctx.batch * s, make, kind="prob").view(ctx.batch, s).cpu().numpy()
        out = torch.zeros_like(x)
        for b in range(ctx.batch):
            z = designs[b].cpu().numpy().astype(np.float64)
            norms = np.linalg.norm(z, axis=1)
            cos = np.where(norms > 0, z.sum(1) / (norms * np.sqrt(z.shape[1]) + 1e-12), 0.0)
            dist = 1.0 - cos
            kernel = np.sqrt(np.exp(-(dist**2) / opts.lime_kernel_width**2))
            reg = Ridge(alpha=opts.lime_alpha, fit_intercept=True)
            reg.fit(z, probs[b].astype(np.float64), sample_weight=kernel)
            coef = torch.as_tensor(reg.coef_, dtype=torch.float32, device=x.device)
            out[b] = coef[labels[b]].unsqueeze(0).expand_as(x[b])
        return out
