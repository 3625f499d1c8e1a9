"""RISE (Petsiuk et al. 2018, arXiv:1806.07421): the target probability under random smooth
masks, averaged with the masks as weights: S = sum_i p_i M_i / (N * p).

Masks are bilinearly upsampled random grids with random sub-cell shifts. Each sample has its own
mask bank, drawn from (seed, the sample's values), and masks are materialised per batch of
evaluations, so only one batch of full-size masks is ever in memory.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..base import Evaluations, ExplainContext, Geometry, PerturbationMethod
from ..options import (
    INFERENCE_PATH,
    SEED,
    AttributionOptions,
    Option,
    in_open,
    positive_int,
)
from ..seeding import sample_seeds, torch_generator

RISE_MASKS = Option("rise_masks", 500, "random masks per input", check=positive_int)
RISE_CELLS = Option("rise_cells", 7, "grid cells per side of the low-resolution masks", check=positive_int)
RISE_P = Option("rise_p", 0.5, "probability that a cell is kept", check=in_open(0.0, 1.0))


class MaskBank:
    """Deterministic RISE masks of one sample, materialised on demand by index."""

    def __init__(self, n: int, cells: int, p: float, size: tuple[int, int], seed: int, device: torch.device):
        gen = torch_generator(seed)
        self.size = size
        self.cell = (math.ceil(size[0] / cells), math.ceil(size[1] / cells))
        self.grid = (torch.rand(n, 1, cells, cells, generator=gen) < p).float().to(device)
        self.shift_y = torch.randint(0, self.cell[0], (n,), generator=gen).tolist()
        self.shift_x = torch.randint(0, self.cell[1], (n,), generator=gen).tolist()
        self.up = ((cells + 1) * self.cell[0], (cells + 1) * self.cell[1])

    def masks(self, index: torch.Tensor) -> torch.Tensor:
        big = F.interpolate(self.grid[index], size=self.up, mode="bilinear", align_corners=False)
        h, w = self.size
        rows = []
        for j, i in enumerate(index.tolist()):
            dy, dx = self.shift_y[i], self.shift_x[i]
            rows.append(big[j, :, dy : dy + h, dx : dx + w])
        return torch.stack(rows)


class RISE(PerturbationMethod):
    name = "rise"
    listing = 120
    label = "RISE"
    paper = 'Petsiuk, Das & Saenko (2018). RISE: Randomized Input Sampling for Explanation of Black-box Models. BMVC.'
    options = (RISE_MASKS, RISE_CELLS, RISE_P, SEED, *INFERENCE_PATH)
    stochastic = True

    @classmethod
    def evaluations(cls, opts: AttributionOptions, geometry: Geometry) -> Evaluations:
        n = geometry.batch * opts.rise_masks
        return Evaluations(forward=n, backward=0, expanded=n)

    def run(self, ctx: ExplainContext) -> torch.Tensor:
        opts = ctx.options
        x = ctx.inputs.float()
        h, w = x.shape[-2:]
        n = opts.rise_masks
        seeds = sample_seeds(opts.seed, x)
        banks: dict[int, MaskBank] = {}

        def bank(b: int) -> MaskBank:
            if b not in banks:
                banks.clear()  # samples come in order: keep one bank alive
                banks[b] = MaskBank(n, opts.rise_cells, opts.rise_p, (h, w), seeds[b], x.device)
            return banks[b]

        saliency = torch.zeros(ctx.batch, h * w, device=x.device)
        step = ctx.chunk(with_grad=False)
        total = ctx.batch * n
        with torch.no_grad():
            for start in range(0, total, step):
                idx = torch.arange(start, min(total, start + step), device=x.device)
                bi, mi = idx // n, idx % n
                m = torch.cat([bank(int(b)).masks(mi[bi == b]) for b in torch.unique_consecutive(bi).tolist()])
                probs = ctx.forward(x[bi] * m, heavy=True).softmax(1).gather(1, ctx.targets[bi].view(-1, 1))
                saliency.index_add_(0, bi, probs * m.view(len(idx), -1))
        saliency = saliency / (n * opts.rise_p)
        return saliency.view(ctx.batch, 1, h, w).expand_as(x).contiguous()
