"""Incremental re-evaluation of locally changed inputs on a traced model (occlusion's windows).

An occluded image differs from the clean one inside one window only. Through convolutions,
pooling, pointwise layers and residual additions that change stays local, so each layer is
recomputed on the window's region of influence only (a crop with the halo the kernel needs) and
the clean activation is used everywhere else. Once a region covers most of its feature map, or a
layer mixes all positions (global pooling, flatten, linear), the crop is pasted into the clean
activation and the rest of the graph runs as usual. The result equals a full forward of the
occluded image up to float rounding (the same sums, in crops).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import fx, nn

# Beyond this fraction of its feature map a region is pasted in and computed in full.
MATERIALISE_FRACTION = 0.5

POINTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Tanh,
    nn.Identity, nn.Dropout, nn.Dropout2d, nn.BatchNorm2d,
)
POINTWISE_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset({
    F.relu, torch.relu, F.relu6, F.leaky_relu, F.hardswish, F.hardsigmoid, F.silu, F.gelu, torch.sigmoid,
    torch.tanh,
})
POINTWISE_METHODS = frozenset({"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "contiguous"})
ADD_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset({operator.add, operator.iadd, torch.add})
ADD_METHODS = frozenset({"add", "add_"})
IN_PLACE_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset({
    operator.iadd, operator.isub, operator.imul, operator.itruediv,
})


@dataclass
class Local:
    """Per-sample crops [N, C, h, w] of an activation at per-sample offsets; outside, the clean
    activation of the sample's image holds."""

    crop: torch.Tensor
    image: list[int]  # per sample: its clean image's index
    oy: list[int]
    ox: list[int]
    height: int  # the full feature map's size
    width: int

    def like(self, crop: torch.Tensor) -> "Local":
        """The same samples and corners with another crop (a pointwise layer's output)."""
        return Local(crop, self.image, self.oy, self.ox, self.height, self.width)


@dataclass
class Spatial:
    """A sliding-window layer's geometry per axis, and how it is applied to a padded window."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    pad_value: float
    apply: Callable[[torch.Tensor], torch.Tensor]


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def spatial_of(module: nn.Module) -> Spatial | None:
    """The window geometry of a Conv2d or MaxPool2d the crop path can reproduce, else None."""
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros" or isinstance(module.padding, str) and module.padding != "valid":
            return None
        padding = (0, 0) if isinstance(module.padding, str) else _pair(module.padding)
        weight, bias = module.weight, module.bias
        stride, dilation, groups = module.stride, module.dilation, module.groups
        return Spatial(_pair(module.kernel_size), _pair(stride), padding, _pair(dilation), 0.0,
                       lambda w: F.conv2d(w, weight, bias, stride, 0, dilation, groups))
    if isinstance(module, nn.MaxPool2d):
        if module.ceil_mode or module.return_indices:
            return None
        k, s, d = module.kernel_size, module.stride, module.dilation
        return Spatial(_pair(k), _pair(s), _pair(module.padding), _pair(d), -math.inf,
                       lambda w: F.max_pool2d(w, k, s, 0, d))
    return None


def _out_span(start: int, size: int, k: int, s: int, p: int, d: int, out_len: int) -> tuple[int, int]:
    """First and last output index whose window touches input rows [start, start + size)."""
    lo = -(-(start + p - (k - 1) * d) // s)
    hi = (start + size - 1 + p) // s
    return max(lo, 0), min(hi, out_len - 1)


class IncrementalModel:
    """Evaluates a traced model on images that differ from clean ones inside a crop.

    ``clean`` holds the B clean images; ``scores`` takes, per evaluated sample, the index of its
    clean image and the crop (all crops one size) with its top-left corner.
    """

    def __init__(self, gm: fx.GraphModule, clean: torch.Tensor, materialise_fraction: float = MATERIALISE_FRACTION):
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.fraction = materialise_fraction
        nodes = list(gm.graph.nodes)
        placeholders = [n for n in nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise ValueError(f"the traced model takes {len(placeholders)} inputs; incremental evaluation needs one")
        self.nodes = nodes
        self.dependent = self._dependent(placeholders[0])
        self._check_in_place()
        self.clean = self._clean_run(clean)
        self._padded: dict[tuple[str, int, int, float], torch.Tensor] = {}

    # ---- set-up ------------------------------------------------------------------------------
    def _dependent(self, root: fx.Node) -> set[fx.Node]:
        seen = {root}
        for node in self.nodes:
            if any(a in seen for a in node.all_input_nodes):
                seen.add(node)
        return seen

    def _clean_run(self, x: torch.Tensor) -> dict[fx.Node, Any]:
        """Every node's clean value, copied as produced (an in-place layer later changes the live
        tensor, not the kept one)."""
        live: dict[fx.Node, Any] = {}
        kept: dict[fx.Node, Any] = {}
        interp = fx.Interpreter(self.gm)
        for node in self.nodes:
            if node.op == "placeholder":
                out: Any = x
            elif node.op == "output":
                break
            else:
                args, kwargs = self._fetch(node, live)
                out = getattr(interp, node.op)(node.target, args, kwargs)
            live[node] = out
            kept[node] = out.clone() if isinstance(out, torch.Tensor) else out
        return kept

    def _check_in_place(self) -> None:
        """An in-place layer whose input has other readers would make those readers see its
        output; crops and kept clean values cannot follow that aliasing, so such graphs are refused."""
        for node in self.nodes:
            inplace = (
                (node.op == "call_module" and bool(getattr(self.modules[str(node.target)], "inplace", False)))
                or (node.op == "call_method" and str(node.target).endswith("_"))
                or (node.op == "call_function" and (node.target in IN_PLACE_FUNCTIONS or node.kwargs.get("inplace")))
            )
            if inplace and node.args and isinstance(node.args[0], fx.Node) and len(node.args[0].users) > 1:
                raise ValueError(f"in-place {node.name} overwrites {node.args[0].name}, which other layers read")

    @staticmethod
    def _fetch(node: fx.Node, env: dict[fx.Node, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        return args, kwargs  # type: ignore[return-value]

    # ---- the crop path -----------------------------------------------------------------------
    def scores(self, image_index: Sequence[int], crops: torch.Tensor, oy: Sequence[int], ox: Sequence[int]) -> torch.Tensor:
        """The model's output for each sample: clean image ``image_index[i]`` with ``crops[i]``
        written at (oy[i], ox[i])."""
        image = [int(i) for i in image_index]
        bi = torch.as_tensor(image, dtype=torch.long, device=crops.device)
        first = next(n for n in self.nodes if n.op == "placeholder")
        h, w = self.clean[first].shape[-2:]
        env: dict[fx.Node, Any] = {first: Local(crops, image, list(oy), list(ox), h, w)}
        interp = fx.Interpreter(self.gm)
        for node in self.nodes:
            if node.op == "placeholder":
                continue
            if node.op == "output":
                out = fx.node.map_arg(node.args[0], lambda n: self._full(n, env[n], bi))
                return out  # type: ignore[return-value]
            if node not in self.dependent:
                env[node] = self.clean[node]
                continue
            value = self._local_step(node, env)
            if value is None:
                for n in node.all_input_nodes:  # pasted in once, however many layers read it
                    env[n] = self._full(n, env[n], bi)
                args, kwargs = self._fetch(node, env)
                value = getattr(interp, node.op)(node.target, args, kwargs)
            elif value.crop.shape[-2] * value.crop.shape[-1] > self.fraction * value.height * value.width:
                value = self._materialise(node, value, bi)
            env[node] = value
        raise ValueError("the traced model has no output node")

    def _local_step(self, node: fx.Node, env: dict[fx.Node, Any]) -> Local | None:
        """The node's output as a crop, or None when it must run on full activations."""
        ins = [env[n] for n in node.all_input_nodes]
        if not ins or not all(isinstance(v, Local) for v in ins):
            return None
        if node.op == "call_module":
            module = self.modules[str(node.target)]
            if len(node.args) != 1 or node.kwargs:
                return None
            if isinstance(module, POINTWISE_MODULES) and not module.training:
                src = env[node.args[0]]
                return src.like(module(src.crop))
            spatial = spatial_of(module)
            if spatial is not None:
                return self._spatial(node.args[0], env[node.args[0]], spatial)
            return None
        if node.op == "call_function" and node.target in POINTWISE_FUNCTIONS:
            if not isinstance(node.args[0], fx.Node):
                return None
            if any(isinstance(a, fx.Node) for a in node.args[1:]):
                return None
            src = env[node.args[0]]
            return src.like(node.target(src.crop, *node.args[1:], **node.kwargs))
        if node.op == "call_method" and node.target in POINTWISE_METHODS and len(node.args) == 1 and not node.kwargs:
            src = env[node.args[0]]
            return src.like(getattr(src.crop, str(node.target))())
        is_add = (node.op == "call_function" and node.target in ADD_FUNCTIONS) or (
            node.op == "call_method" and node.target in ADD_METHODS)
        if is_add and len(node.args) == 2 and not node.kwargs and all(isinstance(a, fx.Node) for a in node.args):
            return self._add(node.args[0], node.args[1], env)  # type: ignore[arg-type]
        return None

    def _padded_clean(self, node: fx.Node, spatial: Spatial) -> torch.Tensor:
        ph, pw = spatial.padding
        key = (node.name, ph, pw, spatial.pad_value)
        if key not in self._padded:
            self._padded[key] = F.pad(self.clean[node], (pw, pw, ph, ph), value=spatial.pad_value)
        return self._padded[key]

    def _spatial(self, src_node: fx.Node, src: Local, sp: Spatial) -> Local:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = sp.kernel, sp.stride, sp.padding, sp.dilation
        out_h = (src.height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        out_w = (src.width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        ch, cw = src.crop.shape[-2:]
        spans_y = [_out_span(y, ch, kh, sh, ph, dh, out_h) for y in src.oy]
        spans_x = [_out_span(x, cw, kw, sw, pw, dw, out_w) for x in src.ox]
        ho = max(max(b - a + 1 for a, b in spans_y), 1)
        wo = max(max(b - a + 1 for a, b in spans_x), 1)
        starts_y = [min(a, out_h - ho) for a, _ in spans_y]
        starts_x = [min(a, out_w - wo) for a, _ in spans_x]
        hi, wi = (ho - 1) * sh + (kh - 1) * dh + 1, (wo - 1) * sw + (kw - 1) * dw + 1
        windows = self._gather(self._padded_clean(src_node, sp), src, starts_y, starts_x, sh, sw, hi, wi, (ph, pw))
        out = sp.apply(windows)
        return Local(out, src.image, starts_y, starts_x, out_h, out_w)

    def _gather(self, base: torch.Tensor, src: Local, starts_y: list[int], starts_x: list[int], sh: int, sw: int,
                hi: int, wi: int, offset: tuple[int, int]) -> torch.Tensor:
        """Per sample: the window of its clean (padded) activation, with its crop written in."""
        ch, cw = src.crop.shape[-2:]
        ph, pw = offset
        out = torch.empty(len(starts_y), base.shape[1], hi, wi, dtype=src.crop.dtype, device=src.crop.device,
                          memory_format=torch.channels_last)
        for i, (oy, ox) in enumerate(zip(starts_y, starts_x)):
            y0, x0 = oy * sh, ox * sw  # window origin in padded coordinates
            out[i] = base[src.image[i], :, y0:y0 + hi, x0:x0 + wi]
            # the crop's rectangle in padded coordinates, intersected with the window
            cy, cx = src.oy[i] + ph, src.ox[i] + pw
            ty0, ty1 = max(cy, y0), min(cy + ch, y0 + hi)
            tx0, tx1 = max(cx, x0), min(cx + cw, x0 + wi)
            if ty0 < ty1 and tx0 < tx1:
                out[i, :, ty0 - y0:ty1 - y0, tx0 - x0:tx1 - x0] = src.crop[i, :, ty0 - cy:ty1 - cy, tx0 - cx:tx1 - cx]
        return out

    def _add(self, a_node: fx.Node, b_node: fx.Node, env: dict[fx.Node, Any]) -> Local | None:
        a, b = env[a_node], env[b_node]
        if (a.height, a.width) != (b.height, b.width) or a.crop.shape[1] != b.crop.shape[1]:
            return None
        spans_y = [(min(ya, yb), max(ya + a.crop.shape[-2], yb + b.crop.shape[-2])) for ya, yb in zip(a.oy, b.oy)]
        spans_x = [(min(xa, xb), max(xa + a.crop.shape[-1], xb + b.crop.shape[-1])) for xa, xb in zip(a.ox, b.ox)]
        ho = max(e - s for s, e in spans_y)
        wo = max(e - s for s, e in spans_x)
        starts_y = [min(s, a.height - ho) for s, _ in spans_y]
        starts_x = [min(s, a.width - wo) for s, _ in spans_x]
        wa = self._gather(self.clean[a_node], a, starts_y, starts_x, 1, 1, ho, wo, (0, 0))
        wb = self._gather(self.clean[b_node], b, starts_y, starts_x, 1, 1, ho, wo, (0, 0))
        return Local(wa + wb, a.image, starts_y, starts_x, a.height, a.width)

    # ---- back to full activations ------------------------------------------------------------

    def _materialise(self, node: fx.Node, value: Local, bi: torch.Tensor) -> torch.Tensor:
        full = self.clean[node].index_select(0, bi).clone()
        ch, cw = value.crop.shape[-2:]
        for i, (oy, ox) in enumerate(zip(value.oy, value.ox)):
            full[i, :, oy:oy + ch, ox:ox + cw] = value.crop[i]
        return full

    def _full(self, node: fx.Node, value: Any, bi: torch.Tensor) -> Any:
        return self._materialise(node, value, bi) if isinstance(value, Local) else value
