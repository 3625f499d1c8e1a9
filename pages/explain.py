"""Explain: attribution maps for one image, with faithfulness, feature maps, costs and sanity checks."""

from __future__ import annotations

import numpy as np
import streamlit as st

from audit.services.datasets import list_datasets, sample_index
from audit.services.explain import ExplainError, explain_image, reverify
from audit.services.explain_views import (cost_estimate, reference_view, describe_engine, explain_form, faithfulness_curves,
                                          feature_maps, localisation, method_labels, sample_region, sanity,
                                          sanity_methods, true_class_view)
from audit.viz import curves_figure, describe_region, feature_maps_figure, heatmap_grid, outlined, sanity_figure, topk_bar
from pages.ui import current_principal, literal, pick_version, show_error


def outlined_uint8(image: np.ndarray, region) -> np.ndarray:  # noqa: ANN001
    """[C, H, W] in [0, 1] -> [H, W, 3] uint8, with the declared region (box or mask) outlined in red."""
    return (outlined(image, region) * 255).astype(np.uint8)

principal = current_principal()
st.title("Explain a prediction")

fam, ver = pick_version("image-classification")
labels = ver["labels"]

source = st.radio("Input", ["Reference sample", "Upload an image"], horizontal=True)
dataset = sample_key = upload_bytes = None
if source == "Reference sample":
    image_sets = [d for d in list_datasets() if d["kind"] == "image"]
    if not image_sets:
        st.info("No image reference set is stored.")
        st.stop()
    ds = st.selectbox("Reference set", image_sets, format_func=lambda d: f"{d['name']} ({d['samples']} samples)")
    dataset = ds["name"]
    samples = sample_index(dataset)
    idx = st.slider("Sample", 0, len(samples.keys) - 1, 0)
    sample_key = samples.keys[idx]
    try:
        view = reference_view(fam["family"], ver["version"], dataset, sample_key)
    except ValueError as exc:
        show_error(exc)
        st.stop()
    region = view["region"]
    img = view["image"]
    st.image(outlined_uint8(img[None] if img.ndim == 2 else img.transpose(2, 0, 1), region), width=160,
             caption=f"{literal(sample_key)} · label {literal(view['label'] or '—')} · groups "
                     f"{literal(view['groups'] or '—')}"
                     + (f" · declared region {describe_region(region)} (red)" if region is not None else "")
                     + (" · its declared region lies outside the model's view" if view["outside_view"] else ""))
    st.caption(f"As the model sees it ({view['stored_size'][0]}x{view['stored_size'][1]} stored): "
               f"{literal(view['preprocessing'])}")
else:
    up = st.file_uploader("Image (PNG, JPEG, BMP, GIF, TIFF or WebP; at most 10 MB)")
    if up is not None:
        upload_bytes = up.getvalue()

form = explain_form(fam["family"], ver["version"])
opt = form["options"]


def number(column, label: str, name: str) -> int:  # noqa: ANN001
    o = opt[name]
    return column.number_input(label, o["min"], o["max"], o["default"], help=o["help"])


with st.form("explain"):
    methods = st.multiselect("Methods", form["methods"], default=form["default"], format_func=form["labels"].get)
    c1, c2, c3, c4 = st.columns(4)
    target_choice = c1.selectbox("Target", ["predicted"] + labels)
    ig_steps = number(c2, "IG steps S", "ig_steps")
    sg_samples = number(c3, "SmoothGrad samples N", "sg_samples")
    seed = number(c4, "Seed", "seed")
    c1, c2 = st.columns(2)
    occ = number(c1, "Occlusion window (px)", "occlusion_window")
    fast = c2.checkbox("Fast path (bf16, channels_last; used only if the fidelity guard passes)",
                       value=opt["fast"]["default"], help=opt["fast"]["help"])
    go = st.form_submit_button("Explain", type="primary")

options = {"ig_steps": int(ig_steps), "sg_samples": int(sg_samples), "seed": int(seed),
           "occlusion_window": int(occ), "occlusion_stride": int(occ), "fast": bool(fast)}
if go:
    if not principal.can("run"):
        st.error("Your role may view stored results but not run new explanations.")
        st.stop()
    if source != "Reference sample" and upload_bytes is None:
        st.error("Choose an image to upload first.")
        st.stop()
    bar = st.progress(0.0, text="explaining…")
    try:
        exp = explain_image(fam["family"], ver["version"], methods=methods, dataset=dataset, sample_key=sample_key,
                            image_bytes=upload_bytes,
                            target=None if target_choice == "predicted" else labels.index(target_choice),
                            options=options, actor=principal,
                            progress=lambda f, m: bar.progress(min(1.0, f), text=literal(m)))
    except (ValueError, OSError) as exc:  # OSError: a full disk, PermissionError among them
        bar.empty()
        show_error(exc)
        st.stop()
    bar.empty()
    st.session_state["explanation"] = exp
    st.session_state["explain_options"] = options

exp = st.session_state.get("explanation")
if exp is None or exp.family != fam["family"] or exp.version != ver["version"]:
    st.stop()

pred = int(exp.probabilities.argmax())
c1, c2 = st.columns([1, 2])
with c1:
    st.subheader("Prediction")
    st.metric("Predicted", literal(exp.labels[pred]), f"{exp.probabilities[pred]:.1%}")
    if exp.true_label is not None:
        st.caption(f"True label: {literal(exp.labels[exp.true_label])}" + (" ✅" if exp.true_label == pred else " ❌ misclassified"))
    st.plotly_chart(topk_bar(exp.probabilities, exp.labels, highlight=exp.true_label), use_container_width=True)
with c2:
    st.subheader(f"Attributions for class {literal(exp.labels[exp.target])}")
    if exp.maps:
        st.plotly_chart(heatmap_grid(exp.image, {m: sm.attribution for m, sm in exp.maps.items()}),
                        use_container_width=True, key="grid")
    for m, why in exp.skipped.items():
        st.info(f"{m} skipped: {literal(why)}")
    cached = [m for m, sm in exp.maps.items() if sm.cached]
    if cached:
        st.caption(f"Returned from the store (not recomputed): {', '.join(cached)}")

tab_q, tab_f, tab_c, tab_t, tab_s, tab_v = st.tabs(["Faithfulness", "Feature maps", "Cost", "True class",
                                                    "Sanity check", "Provenance"])
with tab_q:
    curves = faithfulness_curves(exp)
    c1, c2 = st.columns(2)
    c1.plotly_chart(curves_figure(curves.fractions, curves.deletion, curves.deletion_auc,
                                  title="Deletion (lower AUC is better)"), use_container_width=True)
    c2.plotly_chart(curves_figure(curves.fractions, curves.insertion, curves.insertion_auc,
                                  title="Insertion (higher AUC is better)"), use_container_width=True)
    declared = sample_region(exp)
    if declared is not None:
        st.subheader("Localisation (declared region)")
        names = method_labels()
        st.dataframe([{"method": names.get(m, m), "relevance mass": v["relevance_mass"],
                       "pointing game": v["pointing_game"]} for m, v in localisation(exp, declared).items()],
                     hide_index=True, use_container_width=True)
        st.caption("Relevance mass: share of |attribution| inside the region (higher is better). Pointing game: "
                   "1 when the most relevant pixel lies inside it. Both on the map's own resolution.")
with tab_f:
    for layer in feature_maps(exp):
        st.plotly_chart(feature_maps_figure(layer), use_container_width=True)
with tab_c:
    opts = st.session_state.get("explain_options", {})
    est = cost_estimate(exp.family, exp.version, methods=list(exp.maps), **opts)
    rows = []
    for m, sm in exp.maps.items():
        e = est.get(m, {})
        rows.append({"method": m, "estimated passes (fwd/bwd)": f"{e.get('forward_samples')}/{e.get('backward_samples')}",
                     "estimated GFLOPs": round(e.get("gflops", 0.0), 3),
                     "estimated peak MB": round(e.get("peak_mem_mb", 0.0), 1),
                     "measured s": round(sm.duration_s, 4), "from store": sm.cached})
    st.dataframe(rows, hide_index=True, use_container_width=True)
    st.caption("Estimates come from the model's layer shapes; measured times are what this explanation took.")
with tab_t:
    if exp.true_label is None:
        st.caption("The true label is known for reference samples only.")
    elif exp.true_label == pred:
        st.caption("Correctly classified: nothing to compare.")
    else:
        view = true_class_view(exp, methods=list(exp.maps), options=st.session_state.get("explain_options"),
                               actor=principal)
        st.markdown(f"True class **{literal(exp.labels[view['true_label']])}** ranks **{view['rank']}** of {len(exp.labels)}.")
        c1, c2 = st.columns(2)
        c1.plotly_chart(heatmap_grid(exp.image, {m: sm.attribution for m, sm in exp.maps.items()}, cols=2),
                        use_container_width=True, key="pred-maps")
        c1.caption(f"Predicted class {literal(exp.labels[pred])}")
        c2.plotly_chart(heatmap_grid(exp.image, view["maps"], cols=2), use_container_width=True, key="true-maps")
        c2.caption(f"True class {literal(exp.labels[view['true_label']])}")
with tab_s:
    st.caption("Cascading model-parameter randomisation: maps that do not change are not explaining the model.")
    if st.button("Run the sanity check"):
        with st.spinner("Randomising layers from the top…"):
            res = sanity(exp, methods=sanity_methods(exp), actor=principal)
        st.plotly_chart(sanity_figure(res["steps"], res["correlations"], res["threshold"]), use_container_width=True)
        flagged = [m for m, f in res["flagged"].items() if f]
        if flagged:
            st.error("Failed the randomisation check:\n\n" + "\n".join(
                f"- {m}: {literal(res['reasons'].get(m, 'maps barely change'))}" for m in flagged))
        else:
            st.success("Every method's maps change when the model is randomised.")
with tab_v:
    st.dataframe([{"method": m, "explanation id": sm.explanation_id, "target": sm.target,
                   "computed on": describe_engine(sm.engine), "parameters": str(sm.parameters),
                   "metrics": str(sm.metrics)} for m, sm in exp.maps.items()],
                 hide_index=True, use_container_width=True)
    pick = st.selectbox("Re-verify a stored map", list(exp.maps))
    if st.button("Re-verify"):
        try:
            r = reverify(exp.maps[pick].explanation_id, dataset=dataset, image_bytes=upload_bytes, actor=principal)
            (st.success if r.matches else st.error)(
                f"{r.method}: {literal(r.message)} (max |diff| {r.max_abs_diff:.2e}, "
                f"rank correlation {r.rank_correlation:.4f})")
        except (ValueError, PermissionError) as exc:
            show_error(exc)
