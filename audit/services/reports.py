"""Report use cases: gather a version's stored results (computing the missing explanations, quality
checks and drift when asked), render the signed-off-ready PDF, store it by SHA-256, list, download, sign.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from sqlalchemy import select

from audit.env import library_versions
from audit.images import image_to_tensor
from audit.report import (
    Figure,
    Finding,
    ManifestEntry,
    ReportDocument,
    ReportThresholds,
    Section,
    Table,
    render_pdf,
)
from audit.report import figures as figs
from audit.report.compliance import SECTION_BY_KEY
from audit.services.auth import SYSTEM, PermissionDenied, Principal, require
from audit.services.datasets import load_image_samples, load_text_samples
from audit.services.drift import DriftError, compute_drift, pick_reference_set, stored_drift
from audit.services.explain import explain_batch, handle_for, params_key
from audit.services.registry import RegistryError, get_version
from storage import auditlog
from storage.artifacts import ArtifactStore, sha256_bytes
from storage.db import transaction
from storage.orm import AnalysisResult, Report, SignOff, utcnow
from storage.repositories import (
    DatasetRepository,
    ExplanationRepository,
    ModelRepository,
    ReportRepository,
    ResultRepository,
)

log = logging.getLogger(__name__)
Progress = Optional[Callable[[float, str], None]]

FIGURE_METHODS: tuple[str, ...] = ("integrated_gradients", "gradcam", "gradcam_pp", "saliency")
FIGURE_OPTIONS: dict[str, Any] = {"ig_steps": 32, "seed": 0}
SANITY_METHODS: tuple[str, ...] = ("saliency", "gradcam", "integrated_gradients")
N_REPRESENTATIVE = 4
N_MISCLASSIFIED = 4
CURVE_STEPS = 20
SANITY_SAMPLES = 4
DRIFT_LIMIT = {"image": 24, "text": 16}
DRIFT_OPTIONS: dict[str, Any] = {"ig_steps": 16, "seed": 0}
TEXT_IG_STEPS = 16
QUALITY_KIND = "explanation_quality"
DECISIONS = ("approved", "rejected")


class ReportError(ValueError):
    """A report request that cannot be served; the message says why."""


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f):
            return "-"
        return f"{f:.{digits}f}" if abs(f) >= 1e-3 or f == 0 else f"{f:.3e}"
    return str(v)


def _num(v: Any) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(float(v)) else None


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (stays inside [0, 1] for small n)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def _cli(cmd: str, ctx: "_Ctx") -> str:
    return cmd.format(F=ctx.family, V=ctx.version, D=(ctx.dataset or {}).get("name", "DATASET"))


@dataclass
class _Samples:
    """What the explanation and quality sections share: the chosen samples and their maps."""

    keys: list[str]
    titles: list[str]
    kinds: list[str]  # "representative" | "misclassified"
    x: Optional[torch.Tensor] = None  # normalised model inputs
    raw: Optional[np.ndarray] = None  # [B, C, H, W] in [0, 1]
    targets: list[int] = field(default_factory=list)
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # method -> [B, ...] raw maps
    explanation_ids: list[int] = field(default_factory=list)
    text_results: list[Any] = field(default_factory=list)


@dataclass
class _Ctx:
    family: str
    version: str
    info: dict[str, Any]
    description: str
    task: str
    kind: str  # image | text
    dataset: Optional[dict[str, Any]]
    compute: bool
    actor: Principal
    thresholds: ReportThresholds
    progress: Progress
    manifest: list[ManifestEntry] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    handle: Any = None
    probs: Optional[np.ndarray] = None  # [N, K] on the reference set
    labels_true: list[Optional[int]] = field(default_factory=list)
    sample_keys: list[str] = field(default_factory=list)
    sample_groups: list[dict[str, Any]] = field(default_factory=list)
    samples: Optional[_Samples] = None
    computed: list[str] = field(default_factory=list)

    def tick(self, frac: float, msg: str) -> None:
        if self.progress:
            self.progress(frac, msg)

    def find(self, area: str, check: str, status: str, detail: str, section: str) -> None:
        self.findings.append(Finding(area, check, status, detail, section))  # type: ignore[arg-type]

    def results(self, kind: str) -> list[AnalysisResult]:
        with transaction() as s:
            return list(ResultRepository(s).for_version(self.info["id"], kind))

    def use_result(self, row: AnalysisResult, description: str) -> None:
        self.manifest.append(ManifestEntry(row.kind, row.id, row.artifact_sha256 or row.params_sha256, description))


def _section(key: str) -> Section:
    return Section(key, SECTION_BY_KEY[key].title)


# ------------------------------------------------------------------ sections

def _intended_use(ctx: _Ctx) -> Section:
    sec = _section("intended_use")
    info = ctx.info
    sec.text(f"Intended use as registered for the family: {ctx.description or '(no description recorded)'}")
    sec.text(f"Version notes: {info.get('notes') or '(none)'}")
    sec.text("The registry keeps no separate intended-use statement, user population or deployment context; "
             "the reviewer should confirm them before sign-off.", "note")
    spec = info.get("input_spec") or {}
    model_input = (f"image {spec.get('channels')}x{spec.get('height')}x{spec.get('width')}, mean {spec.get('mean')}, "
                   f"std {spec.get('std')}" if spec else "text (the model's own tokenizer)")
    labels = list(info.get("labels") or [])
    rows = [["Family", ctx.family], ["Version", ctx.version], ["Task", ctx.task],
            ["Architecture", info.get("architecture")], ["Format", info.get("format")],
            ["Classes", f"{len(labels)}: {', '.join(labels[:20])}{' ...' if len(labels) > 20 else ''}"],
            ["Input", model_input], ["Explained layer (CAM methods)", info.get("target_layer") or "-"],
            ["Parent version", info.get("parent") or "- (first version)"], ["Status", info.get("status")],
            ["Registered by", info.get("created_by")], ["Registered at (UTC)", (info.get("created_at") or "")[:19]],
            ["Model SHA-256", info.get("sha256")]]
    sec.add(Table(["Property", "Value"], rows, widths=[0.3, 0.7], mono_columns=()))
    from audit.services.registry import list_models

    fam = next((f for f in list_models() if f["family"] == ctx.family), None)
    if fam:
        sec.add(Table(["Version", "Status", "SHA-256", "Parent", "Registered"],
                      [[v["version"], v["status"], v["sha256"], v["parent"] or "-", (v["created_at"] or "")[:10]]
                       for v in fam["versions"]], caption="Lineage of the family (versions are immutable).",
                      widths=[0.1, 0.12, 0.5, 0.1, 0.18], mono_columns=(2,)))
    ctx.manifest.append(ManifestEntry("model", info["id"], info["sha256"], f"{ctx.family} {ctx.version} artifact"))
    return sec


def _data(ctx: _Ctx) -> Section:
    sec = _section("data")
    with transaction() as s:
        all_sets = {d.name: d for d in DatasetRepository(s).all()}
        used = set()
        if ctx.dataset:
            used.add(ctx.dataset["name"])
        for row in ResultRepository(s).for_version(ctx.info["id"]):
            name = (row.summary or {}).get("dataset") if isinstance(row.summary, dict) else None
            if isinstance(name, str) and name in all_sets:
                used.add(name)
        rows = []
        for name in sorted(used):
            d = all_sets[name]
            rows.append([d.name, d.kind, len(d.samples), d.content_sha256, d.description or "-"])
            ctx.manifest.append(ManifestEntry("dataset", d.id, d.content_sha256, f"reference set {d.name}"))
    if rows:
        sec.add(Table(["Reference set", "Kind", "Samples", "Content SHA-256", "Description"], rows,
                      widths=[0.14, 0.07, 0.09, 0.56, 0.14], mono_columns=(3,),
                      caption="Reference sets used by this report or by stored analyses of this version. The "
                              "content hash covers every sample's hash, label and group attributes."))
    if ctx.dataset is None:
        sec.lack(f"No {ctx.kind} reference set is stored, so performance, explanations and drift cannot be computed.",
                 "build the demo (python -m audit demo) or add a reference set with "
                 "audit.services.datasets.add_image_dataset / add_text_dataset, then regenerate the report.")
        return sec
    labels = ctx.info.get("labels") or []
    counts: dict[str, int] = {}
    for y in ctx.labels_true:
        name = "unlabelled" if y is None else (labels[y] if y < len(labels) else str(y))
        counts[name] = counts.get(name, 0) + 1
    sec.add(Table(["Class", "Samples"], [[k, v] for k, v in sorted(counts.items(), key=lambda kv: str(kv[0]))],
                  caption=f"Class distribution of {ctx.dataset['name']}.", widths=[0.5, 0.5]))
    attrs: dict[str, dict[str, int]] = {}
    for g in ctx.sample_groups:
        for a, v in g.items():
            attrs.setdefault(a, {})
            attrs[a][str(v)] = attrs[a].get(str(v), 0) + 1
    if attrs:
        sec.add(Table(["Group attribute", "Value", "Samples"],
                      [[a, v, n] for a, vals in sorted(attrs.items()) for v, n in sorted(vals.items())],
                      caption="Group attributes recorded with the reference samples (used by the bias audit).",
                      widths=[0.4, 0.3, 0.3]))
    sec.text("Training data is not held by the workbench; the version notes above describe it as registered.", "note")
    return sec


def _image_probs(ctx: _Ctx) -> None:
    h = ctx.handle
    samples = load_image_samples(ctx.dataset["name"])
    out = []
    for b0 in range(0, len(samples.keys), 64):
        x = h.input_spec.normalize(image_to_tensor(samples.images[b0:b0 + 64], h.input_spec)).to(h.device)
        out.append(h.predict_proba(x).cpu().numpy())
    ctx.probs = np.concatenate(out) if out else np.zeros((0, len(h.labels)))
    ctx.labels_true, ctx.sample_keys, ctx.sample_groups = samples.labels, samples.keys, samples.groups


@torch.no_grad()
def _text_probs(ctx: _Ctx) -> None:
    h = ctx.handle
    samples = load_text_samples(ctx.dataset["name"])
    device = next(h.module.parameters()).device
    out = []
    for b0 in range(0, len(samples.texts), 32):
        enc = h.tokenizer(samples.texts[b0:b0 + 32], padding=True, truncation=True, return_tensors="pt")
        logits = h.module(**{k: v.to(device) for k, v in enc.items()}).logits
        out.append(torch.softmax(logits.float(), -1).cpu().numpy())
    ctx.probs = np.concatenate(out) if out else np.zeros((0, len(h.labels)))
    ctx.labels_true, ctx.sample_keys, ctx.sample_groups = samples.labels, samples.keys, samples.groups


def _performance(ctx: _Ctx) -> Section:
    sec = _section("performance")
    metrics = {k: v for k, v in (ctx.info.get("metrics") or {}).items()}
    if metrics:
        sec.add(Table(["Metric (recorded at registration)", "Value"], [[k, _fmt(v)] for k, v in sorted(metrics.items())],
                      widths=[0.6, 0.4], caption="Metrics stored with the version when it was registered."))
    else:
        sec.text("No metrics were recorded with this version at registration.", "note")
    thr = ctx.thresholds.min_accuracy
    measured: Optional[float] = None
    if ctx.probs is not None and len(ctx.probs):
        pred = ctx.probs.argmax(1)
        known = [i for i, y in enumerate(ctx.labels_true) if y is not None]
        labels = ctx.info["labels"]
        if known:
            y = np.asarray([ctx.labels_true[i] for i in known])
            p = pred[known]
            measured = float((p == y).mean())
            lo, hi = _wilson(int((p == y).sum()), len(known))
            sec.text(f"Accuracy on the reference set {ctx.dataset['name']} computed at report time: "
                     f"{measured:.4f} ({int((p == y).sum())} of {len(known)} correct; 95% Wilson interval "
                     f"{lo:.4f} to {hi:.4f}).")
            k = len(labels)
            cm_ = np.zeros((k, k), dtype=int)
            for t_, p_ in zip(y, p):
                if 0 <= t_ < k:
                    cm_[t_, p_] += 1
            rows = []
            for c_ in range(k):
                n_c = int(cm_[c_].sum())
                prec_den = int(cm_[:, c_].sum())
                rows.append([labels[c_], n_c, _fmt(cm_[c_, c_] / n_c if n_c else None),
                             _fmt(cm_[c_, c_] / prec_den if prec_den else None)])
            sec.add(Table(["Class", "Samples", "Recall", "Precision"], rows, widths=[0.3, 0.2, 0.25, 0.25],
                          caption="Per-class recall and precision on the reference set."))
            if k <= 20:
                sec.add(Figure(figs.confusion_matrix(cm_, labels), "Confusion matrix on the reference set.", 9.5))
            group_rows = []
            attrs = sorted({a for g in ctx.sample_groups for a in g})
            for a in attrs:
                values = sorted({str(ctx.sample_groups[i].get(a)) for i in known})
                for v in values:
                    idx = [j for j, i in enumerate(known) if str(ctx.sample_groups[i].get(a)) == v]
                    kk = int((p[idx] == y[idx]).sum())
                    glo, ghi = _wilson(kk, len(idx))
                    group_rows.append([a, v, len(idx), _fmt(kk / len(idx)), f"{glo:.3f} - {ghi:.3f}"])
            if group_rows:
                sec.add(Table(["Attribute", "Group", "Samples", "Accuracy", "95% CI (Wilson)"], group_rows,
                              widths=[0.2, 0.2, 0.15, 0.2, 0.25],
                              caption="Accuracy by group attribute, computed at report time."))
        digest = sha256_bytes(np.ascontiguousarray(ctx.probs.astype(np.float32)).tobytes())
        ctx.manifest.append(ManifestEntry("predictions", None, digest,
                                          f"class probabilities on {ctx.dataset['name']} computed at report time"))
        ctx.computed.append("reference-set predictions")
    if measured is None:
        for name in ("reference_accuracy", "accuracy", "test_accuracy", "val_accuracy"):
            if _num(metrics.get(name)) is not None:
                measured = _num(metrics.get(name))
                break
    if measured is None:
        ctx.find("Performance", f"accuracy >= {thr:.2f}", "missing", "no labelled reference set and no stored "
                 "accuracy metric", "performance")
        sec.lack("No accuracy could be measured or read.", "store a labelled reference set (python -m audit demo "
                 "or audit.services.datasets), or register the version with an accuracy metric.")
    else:
        ctx.find("Performance", f"accuracy >= {thr:.2f}", "pass" if measured >= thr else "fail",
                 f"accuracy {measured:.4f}" + (f" on {ctx.dataset['name']}" if ctx.probs is not None else " (stored)"),
                 "performance")
    return sec


def _pick_samples(ctx: _Ctx) -> Optional[_Samples]:
    if ctx.probs is None or not len(ctx.probs):
        return None
    pred = ctx.probs.argmax(1)
    conf = ctx.probs.max(1)
    labels = ctx.info["labels"]
    order = np.argsort(-conf, kind="stable")
    rep, seen = [], set()
    for i in order:
        y = ctx.labels_true[i]
        if y is not None and pred[i] == y and y not in seen:
            rep.append(int(i))
            seen.add(y)
        if len(rep) == N_REPRESENTATIVE:
            break
    if not rep:  # unlabelled set: the most confident predictions stand in
        rep = [int(i) for i in order[:N_REPRESENTATIVE]]
    mis = [int(i) for i in order if ctx.labels_true[i] is not None and pred[i] != ctx.labels_true[i]][:N_MISCLASSIFIED]
    picks = rep + mis
    titles = []
    for i in picks:
        y = ctx.labels_true[i]
        titles.append(f"{ctx.sample_keys[i].rsplit('-', 1)[-1]}\ntrue {labels[y] if y is not None else '?'}\n"
                      f"pred {labels[pred[i]]} ({conf[i]:.2f})")
    return _Samples([ctx.sample_keys[i] for i in picks], titles, ["representative"] * len(rep) + ["misclassified"] * len(mis),
                    targets=[int(pred[i]) for i in picks])


def _stored_only(ctx: _Ctx, hashes: list[str], targets: list[int], methods: Sequence[str]) -> Optional[list[dict[str, Any]]]:
    layer = ctx.handle.target_layer
    store = ArtifactStore()
    out = []
    with transaction() as s:
        repo = ExplanationRepository(s)
        for sha, tgt in zip(hashes, targets):
            row_maps = {}
            for m in methods:
                _, key = params_key(m, layer, dict(FIGURE_OPTIONS))
                row = repo.find(model_version_id=ctx.info["id"], sample_sha256=sha, method=m, target=tgt,
                                params_sha256=key)
                if row is None:
                    return None
                row_maps[m] = (store.get_array(row.attribution_sha256), row.id, row.attribution_sha256)
            out.append(row_maps)
    return out


def _explanations(ctx: _Ctx) -> Section:
    sec = _section("explanations")
    picks = _pick_samples(ctx)
    if picks is None:
        sec.lack("No reference predictions, so no samples to explain.", "store a reference set for this model "
                 "(python -m audit demo or audit.services.datasets) and regenerate the report.")
        return sec
    if ctx.kind == "text":
        return _text_explanations(ctx, sec, picks)
    h = ctx.handle
    samples = load_image_samples(ctx.dataset["name"], keys=picks.keys)
    order = [samples.keys.index(k) for k in picks.keys]
    raw = image_to_tensor(samples.images[order], h.input_spec)
    hashes = [samples.hashes[i] for i in order]
    x = h.input_spec.normalize(raw).to(h.device)
    methods = [m for m in FIGURE_METHODS if m not in ("gradcam", "gradcam_pp") or h.target_layer]
    if ctx.compute:
        try:
            maps, _ = explain_batch(h, ctx.family, ctx.version, x, hashes, picks.targets, methods,
                                     dict(FIGURE_OPTIONS), sample_ids=[None] * len(hashes), actor=ctx.actor,
                                     progress=None)
        except (ValueError, RuntimeError) as exc:
            # The report still documents everything else; the failure is printed where the figures would be.
            log.warning("report %s %s: explanations failed: %s", ctx.family, ctx.version, exc)
            sec.lack(f"Computing the explanation maps failed: {exc}.",
                     _cli("python -m audit explain --family {F} --version {V} --dataset {D} -v for details.", ctx))
            return sec
        per = [{m: (mp[m].attribution, mp[m].explanation_id, None) for m in methods} for mp in maps]
    else:
        per = _stored_only(ctx, hashes, picks.targets, methods)
        if per is None:
            sec.lack("Explanation maps for the report's samples are not stored.",
                     _cli("python -m audit explain --family {F} --version {V} --dataset {D} --methods "
                          + ",".join(methods) + " --ig-steps 32, or regenerate the report without --no-compute.", ctx))
            return sec
    picks.x, picks.raw = x, raw.cpu().numpy()
    picks.maps = {m: np.stack([p[m][0] for p in per]) for m in methods}
    picks.explanation_ids = [p[m][1] for p in per for m in methods]
    ctx.samples = picks
    with transaction() as s:
        from storage.orm import Explanation

        for eid in picks.explanation_ids:
            row = s.get(Explanation, eid)
            ctx.manifest.append(ManifestEntry("explanation", eid, row.attribution_sha256,
                                              f"{row.method} map, target {row.target}, sample {row.sample_sha256[:12]}"))
    from audit.attribution import normalize_for_display

    display = {m: normalize_for_display(torch.as_tensor(a), mode="abs").numpy() for m, a in picks.maps.items()}
    sec.text(f"Maps explain each sample's predicted class with {', '.join(methods)} (Integrated Gradients with "
             f"{FIGURE_OPTIONS['ig_steps']} steps, zero baseline). Heat maps share one display scale: magnitude, "
             "divided by each map's 99th percentile and clipped.")
    for kind, label in (("representative", "Representative samples: correctly classified with high confidence."),
                        ("misclassified", "Misclassified samples: the most confident mistakes.")):
        idx = [i for i, k in enumerate(picks.kinds) if k == kind]
        if not idx:
            sec.text(f"No {kind} samples in the reference set.", "note")
            continue
        png = figs.explanation_grid([picks.raw[i] for i in idx], [{m: display[m][i] for m in methods} for i in idx],
                                    [picks.titles[i] for i in idx], methods)
        sec.add(Figure(png, label, 16.0))
    if not h.target_layer:
        sec.text("Grad-CAM and Grad-CAM++ are left out: the model has no convolutional layer to explain.", "note")
    return sec


def _text_explanations(ctx: _Ctx, sec: Section, picks: _Samples) -> Section:
    from audit.text import attribute_text

    sec.text("Text model: image-only figures (heat-map grids, deletion/insertion curves, the randomisation sanity "
             "check) do not apply and are skipped. Token attributions are shown as the words with the largest "
             "Integrated Gradients scores instead.", "note")
    if not ctx.compute:
        sec.lack("Token attributions are computed at report time and --no-compute was given.",
                 "regenerate the report without --no-compute.")
        return sec
    samples = load_text_samples(ctx.dataset["name"])
    texts = [samples.texts[samples.keys.index(k)] for k in picks.keys]
    h = ctx.handle
    try:
        res = attribute_text(h.module, h.tokenizer, texts, picks.targets, ["integrated_gradients", "grad_x_input"],
                             ig_steps=TEXT_IG_STEPS)
    except (ValueError, TypeError, RuntimeError) as exc:
        log.warning("report %s %s: token attributions failed: %s", ctx.family, ctx.version, exc)
        sec.lack(f"Computing token attributions failed: {exc}.", "check the model on the Text page.")
        return sec
    picks.text_results = res
    ctx.samples = picks
    rows = []
    for key, kind, r, title in zip(picks.keys, picks.kinds, res, picks.titles):
        ws = r.word_scores["integrated_gradients"].numpy()
        top = np.argsort(-np.abs(ws))[:6]
        words = ", ".join(f"{r.words[i]} ({ws[i]:+.2f})" for i in top)
        rows.append([key, kind, " / ".join(title.split("\n")[1:]), words, _fmt(r.delta, 3)])
    sec.add(Table(["Sample", "Kind", "Label / prediction", "Most influential words (IG, + pushes to the class)",
                   "IG gap"], rows, widths=[0.15, 0.12, 0.17, 0.42, 0.14],
                  caption=f"Integrated Gradients over the word embeddings ({TEXT_IG_STEPS} steps, [PAD] baseline), "
                          "summed into words; IG gap = sum of attributions - (f(x) - f(baseline))."))
    digest = _digest([[float(v) for v in r.scores["integrated_gradients"]] for r in res])
    ctx.manifest.append(ManifestEntry("text_attribution", None, digest,
                                      f"IG and grad x input on {len(res)} texts, computed at report time"))
    ctx.computed.append("token attributions")
    return sec


def _quality_params(ctx: _Ctx, picks: _Samples, methods: list[str]) -> dict[str, Any]:
    return {"model_sha256": ctx.info["sha256"], "dataset": ctx.dataset["name"], "dataset_sha256": ctx.dataset["sha256"],
            "samples": picks.keys, "targets": picks.targets, "methods": methods, "options": FIGURE_OPTIONS,
            "steps": CURVE_STEPS, "sanity": {"methods": list(SANITY_METHODS), "samples": SANITY_SAMPLES,
                                             "max_steps": 4, "ig_steps": 16}}


def _compute_quality(ctx: _Ctx, picks: _Samples, methods: list[str]) -> dict[str, Any]:
    from audit.quality import deletion_curve, insertion_curve, sanity_check

    model = ctx.handle.module
    x = picks.x
    t = torch.tensor(picks.targets, device=x.device)
    g = torch.Generator().manual_seed(0)
    random_map = torch.rand((x.shape[0], x.shape[2], x.shape[3]), generator=g)
    curves: dict[str, Any] = {"deletion": {}, "insertion": {}, "deletion_auc": {}, "insertion_auc": {}}
    for name, attr in [*((m, torch.as_tensor(picks.maps[m])) for m in methods), ("random", random_map)]:
        d = deletion_curve(model, x, t, attr.to(x.device), steps=CURVE_STEPS)
        i = insertion_curve(model, x, t, attr.to(x.device), steps=CURVE_STEPS)
        curves["fractions"] = d.fractions.tolist()
        curves["deletion"][name] = d.curves.mean(0).tolist()
        curves["insertion"][name] = i.curves.mean(0).tolist()
        curves["deletion_auc"][name] = float(d.auc.mean())
        curves["insertion_auc"][name] = float(i.auc.mean())
    sanity_methods = [m for m in SANITY_METHODS if m != "gradcam" or ctx.handle.target_layer]
    n = min(SANITY_SAMPLES, x.shape[0])
    res = sanity_check(model, x[:n], t[:n], sanity_methods, layer=ctx.handle.target_layer, max_steps=4, ig_steps=16)
    return {**curves, "samples": len(picks.keys),
            "sanity": {"steps": list(res.steps), "correlations": {k: list(v) for k, v in res.correlations.items()},
                       "flagged": dict(res.flagged), "threshold": res.threshold, "samples": n}}


def _quality(ctx: _Ctx) -> Section:
    sec = _section("quality")
    picks = ctx.samples
    if ctx.kind == "text":
        sec.text("Deletion/insertion curves and the parameter-randomisation sanity check are image checks in this "
                 "workbench and are skipped for text models.", "note")
        if picks and picks.text_results:
            gaps = [abs(r.delta) for r in picks.text_results if r.delta is not None]
            if gaps:
                sec.text(f"Integrated Gradients completeness on the {len(gaps)} explained texts: mean |gap| "
                         f"{np.mean(gaps):.4f}, largest {np.max(gaps):.4f} (logit units; 0 means the attributions add "
                         "up exactly to the change in the model's output).")
                ctx.find("Explanation quality", "IG completeness gap", "info", f"mean |gap| {np.mean(gaps):.4f}",
                         "quality")
                return sec
        sec.lack("No token attributions were computed.", "regenerate the report without --no-compute.")
        ctx.find("Explanation quality", "faithfulness", "missing", "no token attributions", "quality")
        return sec
    if picks is None or picks.x is None:
        sec.lack("No explanation maps are available for the quality checks.",
                 "store a reference set and regenerate the report (the explanations section computes the maps).")
        ctx.find("Explanation quality", "faithfulness and sanity", "missing", "no maps", "quality")
        return sec
    methods = list(picks.maps)
    params = _quality_params(ctx, picks, methods)
    phash = _digest(params)
    with transaction() as s:
        row = ResultRepository(s).find(kind=QUALITY_KIND, model_version_id=ctx.info["id"], params_sha256=phash)
        summary, row_id = (dict(row.summary), row.id) if row is not None else (None, None)
    if summary is None:
        if not ctx.compute:
            sec.lack("Deletion/insertion and sanity results for these samples are not stored.",
                     "regenerate the report without --no-compute (they take seconds on the report's samples).")
            ctx.find("Explanation quality", "faithfulness and sanity", "missing", "not stored", "quality")
            return sec
        t0 = time.perf_counter()
        try:
            summary = _compute_quality(ctx, picks, methods)
        except (ValueError, RuntimeError) as exc:
            log.warning("report %s %s: quality checks failed: %s", ctx.family, ctx.version, exc)
            sec.lack(f"The deletion/insertion and sanity checks failed: {exc}.",
                     "check the model on the Explain page (Faithfulness and Sanity tabs).")
            ctx.find("Explanation quality", "faithfulness and sanity", "missing", "computation failed", "quality")
            return sec
        with transaction() as s:
            row = ResultRepository(s).add(AnalysisResult(
                kind=QUALITY_KIND, model_version_id=ctx.info["id"], dataset_id=ctx.dataset["id"], params_sha256=phash,
                parameters=params, summary=summary, seed=0, device=str(ctx.handle.device),
                library_versions=library_versions(), duration_s=time.perf_counter() - t0,
                created_by=ctx.actor.username))
            auditlog.append(s, actor=ctx.actor.username, action="analysis.explanation_quality",
                            subject=f"{ctx.family}/{ctx.version}", details={"result_id": row.id, "samples": len(picks.keys)})
            row_id = row.id
        ctx.computed.append("explanation quality")
    ctx.manifest.append(ManifestEntry(QUALITY_KIND, row_id, phash, "deletion/insertion curves and sanity check"))
    rnd = summary["deletion_auc"].get("random")
    rows, worse = [], []
    for m in methods:
        d_auc, i_auc = summary["deletion_auc"].get(m), summary["insertion_auc"].get(m)
        beats = d_auc is not None and rnd is not None and d_auc < rnd
        if not beats:
            worse.append(m)
        rows.append([m, _fmt(d_auc), _fmt(i_auc), "yes" if beats else "no"])
    rows.append(["random map (reference)", _fmt(rnd), _fmt(summary["insertion_auc"].get("random")), "-"])
    sec.text(f"Faithfulness on the {summary.get('samples')} explained samples: the most relevant pixels are removed "
             "(deletion: set to zero; a faithful map makes the probability fall fast, low area) or revealed on a "
             f"blurred canvas (insertion: high area is better), in {CURVE_STEPS} steps.")
    sec.add(Table(["Method", "Deletion AUC (lower is better)", "Insertion AUC (higher is better)",
                   "Deletion beats a random map"], rows, widths=[0.3, 0.23, 0.23, 0.24]))
    fr = summary.get("fractions") or []
    if fr:
        sec.add(Figure(figs.curves(fr, summary["deletion"], title="Deletion", xlabel="fraction of pixels removed",
                                   ylabel="probability of the class", reference="random"),
                       "Mean deletion curves (dashed: random map).", 11.0))
        sec.add(Figure(figs.curves(fr, summary["insertion"], title="Insertion", xlabel="fraction of pixels revealed",
                                   ylabel="probability of the class", reference="random"),
                       "Mean insertion curves (dashed: random map).", 11.0))
    ctx.find("Explanation quality", "deletion AUC below a random map's", "fail" if worse else "pass",
             f"not better than random: {', '.join(worse)}" if worse else f"all {len(methods)} methods beat a random map",
             "quality")
    san = summary.get("sanity") or {}
    if san.get("correlations"):
        flagged = [m for m, f in (san.get("flagged") or {}).items() if f]
        sec.add(Figure(figs.sanity_lines(san.get("steps", []), san["correlations"], float(san.get("threshold", 0.5))),
                       f"Sanity check on {san.get('samples')} samples: rank correlation of each method's maps with the "
                       "trained model's maps as layers are randomised from the output down. A method whose maps "
                       "stay similar does not depend on what the model learned.", 12.0))
        sec.add(Table(["Method", "Correlation after full randomisation", f"Flagged (>= {san.get('threshold')})"],
                      [[m, _fmt(v[-1] if v else None), "yes" if (san.get("flagged") or {}).get(m) else "no"]
                       for m, v in san["correlations"].items()], widths=[0.4, 0.35, 0.25]))
        ctx.find("Explanation quality", "sanity check (model randomisation)", "fail" if flagged else "pass",
                 f"insensitive to the model: {', '.join(flagged)}" if flagged else "every method's maps change when "
                 "the model is randomised", "quality")
    return sec


def _concepts(ctx: _Ctx) -> Section:
    sec = _section("concepts")
    rows_db = ctx.results("tcav")
    if not rows_db:
        sec.lack("No TCAV result is stored for this version.",
                 _cli("run a concept test, e.g. python -m audit tcav --family {F} --version {V} (Concepts page), "
                      "then regenerate the report.", ctx))
        ctx.find("Concept tests", "TCAV", "missing", "no stored TCAV result", "concepts")
        return sec
    significant, total = [], 0
    for row in rows_db:
        s = row.summary if isinstance(row.summary, dict) else {}
        ctx.use_result(row, f"TCAV for class {s.get('target_label', s.get('target'))}")
        sec.text(f"Result {row.id}: class {s.get('target_label', s.get('target', '?'))}; significance level "
                 f"alpha = {_fmt(s.get('alpha'), 3)}, multiple-testing correction: {s.get('correction', '-')}; "
                 f"computed {row.created_at:%Y-%m-%d} by {row.created_by}.")
        table_rows, names, scores, hl = [], [], [], []
        for concept, layers in (s.get("concepts") or {}).items():
            if not isinstance(layers, dict):
                continue
            for layer, cell in layers.items():
                if not isinstance(cell, dict):
                    continue
                total += 1
                sig = cell.get("significant")
                if sig is True:
                    significant.append(f"{concept}@{layer}")
                rm, rs = _num(cell.get("random_mean")), _num(cell.get("random_std"))
                table_rows.append([concept, layer, _fmt(cell.get("score")), _fmt(cell.get("magnitude")),
                                   _fmt(cell.get("p_value")), _fmt(cell.get("p_value_corrected")),
                                   _fmt(sig) if isinstance(sig, bool) else "-", _fmt(cell.get("cav_accuracy")),
                                   f"{rm:.3f} +/- {rs:.3f}" if rm is not None and rs is not None else "-"])
                if _num(cell.get("score")) is not None:
                    names.append(f"{concept}\n{layer}")
                    scores.append(float(cell["score"]))
                    hl.append(sig is True)
        sec.add(Table(["Concept", "Layer", "Score", "Magn.", "p-value", "p corr.", "Signif.", "CAV acc.",
                       "Random CAVs"], table_rows,
                      widths=[0.14, 0.15, 0.09, 0.09, 0.09, 0.09, 0.08, 0.09, 0.18],
                      caption="Score: fraction of the class's inputs whose class logit increases along the concept "
                              "direction; magnitude: signed share of that change; tested against random concept "
                              "directions (p corr.: after the multiple-testing correction)."))
        if names:
            sec.add(Figure(figs.bars_with_ci(names, scores, title=f"TCAV scores, class {s.get('target_label', '')}",
                                             ylabel="TCAV score", line=0.5,
                                             highlight=next((i for i, h in enumerate(hl) if h), None)),
                           "TCAV scores per concept and layer (red: first significant concept).",
                           min(16.0, 5.0 + 1.6 * len(names))))
    ctx.find("Concept tests", "concepts the model relies on", "info",
             f"{len(significant)} of {total} concept/layer tests significant"
             + (f": {', '.join(significant[:6])}" if significant else ""), "concepts")
    return sec


def _bias(ctx: _Ctx) -> Section:
    sec = _section("bias")
    rows_db = ctx.results("bias")
    gap_thr = ctx.thresholds.max_group_accuracy_gap
    if not rows_db:
        sec.lack("No bias audit is stored for this version.",
                 _cli("run a bias audit, e.g. python -m audit bias --family {F} --version {V} --dataset {D} "
                      "(Bias page), then regenerate the report. Report-time accuracy by group is in the "
                      "Performance section.", ctx))
        ctx.find("Bias", f"accuracy gap between groups <= {gap_thr:.2f}", "missing", "no stored bias audit", "bias")
        return sec
    worst_gap, all_flags = None, []
    for row in rows_db:
        s = row.summary if isinstance(row.summary, dict) else {}
        attrs = ", ".join(str(a) for a in (s.get("attributes") or [])) or "-"
        ctx.use_result(row, f"bias audit on {s.get('dataset', '?')} by {attrs}")
        sec.text(f"Result {row.id}: dataset {s.get('dataset', '-')}, groups by {attrs}.")
        groups = [g for g in (s.get("by_group") or []) if isinstance(g, dict)]
        rows, names, acc, lo, hi = [], [], [], [], []
        for g in groups:
            ci = g.get("accuracy_ci") if isinstance(g.get("accuracy_ci"), (list, tuple)) else None
            rows.append([g.get("group"), _fmt(g.get("count")), _fmt(g.get("accuracy")),
                         f"{_fmt(ci[0])} - {_fmt(ci[1])}" if ci and len(ci) == 2 else "-",
                         _fmt(g.get("selection_rate")), _fmt(g.get("tpr")), _fmt(g.get("fpr")), _fmt(g.get("precision"))])
            if _num(g.get("accuracy")) is not None:
                names.append(str(g.get("group")))
                acc.append(float(g["accuracy"]))
                lo.append(float(ci[0]) if ci and _num(ci[0]) is not None else float(g["accuracy"]))
                hi.append(float(ci[1]) if ci and _num(ci[1]) is not None else float(g["accuracy"]))
        sec.add(Table(["Group", "Count", "Accuracy", "Accuracy 95% CI", "Selection rate", "TPR", "FPR", "Precision"],
                      rows, widths=[0.2, 0.08, 0.1, 0.16, 0.12, 0.1, 0.1, 0.14]))
        diff = s.get("difference") if isinstance(s.get("difference"), dict) else {}
        worst = s.get("worst_group") if isinstance(s.get("worst_group"), dict) else {}
        if diff:
            sec.add(Table(["Metric", "Largest difference between groups", "Worst group"],
                          [[k, _fmt(v), worst.get(k, "-")] for k, v in sorted(diff.items())], widths=[0.35, 0.35, 0.3]))
        if names:
            worst_i = int(np.argmin(acc))
            sec.add(Figure(figs.bars_with_ci(names, acc, lo, hi, title="Accuracy by group (95% CI)", ylabel="accuracy",
                                             highlight=worst_i), "Accuracy by group with confidence intervals "
                           "(red: lowest).", min(16.0, 5.0 + 1.6 * len(names))))
        gap = _num(diff.get("accuracy"))
        if gap is not None:
            worst_gap = gap if worst_gap is None else max(worst_gap, gap)
        flags = [str(f) for f in (s.get("flags") or [])]
        all_flags += flags
        if flags:
            sec.text("Flags raised by the audit: " + "; ".join(flags))
    if worst_gap is None:
        ctx.find("Bias", f"accuracy gap between groups <= {gap_thr:.2f}", "missing",
                 "stored audits hold no accuracy difference", "bias")
    else:
        ctx.find("Bias", f"accuracy gap between groups <= {gap_thr:.2f}", "pass" if worst_gap <= gap_thr else "fail",
                 f"largest accuracy gap {worst_gap:.4f}", "bias")
    if all_flags:
        ctx.find("Bias", "flags raised by the bias audit", "fail", "; ".join(all_flags[:4]), "bias")
    return sec


def _counterfactuals(ctx: _Ctx) -> Section:
    sec = _section("counterfactuals")
    cf_rows = ctx.results("counterfactual")
    if cf_rows:
        rows = []
        for row in cf_rows:
            s = row.summary if isinstance(row.summary, dict) else {}
            ctx.use_result(row, f"counterfactual search on {s.get('dataset', '?')}")
            rows.append([row.id, s.get("dataset", "-"), _fmt(s.get("n")), _fmt(s.get("valid_rate")),
                         _fmt(s.get("mean_l1")), _fmt(s.get("mean_l2")), _fmt(s.get("mean_changed_fraction"))])
        sec.add(Table(["Result", "Dataset", "Samples", "Valid rate", "Mean L1", "Mean L2", "Changed fraction"], rows,
                      widths=[0.08, 0.2, 0.1, 0.12, 0.15, 0.15, 0.2],
                      caption="Smallest input changes that flip the decision: small distances mean decisions that "
                              "are easy to flip."))
        rates = [_num((r.summary or {}).get("valid_rate")) for r in cf_rows]
        rates = [r for r in rates if r is not None]
        if rates:
            ctx.find("Counterfactuals", "counterfactual search success", "info",
                     f"valid rate {min(rates):.4f}", "counterfactuals")
    else:
        sec.lack("No counterfactual result is stored for this version.",
                 _cli("run the counterfactual search (Counterfactuals page) on {D} for {F} {V}, then regenerate.", ctx))
    tp_rows = ctx.results("text_probe")
    if tp_rows:
        rows = []
        worst = None
        for row in tp_rows:
            s = row.summary if isinstance(row.summary, dict) else {}
            ctx.use_result(row, f"text probe on {s.get('dataset', '?')}")
            rows.append([row.id, s.get("dataset", "-"), _fmt(s.get("n")), _fmt(s.get("flip_rate")),
                         _fmt(s.get("mean_prob_change"))])
            fr = _num(s.get("flip_rate"))
            if fr is not None:
                worst = fr if worst is None else max(worst, fr)
        sec.add(Table(["Result", "Dataset", "Texts", "Decision flip rate", "Mean probability change"], rows,
                      widths=[0.1, 0.3, 0.15, 0.2, 0.25],
                      caption="Counterfactual text probes (e.g. swapping gendered words): a fair model's decisions "
                              "should not flip."))
        if worst is not None:
            thr = ctx.thresholds.max_text_flip_rate
            ctx.find("Counterfactuals", f"text probe flip rate <= {thr:.2f}", "pass" if worst <= thr else "fail",
                     f"flip rate {worst:.4f}", "counterfactuals")
    elif ctx.kind == "text":
        sec.lack("No counterfactual text probe is stored for this version.",
                 _cli("run the gender-swap probe (Text page) on {D} for {F} {V}, then regenerate.", ctx))
        ctx.find("Counterfactuals", f"text probe flip rate <= {ctx.thresholds.max_text_flip_rate:.2f}", "missing",
                 "no stored text probe", "counterfactuals")
    if not cf_rows and ctx.kind == "image":
        ctx.find("Counterfactuals", "counterfactual search", "missing", "no stored result", "counterfactuals")
    return sec


def _drift(ctx: _Ctx) -> Section:
    sec = _section("drift")
    parent = ctx.info.get("parent")
    if not parent:
        sec.text("This is the first version of its family: there is no previous version to compare with.")
        ctx.find("Drift", "explanations stable against the previous version", "info", "first version", "drift")
        return sec
    stored = stored_drift(ctx.family, new=ctx.version, base=parent)
    res = stored[0] if stored else None
    if res is None and ctx.compute and ctx.dataset is not None:
        try:
            res = compute_drift(ctx.family, parent, ctx.version, dataset=ctx.dataset["name"],
                                limit=DRIFT_LIMIT[ctx.kind], options=dict(DRIFT_OPTIONS), actor=ctx.actor)
            ctx.computed.append("drift")
        except (DriftError, PermissionDenied) as exc:
            sec.text(f"Drift could not be computed: {exc}", "note")
    if res is None:
        sec.lack(f"No drift result against the previous version {parent} is stored.",
                 _cli(f"python -m audit drift --family {{F}} --base {parent} --new {{V}} --dataset {{D}}, "
                      "then regenerate the report.", ctx))
        ctx.find("Drift", "explanations stable against the previous version", "missing", "no drift result", "drift")
        return sec
    with transaction() as s:
        row = s.get(AnalysisResult, res.get("result_id"))
        pin = (row.artifact_sha256 or row.params_sha256) if row is not None else ""
    ctx.manifest.append(ManifestEntry("drift", res.get("result_id"), pin, f"drift {parent} -> {ctx.version}"))
    th = res.get("thresholds") or {}
    sec.text(f"Version {ctx.version} compared with {parent} on {res.get('samples')} samples of {res.get('dataset')} "
             f"(result {res.get('result_id')}). {str(res.get('target_rule', '')).capitalize()}. Measures per sample: "
             f"Spearman rank correlation of the relevance maps, overlap of the top {float(res.get('top_k', 0.1)):.0%} "
             "most relevant positions (IoU), and SSIM of the display maps. A method is flagged when its mean rank "
             f"correlation is below {th.get('min_rank_correlation')} or its mean top-k IoU below {th.get('min_topk_iou')}.")
    methods = res.get("methods") or {}
    rows = []
    for m, d in methods.items():
        rc, iou, ss = d.get("rank_correlation") or {}, d.get("topk_iou") or {}, d.get("ssim") or {}
        rows.append([m, _fmt(rc.get("mean")), _fmt(rc.get("median")), _fmt(rc.get("p10")), _fmt(iou.get("mean")),
                     _fmt(ss.get("mean")), "FLAG" if d.get("flagged") else "ok"])
    sec.add(Table(["Method", "Rank corr. mean", "Rank corr. median", "Rank corr. p10", "Top-k IoU mean",
                   "SSIM mean", "Flag"], rows,
                  widths=[0.25, 0.13, 0.11, 0.11, 0.14, 0.13, 0.13]))
    if methods:
        names = list(methods)
        sec.add(Figure(figs.grouped_bars(names, {
            "rank correlation": [(methods[m].get("rank_correlation") or {}).get("mean") for m in names],
            "top-k IoU": [(methods[m].get("topk_iou") or {}).get("mean") for m in names],
            "SSIM": [(methods[m].get("ssim") or {}).get("mean") for m in names]},
            title=f"Similarity of explanations, {parent} vs {ctx.version}", ylabel="mean over samples",
            ylim=(-0.1, 1.05)), "Mean similarity per method (1 = unchanged).", 11.0))
    metric_rows = [[d.get("name"), _fmt(d.get("base")), _fmt(d.get("new")), _fmt(d.get("delta")),
                    "FLAG" if d.get("flagged") else ""] for d in res.get("metrics") or []]
    preds = res.get("predictions") or {}
    if preds:
        ba, na = _num(preds.get("base_accuracy")), _num(preds.get("new_accuracy"))
        if ba is not None and na is not None:
            metric_rows.append([f"accuracy on the {preds.get('n')} compared samples", _fmt(ba), _fmt(na),
                                _fmt(na - ba), "FLAG" if preds.get("flagged") else ""])
        metric_rows.append(["share of samples where both versions predict the same class", "-",
                            _fmt(preds.get("agreement")), "-", ""])
    if metric_rows:
        sec.add(Table(["Metric", parent, ctx.version, "Change", "Flag"], metric_rows, widths=[0.36, 0.16, 0.16, 0.16, 0.16]))
    concept_rows = [[d.get("concept"), d.get("layer"), d.get("target_label"), _fmt(d.get("base_score")),
                     _fmt(d.get("new_score")), d.get("reason") or ""] for d in res.get("concepts") or []]
    if concept_rows:
        sec.add(Table(["Concept", "Layer", "Class", f"Score {parent}", f"Score {ctx.version}", "Flag"], concept_rows,
                      widths=[0.16, 0.12, 0.1, 0.13, 0.13, 0.36]))
    disp_rows = [[d.get("dataset"), "/".join(d.get("attributes") or []), d.get("metric"), _fmt(d.get("base")),
                  _fmt(d.get("new")), d.get("reason") or ""] for d in res.get("disparities") or []]
    if disp_rows:
        sec.add(Table(["Dataset", "Groups", "Gap in", parent, ctx.version, "Flag"], disp_rows,
                      widths=[0.18, 0.14, 0.14, 0.1, 0.1, 0.34]))
    flags = res.get("flags") or []
    if flags:
        sec.text("Flags: " + "; ".join(flags))
    ctx.find("Drift", f"explanations stable against version {parent}", "fail" if res.get("flagged") else "pass",
             (f"{len(flags)} flag(s); methods: {', '.join(res.get('flagged_methods') or []) or 'none'}")
             if res.get("flagged") else "no drift flagged", "drift")
    return sec


def _limitations(ctx: _Ctx, missing: list[str]) -> Section:
    sec = _section("limitations")
    n = len(ctx.samples.keys) if ctx.samples else 0
    items = [
        "Post-hoc explanations approximate what the model computes; different methods can disagree, and none "
        "proves a causal mechanism. Read them together with the quality checks.",
        f"Figures and quality checks use {n} samples chosen by confidence; they illustrate and do not estimate "
        "population rates.",
        "Deletion and insertion scores depend on the replacement value (zeros, blur) and can reward maps that "
        "create out-of-distribution inputs.",
        "Concept tests depend on the concept and random example sets chosen; a non-significant result does not "
        "show that the model ignores a concept.",
        "Drift thresholds are heuristics: retraining with a different seed alone also changes explanations.",
        "Reference-set results describe this reference set only; production data may differ.",
    ]
    if ctx.kind == "text":
        items.append("Text model: image-only checks (heat maps, deletion/insertion, randomisation sanity check) are "
                     "not part of this report.")
    if ctx.computed:
        items.append("Computed at report time (and stored where the workbench keeps such results): "
                     + ", ".join(ctx.computed) + ".")
    for it in items:
        sec.text("- " + it)
    if missing:
        sec.text("Sections with missing evidence: " + ", ".join(missing) + ".")
    return sec


def _signoff(ctx: _Ctx) -> Section:
    sec = _section("signoff")
    with transaction() as s:
        rows = s.scalars(select(SignOff).where(SignOff.model_version_id == ctx.info["id"]).order_by(SignOff.id)).all()
        prior = [[r.decision, r.signed_by, r.signed_at.isoformat()[:19] if r.signed_at else "-", r.reason, r.report_id]
                 for r in rows]
    if prior:
        sec.add(Table(["Decision", "By", "At (UTC)", "Reason", "On report"], prior, widths=[0.14, 0.18, 0.2, 0.36, 0.12],
                      caption="Sign-offs already recorded for this version."))
    sec.text("The decision on this version is recorded in the workbench (Reports page, or python -m audit "
             "report-sign) against this file's SHA-256, with the signer, time and reason, in the hash-chained audit "
             "log. The PDF is never modified after generation; a report can be signed once.")
    sec.add(Table(["Field", "Entry"], [["Decision", "[ ] approved      [ ] rejected"], ["Name and role", ""],
                                       ["Date", ""], ["Reason", ""], ["Signature", ""]], widths=[0.25, 0.75]))
    return sec


def _appendix(ctx: _Ctx, params: dict[str, Any]) -> Section:
    sec = _section("appendix")
    sec.text("Every stored result this report used, with the hash that pins it: artifact SHA-256 for models, "
             "explanation maps and stored arrays; content hash for reference sets; parameter hash for analyses "
             "without an artifact; SHA-256 of the values for results computed at report time.", "note")
    sec.add(Table(["Kind", "Id", "SHA-256", "What"], [[m.kind, m.id if m.id is not None else "-", m.sha256,
                                                      m.description] for m in ctx.manifest],
                  widths=[0.16, 0.06, 0.56, 0.22], mono_columns=(2,)))
    libs = _libraries()
    sec.add(Table(["Library", "Version"], [[k, v] for k, v in sorted(libs.items())], widths=[0.5, 0.5],
                  caption="Library versions of the process that generated this report."))
    sec.add(Table(["Parameter", "Value"], [[k, json.dumps(v, sort_keys=True, default=str)] for k, v in params.items()],
                  widths=[0.3, 0.7], caption="Report parameters."))
    return sec


def _libraries() -> dict[str, str]:
    from importlib import metadata

    libs = dict(library_versions())
    for name in ("reportlab", "matplotlib"):
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return libs


# ------------------------------------------------------------------ use cases

def build_document(family: str, version: str, *, author: Optional[str] = None, dataset: Optional[str] = None,
                   compute_missing: bool = True, thresholds: Optional[ReportThresholds] = None,
                   actor: Principal = SYSTEM, progress: Progress = None) -> ReportDocument:
    """Gather everything the report says into a ReportDocument (no PDF, nothing stored but the
    explanations, quality checks and drift computed on the way when ``compute_missing``)."""
    require(actor, "report")
    info = get_version(family, version)
    with transaction() as s:
        fam = ModelRepository(s).family(family)
        description = fam.description if fam else ""
    task = info["task"]
    kind = "text" if task == "text-classification" else "image"
    try:
        ds = pick_reference_set(dataset, task, info["labels"])
    except DriftError:
        if dataset:
            raise
        ds = None
    ctx = _Ctx(family, version, info, description, task, kind, ds, compute_missing, actor,
               thresholds or ReportThresholds(), progress)
    ctx.tick(0.02, "loading the model")
    if ds is not None:
        ctx.handle = handle_for(family, version)
        (_text_probs if kind == "text" else _image_probs)(ctx)
    ctx.tick(0.1, "performance")
    sections = [_intended_use(ctx)]
    perf = _performance(ctx)
    sections += [_data(ctx), perf]
    ctx.tick(0.2, "explanations")
    sections.append(_explanations(ctx))
    ctx.tick(0.45, "explanation quality")
    sections.append(_quality(ctx))
    ctx.tick(0.6, "concepts, bias, counterfactuals")
    sections += [_concepts(ctx), _bias(ctx), _counterfactuals(ctx)]
    ctx.tick(0.7, "drift against the previous version")
    sections.append(_drift(ctx))
    missing = [s.title for s in sections if s.missing]
    sections.append(_limitations(ctx, missing))
    sections.append(_signoff(ctx))
    created = utcnow()
    params = {"dataset": ds["name"] if ds else None, "compute_missing": compute_missing,
              "figure_methods": list(FIGURE_METHODS), "figure_options": FIGURE_OPTIONS,
              "drift_options": {**DRIFT_OPTIONS, "limit": DRIFT_LIMIT[kind]},
              "thresholds": ctx.thresholds.to_dict()}
    sections.append(_appendix(ctx, params))
    order = ["performance", "bias", "concepts", "quality", "counterfactuals", "drift"]
    findings = sorted(ctx.findings, key=lambda f: order.index(f.section) if f.section in order else len(order))
    return ReportDocument(
        family=family, version=version, task=task, model_sha256=info["sha256"], created_at=created.isoformat(),
        author=author or actor.username, status=info["status"], findings=findings, sections=sections,
        manifest=ctx.manifest, library_versions=_libraries(), parameters=params,
    )


def generate_report(family: str, version: str, *, author: Optional[str] = None, dataset: Optional[str] = None,
                    compute_missing: bool = True, thresholds: Optional[ReportThresholds] = None,
                    actor: Principal = SYSTEM, progress: Progress = None) -> dict[str, Any]:
    """Build, render and store the PDF (artifact store, by SHA-256) with a Report row and an audit-log entry.

    Missing results never fail the report: their sections say what is missing and how to produce it.
    Returns {"id", "sha256", "filename", "pages", "seconds", "family", "version", "findings"}.
    """
    require(actor, "report")
    t0 = time.perf_counter()
    doc = build_document(family, version, author=author, dataset=dataset, compute_missing=compute_missing,
                         thresholds=thresholds, actor=actor, progress=progress)
    if progress:
        progress(0.9, "rendering the PDF")
    rendered = render_pdf(doc)
    sha = ArtifactStore().put_bytes(rendered.pdf)
    seconds = time.perf_counter() - t0
    stamp = doc.created_at[:19].replace("-", "").replace(":", "")
    filename = f"{family}-{version}-report-{stamp}Z.pdf"
    manifest = {"entries": [m.to_dict() for m in doc.manifest],
                "findings": [{"area": f.area, "check": f.check, "status": f.status, "detail": f.detail}
                             for f in doc.findings],
                "parameters": doc.parameters, "library_versions": doc.library_versions, "pages": rendered.pages,
                "seconds": seconds, "author": doc.author, "created_at": doc.created_at}
    with transaction() as s:
        mv = ModelRepository(s).version(family, version)
        row = ReportRepository(s).add(Report(model_version_id=mv.id, sha256=sha, filename=filename, manifest=manifest,
                                             created_by=actor.username, signed=False))
        auditlog.append(s, actor=actor.username, action="report.generate", subject=f"{family}/{version}",
                        details={"report_id": row.id, "sha256": sha, "pages": rendered.pages, "author": doc.author})
        report_id = row.id
    if progress:
        progress(1.0, f"report {report_id} stored")
    return {"id": report_id, "sha256": sha, "filename": filename, "pages": rendered.pages, "seconds": seconds,
            "family": family, "version": version, "findings": manifest["findings"]}


def _report_dict(row: Report, family: str, version: str, signoff: Optional[SignOff]) -> dict[str, Any]:
    man = row.manifest or {}
    return {"id": row.id, "family": family, "version": version, "sha256": row.sha256, "filename": row.filename,
            "created_by": row.created_by, "created_at": row.created_at.isoformat() if row.created_at else "",
            "pages": man.get("pages"), "author": man.get("author"), "findings": man.get("findings", []),
            "signed": bool(row.signed),
            "signoff": None if signoff is None else {
                "decision": signoff.decision, "reason": signoff.reason, "signed_by": signoff.signed_by,
                "signed_at": signoff.signed_at.isoformat() if signoff.signed_at else ""}}


def _signoff_of(session: Any, report_id: int) -> Optional[SignOff]:
    return session.scalars(select(SignOff).where(SignOff.report_id == report_id)).first()


def list_reports(*, family: Optional[str] = None, version: Optional[str] = None) -> list[dict[str, Any]]:
    """Stored reports, newest first, with their sign-off (if any)."""
    if version is not None and family is None:
        raise ReportError("give the family together with the version")
    with transaction() as s:
        q = select(Report).order_by(Report.id.desc())
        out = []
        repo = ModelRepository(s)
        if family is not None:
            ids = {v.id for v in repo.versions(family) if version is None or v.version == version}
            if not ids:
                raise RegistryError(f"{family} {version or ''} is not registered".replace("  ", " "))
            q = q.where(Report.model_version_id.in_(ids))
        for row in s.scalars(q).all():
            mv = repo.version_by_id(row.model_version_id)
            so = _signoff_of(s, row.id)
            out.append(_report_dict(row, mv.family.name, mv.version, so))
        return out


def get_report(report_id: int) -> dict[str, Any]:
    with transaction() as s:
        row = ReportRepository(s).get(report_id)
        if row is None:
            raise ReportError(f"no report with id {report_id}")
        mv = ModelRepository(s).version_by_id(row.model_version_id)
        so = _signoff_of(s, row.id)
        return {**_report_dict(row, mv.family.name, mv.version, so), "manifest": dict(row.manifest or {})}


def report_bytes(report_id: int, *, actor: Principal = SYSTEM) -> tuple[str, bytes]:
    """(filename, PDF bytes); the stored file is re-hashed and refused if it no longer matches."""
    require(actor, "read")
    with transaction() as s:
        row = ReportRepository(s).get(report_id)
        if row is None:
            raise ReportError(f"no report with id {report_id}")
        sha, filename = row.sha256, row.filename
    data = ArtifactStore().get_bytes(sha)  # raises ArtifactIntegrityError on a hash mismatch
    if sha256_bytes(data) != sha:  # pragma: no cover - get_bytes already verified
        raise ReportError(f"report {report_id} does not match its recorded hash")
    return filename, data


def sign_report(report_id: int, *, decision: str, reason: str, actor: Principal = SYSTEM) -> dict[str, Any]:
    """Approve or reject the report's model version, once: records who, when and why, sets the version's
    status, marks the report signed (a second sign-off is refused) and writes the audit log."""
    require(actor, "sign")
    if decision not in DECISIONS:
        raise ReportError(f"decision must be 'approved' or 'rejected', got {decision!r}")
    reason = (reason or "").strip()
    if not reason:
        raise ReportError("give the reason for the decision")
    with transaction() as s:
        row = ReportRepository(s).get(report_id)
        if row is None:
            raise ReportError(f"no report with id {report_id}")
        existing = _signoff_of(s, report_id)
        if row.signed or existing is not None:
            who = f" by {existing.signed_by} ({existing.decision})" if existing else ""
            raise ReportError(f"report {report_id} is already signed{who}; a signed report is immutable")
        prior = s.scalars(select(SignOff).where(SignOff.model_version_id == row.model_version_id)).first()
        mv = ModelRepository(s).version_by_id(row.model_version_id)
        if prior is not None:
            raise ReportError(f"{mv.family.name} {mv.version} was already {prior.decision} on report {prior.report_id}; "
                              "versions are immutable, register a new version for a new decision")
        # The signature covers the bytes on file: refuse to sign a report whose stored file was altered.
        ArtifactStore().get_bytes(row.sha256)
        old_status = mv.status
        so = ReportRepository(s).add_signoff(SignOff(report_id=row.id, model_version_id=mv.id, decision=decision,
                                                     reason=reason, signed_by=actor.username))
        row.signed = True
        mv.status = decision
        auditlog.append(s, actor=actor.username, action="report.sign", subject=f"{mv.family.name}/{mv.version}",
                        details={"report_id": row.id, "sha256": row.sha256, "decision": decision, "reason": reason,
                                 "status_from": old_status, "status_to": decision})
        return {"report_id": row.id, "family": mv.family.name, "version": mv.version, "decision": decision,
                "reason": reason, "signed_by": actor.username,
                "signed_at": so.signed_at.isoformat() if so.signed_at else "", "status": mv.status,
                "sha256": row.sha256}
