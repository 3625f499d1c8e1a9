"""ONNX models (the deployed artifact): converted to a torch module with onnx2torch, and checked at
registration against onnxruntime's logits on the same inputs before anything is stored.

The file is parsed as protobuf only (no code runs); external data files are refused, since their
locations would make the loader read other files on the server. Tolerance: the largest absolute logit
difference may be at most ``tolerance`` (default 1e-4) times the logit scale, max(1, max |logit|)
of onnxruntime's outputs on the check inputs. A deviating model is refused with the operators whose
outputs first differ.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from audit.models.loading import ModelLoadError, _one_line

DEFAULT_TOLERANCE = 1e-4
RANDOM_CHECK_INPUTS = 8
CHECK_SEED = 0
ONNX_HINT = "export it with torch.onnx.export(model, (example,), 'model.onnx', dynamic_axes={'x': {0: 'batch'}})"


@dataclass
class OnnxCheck:
    """How the converted module compares with onnxruntime, as stored with the version."""

    max_abs_diff: float
    logit_scale: float
    tolerance: float
    inputs: str  # what the check ran on: "reference set NAME (N images)" or "N seeded random inputs (seed S)"
    samples: int
    converter: str
    runtime: str
    opset: int
    converted_opset: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_onnx(path: str | Path) -> Any:
    """Parse the file as an ONNX model (protobuf only); refuse anything else and external data."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"ONNX file not found: {path}")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path.name} is empty")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: any parse failure means "not ONNX"
        raise ModelLoadError(f"{path.name} is not an ONNX model ({_one_line(exc)})") from None
    if not model.graph.node or not model.graph.output or not model.opset_import:
        raise ModelLoadError(f"{path.name} is not an ONNX model (no graph, outputs or opset); {ONNX_HINT}")
    if any(uses_external_data(t) for t in model.graph.initializer):
        raise ModelLoadError(f"{path.name} keeps its weights in external data files; save it as one file "
                             "(onnx.save(model, path, save_as_external_data=False))")
    return model


def _opset(model: Any, domain: str = "") -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and domain in ("", "ai.onnx") or imp.domain == domain:
            return int(imp.version)
    return 0


def unsupported_operators(model: Any) -> list[str]:
    """Operator types of the graph that onnx2torch cannot convert at the model's opset."""
    from onnx2torch.node_converters.registry import get_converter

    missing = []
    for node in model.graph.node:
        domain = node.domain or ""
        try:
            get_converter(node.op_type, _opset(model, domain), domain or "")
        except NotImplementedError:
            missing.append(f"{node.op_type}" + (f" ({domain})" if domain else ""))
    return sorted(set(missing))


def convert_onnx(path: str | Path) -> nn.Module:
    """The ONNX graph as a torch module (an fx GraphModule whose sub-modules are named after the nodes).

    onnx2torch has converters up to a certain opset per operator; a newer model is first rewritten to
    the highest older opset at which every operator converts (ONNX's own version converter), and the
    registration check then compares the result with onnxruntime on the original file."""
    path = Path(path)
    model = read_onnx(path)
    missing = unsupported_operators(model)
    opset = _opset(model)
    candidate = model
    if missing:
        candidate = _older_opset(model, opset)
        if candidate is None:
            raise ModelLoadError(f"{path.name} does not convert to torch: no converter for operator(s) "
                                 f"{', '.join(missing)} at opset {opset}")
    from onnx2torch import convert

    try:
        module = convert(candidate)
    except Exception as exc:  # noqa: BLE001 - a converter that fails on this node's attributes
        raise ModelLoadError(f"{path.name} does not convert to torch ({type(exc).__name__}: {_one_line(exc)})") from None
    module.onnx_opsets = (opset, _opset(candidate))  # type: ignore[attr-defined]  # (file's, converted at)
    return module.eval()


def _older_opset(model: Any, opset: int, oldest: int = 11) -> Any:
    """The model rewritten to the newest opset below ``opset`` at which every operator converts, or None."""
    from onnx import version_converter

    for target in range(opset - 1, oldest - 1, -1):
        try:
            candidate = version_converter.convert_version(model, target)
        except Exception:  # noqa: BLE001 - no adapter for some operator at this opset: try an older one
            continue
        if not unsupported_operators(candidate):
            return candidate
    return None


def _session(model: Any) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _run_runtime(session: Any, x: np.ndarray) -> list[np.ndarray]:
    """All outputs of ``session`` on ``x``, one sample at a time when the model's batch is fixed at 1."""
    first = session.get_inputs()[0]
    fixed = isinstance(first.shape[0], int) and first.shape[0] == 1 if first.shape else False
    if not fixed:
        return session.run(None, {first.name: x})
    parts = [session.run(None, {first.name: x[i:i + 1]}) for i in range(len(x))]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def check_against_runtime(path: str | Path, module: nn.Module, inputs: torch.Tensor, *, described: str,
                          tolerance: Optional[float] = None) -> OnnxCheck:
    """Compare the converted module's logits with onnxruntime's on ``inputs`` (normalised [N, C, H, W])."""
    import importlib.metadata

    import onnxruntime

    path = Path(path)
    tol = DEFAULT_TOLERANCE if tolerance is None else float(tolerance)
    if not tol > 0:
        raise ModelLoadError(f"the ONNX tolerance must be positive, got {tolerance}")
    model = read_onnx(path)
    x = inputs.detach().float().cpu()
    try:
        session = _session(model)
        expected = _run_runtime(session, x.numpy())[0]
    except Exception as exc:  # noqa: BLE001 - the runtime itself refuses the graph or the input shape
        raise ModelLoadError(f"onnxruntime cannot run {path.name} on inputs {tuple(x.shape)} ({_one_line(exc)})") from None
    with torch.no_grad():
        got = module(x).float().numpy()
    if got.shape != expected.shape:
        raise ModelLoadError(f"{path.name}: the converted module returns {got.shape}, onnxruntime {expected.shape}")
    diff = float(np.abs(got - expected).max())
    scale = max(1.0, float(np.abs(expected).max()))
    check = OnnxCheck(max_abs_diff=diff, logit_scale=scale, tolerance=tol, inputs=described, samples=len(x),
                      converter=f"onnx2torch {importlib.metadata.version('onnx2torch')}",
                      runtime=f"onnxruntime {onnxruntime.__version__}", opset=_opset(model),
                      converted_opset=int(getattr(module, "onnx_opsets", (0, _opset(model)))[1]))
    if not np.isfinite(diff) or diff > tol * scale:
        culprits = deviating_operators(model, module, x[:2], tol)
        where = f"; outputs first differ at {', '.join(culprits)}" if culprits else ""
        raise ModelLoadError(f"{path.name}: the converted model deviates from onnxruntime by {diff:.3g} (allowed "
                             f"{tol:g} x logit scale {scale:.3g}){where}")
    return check


def deviating_operators(model: Any, module: nn.Module, x: torch.Tensor, tol: float, limit: int = 3) -> list[str]:
    """The first nodes (graph order) whose converted output differs from onnxruntime's, as 'OpType (name)'."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        probe = onnx.ModelProto()
        probe.CopyFrom(inferred)
        known = {o.name for o in probe.graph.output}
        typed = {vi.name: vi for vi in probe.graph.value_info}
        for node in probe.graph.node:
            for out in node.output[:1]:
                if out in typed and out not in known:
                    probe.graph.output.append(typed[out])
        names = [o.name for o in probe.graph.output]
        runtime = dict(zip(names, _run_runtime(_session(probe), x.numpy())))
        captured: dict[str, np.ndarray] = {}
        handles = [sub.register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach().float().numpy())
            if isinstance(out, torch.Tensor) else None)
            for name, sub in module.named_modules() if name]
        try:
            with torch.no_grad():
                module(x)
        finally:
            for h in handles:
                h.remove()
    except Exception:  # noqa: BLE001 - localising is best effort; the refusal stands without it
        return []
    from onnx2torch.onnx_graph import OnnxGraph

    found, counters = [], {}
    for node in model.graph.node:
        base = OnnxGraph.generate_node_name(node)  # the converter's name for the node's module
        count = counters[base] = counters.get(base, -1) + 1
        module_name = base + (f"_{count}" if count else "")
        ours, theirs = captured.get(module_name), runtime.get(node.output[0]) if node.output else None
        if ours is None or theirs is None or ours.shape != theirs.shape:
            continue
        if float(np.abs(ours - theirs).max()) > tol * max(1.0, float(np.abs(theirs).max())):
            found.append(f"{node.op_type} ({node.name})")
            if len(found) >= limit:
                break
    return found


def random_check_inputs(shape: tuple[int, int, int], normalize: Any, n: int = RANDOM_CHECK_INPUTS,
                        seed: int = CHECK_SEED) -> torch.Tensor:
    """``n`` seeded uniform images in [0, 1], normalised as the version's input spec says."""
    g = torch.Generator().manual_seed(seed)
    return normalize(torch.rand(n, *shape, generator=g))
