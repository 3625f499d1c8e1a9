"""Per-sample random streams: a sample's draws depend on (seed, the sample), never on its batch.

Each sample's generator is seeded from the run's seed and a hash of the sample's own float32
values, so a map is the same whether the sample is explained alone, first, last or beside others.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

SEED_BITS = 63


def sample_seeds(seed: int, inputs: torch.Tensor, *, salt: str = "") -> list[int]:
    """One non-negative 63-bit seed per sample of ``inputs`` [B, ...], from (salt, seed, content).

    ``salt`` separates independent streams of one sample (e.g. a method's draws and a random
    reference input), so they are not the same numbers.
    """
    rows = inputs.detach().to(device="cpu", dtype=torch.float32).contiguous().reshape(inputs.shape[0], -1).numpy()
    shape = ",".join(map(str, inputs.shape[1:])).encode()
    head = b"%s|%d|%s|" % (salt.encode(), int(seed), shape)
    out = []
    for row in rows:
        digest = hashlib.sha256(head + np.ascontiguousarray(row).tobytes()).digest()
        out.append(int.from_bytes(digest[:8], "little") >> (64 - SEED_BITS))
    return out


def torch_generator(seed: int) -> torch.Generator:
    """A CPU generator (draws are moved to the device afterwards, so CPU and CUDA runs agree)."""
    return torch.Generator(device="cpu").manual_seed(seed)
