"""The cascading-randomisation sanity check runs on TorchScript models (no ``get_submodule`` there): it
randomises the same modules in the same order, with the same seeds, as on the eager model it was traced from."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audit.quality import sanity_check


class _Conv(nn.Module):
    """A convolution without ``reset_parameters``, so eager and scripted copies are re-drawn the same way."""

    def __init__(self, c_in: int, c_out: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 3, 3, generator=g) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, padding=1)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = _Conv(3, 6, 1)
        self.b = _Conv(6, 6, 2)
        self.head = _Conv(6, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.b(torch.relu(self.a(x))))).mean((2, 3))


def test_sanity_check_on_a_traced_model_equals_the_eager_one():
    eager = _Net().eval()
    x = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    traced = torch.jit.trace(eager, x[:1])
    kwargs = dict(max_steps=3, ig_steps=8)
    on_eager = sanity_check(eager, x, None, ["saliency", "integrated_gradients"], **kwargs)
    on_traced = sanity_check(traced, x, None, ["saliency", "integrated_gradients"], **kwargs)
    assert on_traced.status == on_eager.status
    for method, rhos in on_eager.correlations.items():
        assert torch.allclose(torch.as_tensor(on_traced.correlations[method]), torch.as_tensor(rhos), atol=1e-5)
    # the cascade really re-drew the traced copy's weights: the maps moved away from the original ones
    assert on_traced.correlations["saliency"][-1] < 0.99
    # and the model passed in is untouched
    assert torch.equal(traced.a.weight, eager.a.weight)
