"""What the Explain page shows beside the maps: faithfulness curves, feature maps, cost estimates,
the sanity check, and the true-class view for misclassified samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch

from audit.attribution.engine_record import describe_engine  # noqa: F401 - the Provenance tab's words
from audit.services.auth import SYSTEM, Principal, require
from audit.services.explain import ImageExplanation
from audit.services.handles import handle_for
from audit.services.registry import get_version

CURVE_STEPS = 20
# The sanity check's cheaper settings, and the cost per sample of one map above which a method is left out
SANITY_OPTIONS: dict[str, Any] = {"ig_steps": 16, "sg_samples": 8}
SANITY_MAX_EVALUATIONS = 64


def _input(exp: ImageExplanation) -> tuple[Any, torch.Tensor]:
    handle = handle_for(exp.family, exp.version)
    raw = torch.from_numpy(exp.image).unsqueeze(0)
    return handle, handle.input_spec.normalize(raw).to(handle.device)


@dataclass
class Curves:
    fractions: list[float]
    deletion: dict[str, list[float]]
    insertion: dict[str, list[float]]
    deletion_auc: dict[str, float]
    insertion_auc: dict[str, float]


def faithfulness_curves(exp: ImageExplanation, *, steps: int = CURVE_STEPS) -> Curves:
    """Deletion (lower AUC is better) and insertion (higher is better) for every map of the explanation."""
    from audit.quality import deletion_curve, insertion_curve

    handle, x = _input(exp)
    t = torch.tensor([exp.target], device=x.device)
    out = Curves([], {}, {}, {}, {})
    for method, sm in exp.maps.items():
        attr = torch.from_numpy(sm.attribution).unsqueeze(0).to(x.device)
        with handle.lock:  # forwards on the shared module would fire another session's capture hooks
            d = deletion_curve(handle.module, x, t, attr, steps=steps)
            i = insertion_curve(handle.module, x, t, attr, steps=steps)
        out.fractions = d.fractions.tolist()
        out.deletion[method] = d.curves[0].tolist()
        out.insertion[method] = i.curves[0].tolist()
        out.deletion_auc[method] = float(d.auc[0])
        out.insertion_auc[method] = float(i.auc[0])
    return out


def feature_maps(exp: ImageExplanation, *, max_layers: int = 4, channels: int = 6) -> list[dict[str, Any]]:
    """Activations of the last convolutions (up to ``max_layers``), the strongest ``channels`` of each."""
    from audit.attribution import HookBundle
    from audit.attribution.layers import conv_modules

    handle, x = _input(exp)
    convs = conv_modules(handle.module)  # nn.Conv2d, or the convolutions of an unflattened torch.export program
    picks = convs[-max_layers:]
    captured: dict[str, torch.Tensor] = {}
    with handle.lock, HookBundle() as hooks:
        for name, module in picks:
            hooks.forward(module, lambda _m, _i, o, name=name: captured.__setitem__(name, o.detach()))
        with torch.no_grad():
            handle.module(x)
    out = []
    for name, _ in picks:
        act = captured[name][0].float().cpu()
        strength = act.mean(dim=(1, 2))
        top = torch.argsort(strength, descending=True)[:channels]
        out.append({"layer": name, "channels": top.tolist(), "maps": act[top].numpy(), "shape": list(act.shape)})
    return out


def cost_estimate(family: str, version: str, *, methods: Sequence[str], **options: Any) -> dict[str, dict[str, Any]]:
    """FLOPs, passes and peak memory per method for this model and input size (computed from the model), with
    ``options`` (attribution options; the declared defaults where not given)."""
    from audit.attribution import method_costs

    handle = handle_for(family, version)
    costs = method_costs(handle.module, handle.input_spec.shape, methods=list(methods), **options)
    return {m: {"forward_samples": c.forward_samples, "backward_samples": c.backward_samples,
                "gflops": c.flops / 1e9, "peak_mem_mb": c.peak_mem_bytes / 2**20, "shared_pass": c.shared_pass}
            for m, c in costs.items()}


def true_class_view(exp: ImageExplanation, *, methods: Sequence[str], options: Optional[dict[str, Any]] = None,
                    actor: Principal = SYSTEM) -> Optional[dict[str, Any]]:
    """For a misclassified reference sample: maps for the true class and its rank among the classes."""
    from audit.services.explain import explain_image

    if exp.true_label is None or exp.true_label == int(np.argmax(exp.probabilities)):
        return None
    rank = int((exp.probabilities > exp.probabilities[exp.true_label]).sum()) + 1
    true_exp = explain_image(exp.family, exp.version, methods=methods, dataset=_dataset_of(exp),
                             sample_key=exp.sample_key, target=exp.true_label, options=options, actor=actor)
    return {"true_label": exp.true_label, "rank": rank, "maps": {m: sm.attribution for m, sm in true_exp.maps.items()}}


def _dataset_of(exp: ImageExplanation) -> str:
    if exp.sample_key is None:
        raise ValueError("uploaded images have no true label")
    return exp.sample_key.rsplit("-", 1)[0]


def sanity_methods(exp: ImageExplanation, *, max_evaluations: int = SANITY_MAX_EVALUATIONS) -> list[str]:
    """The methods of ``exp`` the sanity check runs: those whose declared cost at the check's options is at
    most ``max_evaluations`` model evaluations (forward + backward) per sample, since the cascade recomputes
    every map once per randomisation step. Perturbation methods with many evaluations (LIME, RISE, SHAP, and
    occlusion or Score-CAM where the input or the CAM layer is large) are left out."""
    if not exp.maps:
        return []
    costs = cost_estimate(exp.family, exp.version, methods=list(exp.maps), **SANITY_OPTIONS)
    return [m for m in exp.maps
            if costs[m]["forward_samples"] + costs[m]["backward_samples"] <= max_evaluations]


def sanity(exp: ImageExplanation, *, methods: Sequence[str], max_steps: int = 4,
           actor: Principal = SYSTEM) -> dict[str, Any]:
    """Cascading parameter randomisation on this sample: per method, rank correlation after each step."""
    from audit.quality import sanity_check

    require(actor, "run")
    handle, x = _input(exp)
    t = torch.tensor([exp.target], device=x.device)
    with handle.lock:
        res = sanity_check(handle.module, x, t, list(methods), max_steps=max_steps, **SANITY_OPTIONS)
    return {"steps": list(res.steps), "correlations": {k: list(v) for k, v in res.correlations.items()},
            "flagged": dict(res.flagged), "threshold": res.threshold, "status": dict(res.status),
            "reasons": {m: res.reason(m) for m in res.status}}


def reference_view(family: str, version: str, dataset: str, key: str) -> dict[str, Any]:
    """One reference sample as the model sees it (its resize and crop), for a page: the image [H, W(, 3)] in
    [0, 1], its declared region moved into the view, its class name, groups and stored size. One image is
    decoded, not the whole set."""
    from audit.services.datasets import load_image_samples

    handle = handle_for(family, version)
    s = load_image_samples(dataset, keys=[key], model=handle)
    img = s.images[0]
    return {"key": key, "image": img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy(),
            "region": s.regions[0], "label": s.label_texts[0], "groups": dict(s.groups[0]),
            "stored_size": tuple(s.sizes[0]), "outside_view": bool(s.outside_view[0]),
            "preprocessing": handle.input_spec.describe()}


def sample_region(exp: ImageExplanation) -> Optional[Any]:
    """The region the explained reference sample declares, moved into the model's view (the image the maps
    are on: a pixel box or a boolean mask), or None (none declared, or the crop leaves it out)."""
    from audit.services.datasets import load_image_samples

    if exp.sample_key is None:
        return None
    handle = handle_for(exp.family, exp.version)
    return load_image_samples(_dataset_of(exp), keys=[exp.sample_key], model=handle).regions[0]


def localisation(exp: ImageExplanation, region: Optional[Any]) -> dict[str, dict[str, float]]:
    """Per method: relevance mass accuracy and pointing game of its map against ``region``.

    ``region`` is a box [x0, y0, x1, y1] or a boolean mask in the model's view of the image (``exp.image``,
    as ``sample_region`` gives it); it is scaled to the map's size by `region_masks` (a pixel the region
    touches is in it), so both audits score the same pixels.
    An empty dict when there is no region or no map.
    """
    from audit.fairness.disparity import region_masks
    from audit.quality import localisation as score
    if region is None or not exp.maps:
        return {}
    image_size = (int(exp.image.shape[-2]), int(exp.image.shape[-1]))
    out: dict[str, dict[str, float]] = {}
    for method, sm in exp.maps.items():
        attr = torch.from_numpy(np.asarray(sm.attribution))
        map_size = (int(attr.shape[-2]), int(attr.shape[-1]))
        res = score(attr.unsqueeze(0), region_masks([region], image_size=image_size, map_size=map_size))
        out[method] = {"relevance_mass": res.relevance_mass_mean, "pointing_game": res.pointing_game_mean}
    return out


def method_labels() -> dict[str, str]:
    """Every registered attribution method's name mapped to the name people use for it."""
    from audit.attribution.registry import registered

    return {name: cls.label for name, cls in registered().items()}


# The Explain form's numeric options; the page says which control shows which.
FORM_OPTIONS: tuple[str, ...] = ("ig_steps", "sg_samples", "occlusion_window", "seed", "fast")


def _lowest_accepted(opt: Any) -> Optional[int]:
    """The smaller of 0 and 1 that an integer option's own check accepts (None: neither, or no check)."""
    if opt.check is None:
        return None
    for value in (0, 1):
        try:
            opt.check(opt.name, value)
        except (TypeError, ValueError):
            continue
        return value
    return None


def explain_form(family: str, version: str) -> dict[str, Any]:
    """What the Explain page offers, read from the attribution registry: ``methods`` (every registered method,
    in listing order), ``labels`` (name -> the name people use), ``default`` (the engine's default methods) and
    ``options`` (name -> ``default``, ``min``, ``max``, ``help``) for :data:`FORM_OPTIONS`.

    Defaults are the declared ones, so the page asks for the maps the CLI and the engine compute by default.
    Bounds: the lowest value the option's check accepts; IG's steps up to its declared step cap
    (``ig_max_steps``); the occlusion window up to the input's shorter side, and by default at most a quarter
    of it (a 32-pixel input gets 4 x 4 windows, not 2 x 2)."""
    from audit.attribution import DEFAULT_METHODS
    from audit.attribution.registry import option_table, registered

    info = get_version(family, version)
    side = min(int(info["input_spec"].get("height", 224)), int(info["input_spec"].get("width", 224)))
    table = option_table()
    options: dict[str, dict[str, Any]] = {}
    for name in FORM_OPTIONS:
        opt = table[name]
        integer = isinstance(opt.default, int) and not isinstance(opt.default, bool)
        options[name] = {"default": opt.default, "min": _lowest_accepted(opt) if integer else None, "max": None,
                         "help": opt.doc}
    options["ig_steps"]["max"] = table["ig_max_steps"].default
    window = options["occlusion_window"]
    window["max"] = side
    window["default"] = max(window["min"] or 1, min(window["default"], side // 4))
    classes = registered()
    return {"methods": list(classes), "labels": {name: cls.label for name, cls in classes.items()},
            "default": [m for m in DEFAULT_METHODS if m in classes], "options": options}
