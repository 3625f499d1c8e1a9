"""Drift: how a family's explanations change from version to version, which methods are flagged, and
the samples whose explanations changed most, base and new side by side."""

from __future__ import annotations

import html

import streamlit as st

from audit.services.datasets import list_datasets
from audit.services.drift import DriftError, available_methods, drift_assessment
from audit.services.drift_views import drift_gallery, drift_trend
from audit.services.registry import input_kind, list_models
from audit.viz import heatmap_grid, lines_figure, token_html
from pages.ui import current_principal, literal, show_error

MEASURES = {"rank_correlation": "rank correlation", "topk_iou": "top-k IoU", "ssim": "SSIM"}

principal = current_principal()
st.title("Explanation drift")
st.caption("Each sample is explained for the same class in both versions (the earlier version's prediction, or the "
           "true label), then the maps are compared: Spearman rank correlation, overlap of the most relevant "
           "positions (top-k IoU) and SSIM.")

families = [f for f in list_models() if len(f["versions"]) >= 2]
if not families:
    st.info("Drift needs a family with at least two versions.")
    st.stop()

fam = st.selectbox("Model family", families, format_func=lambda f: f"{f['family']} ({len(f['versions'])} versions)")
kind = input_kind(fam["task"])
try:
    choices = available_methods(fam["task"], family=fam["family"], versions=[v["version"] for v in fam["versions"]])
except ValueError as exc:  # a version whose model does not load
    show_error(exc)
    st.stop()
sets = [d["name"] for d in list_datasets() if d["kind"] == kind]
if not sets:
    st.info(f"No {kind} reference set is stored.")
    st.stop()

with st.form("drift"):
    c1, c2, c3 = st.columns(3)
    dataset = c1.selectbox("Reference set", sets)
    limit = c2.number_input("Samples (first N of the set)", 4, 5000, 48 if kind == "image" else 16)
    target = c3.radio("Class explained in both versions", ["base_prediction", "label"], horizontal=True,
                      format_func=lambda t: {"base_prediction": "earlier version's prediction",
                                             "label": "true label"}[t])
    methods = st.multiselect("Methods", choices["methods"], default=choices["default"])
    with st.expander("Thresholds"):
        c1, c2, c3, c4, c5 = st.columns(5)
        top_k = c1.slider("top-k fraction", 0.02, 0.5, 0.1, 0.01)
        min_rc = c2.number_input("min mean rank corr.", -1.0, 1.0, 0.7, 0.05)
        min_iou = c3.number_input("min mean top-k IoU", 0.0, 1.0, 0.5, 0.05)
        min_ssim = c4.number_input("min mean SSIM (0 = off)", 0.0, 1.0, 0.0, 0.05)
        max_drop = c5.number_input("max accuracy drop", 0.0, 1.0, 0.05, 0.01)
        ig_steps = st.number_input("Integrated Gradients steps", 4, 256, 32)
    run = st.form_submit_button("Compare every consecutive pair of versions", type="primary",
                                disabled=not principal.can("run"))
if not principal.can("run"):
    st.caption("Your role shows stored drift results; running new comparisons needs the auditor role.")

thresholds = {"min_rank_correlation": float(min_rc), "min_topk_iou": float(min_iou),
              "min_ssim": float(min_ssim) or None, "max_accuracy_drop": float(max_drop)}
key = f"drift-trend-{fam['family']}"
if run:
    bar = st.progress(0.0, text="comparing versions…")
    try:
        st.session_state[key] = drift_trend(
            fam["family"], compute_missing=True, dataset=dataset, methods=methods, limit=int(limit), target=target,
            options={"ig_steps": int(ig_steps), "seed": 0}, thresholds=thresholds, top_k=float(top_k),
            actor=principal, progress=lambda f, m: bar.progress(min(1.0, f), text=literal(m)))
    except (ValueError, PermissionError) as exc:
        bar.empty()
        show_error(exc)
        st.stop()
    bar.empty()
trend = st.session_state.get(key) or drift_trend(fam["family"], compute_missing=False, actor=principal)

pairs = [p for p in trend["pairs"] if p["result_id"] is not None]
if not pairs:
    st.info("No drift has been computed for this family yet.")
    st.stop()

labels = [f"{p['base']} → {p['new']}" for p in pairs]
method_names = sorted({m for p in pairs for m in p["methods"]})
c1, c2 = st.columns(2)
for col, (measure, title) in zip((c1, c2), (("rank_correlation", "Mean rank correlation"),
                                             ("topk_iou", "Mean top-k IoU"))):
    series = {m: [p["methods"].get(m, {}).get(f"{measure}_mean") for p in pairs] for m in method_names}
    col.plotly_chart(lines_figure(labels, series, title=title, ytitle=MEASURES[measure]), use_container_width=True,
                     key=f"trend-{measure}")
st.dataframe([{"versions": lab, "flagged": "yes" if p["flagged"] else "no", "samples": p["samples"],
               "flagged methods": ", ".join(m for m, d in p["methods"].items() if d.get("flagged")) or "—",
               "result": p["result_id"]} for lab, p in zip(labels, pairs)], hide_index=True, use_container_width=True)

pick = st.selectbox("Version pair", range(len(pairs)), index=len(pairs) - 1, format_func=lambda i: labels[i])
try:
    res = drift_assessment(pairs[pick]["result_id"])
except DriftError as exc:
    show_error(exc)
    st.stop()
if res.flagged:
    st.error("Drift flagged:\n\n" + "\n".join(f"- {literal(f)}" for f in res.flags))
else:
    st.success("No drift flagged for this pair.")
st.caption(f"{res.samples} samples of {literal(res.dataset)}; {literal(res.target_rule)}; top-k = {res.top_k:.0%}.")
rows = []
for m, d in res.methods.items():
    row = {"method": m, "flagged": "yes" if d.flagged else "no"}
    for measure, title in MEASURES.items():
        dist = getattr(d, measure)
        for stat in ("mean", "median", "p10"):
            v = dist.get(stat)
            row[f"{title} {stat}"] = None if v is None else round(v, 3)
    rows.append(row)
st.dataframe(rows, hide_index=True, use_container_width=True)
if res.metrics:
    with st.expander("Metric changes"):
        st.dataframe([d.to_dict() for d in res.metrics], hide_index=True, use_container_width=True)
if res.concepts or res.disparities:
    with st.expander("Concept and bias changes", expanded=any(c.flagged for c in res.concepts)):
        if res.concepts:
            st.dataframe([{"class": c.target_label, "concept": c.concept, "layer": c.layer,
                           f"score {res.base}": c.base_score, f"score {res.new}": c.new_score, "change": c.delta,
                           f"significant {res.base}": c.base_significant, f"significant {res.new}": c.new_significant,
                           "flag": c.reason} for c in res.concepts], hide_index=True, use_container_width=True)
        if res.disparities:
            st.dataframe([d.to_dict() for d in res.disparities], hide_index=True, use_container_width=True)

st.subheader("Samples whose explanations changed most")
methods_here = list(res.most_changed)
if not methods_here:
    st.stop()
flagged_here = res.flagged_methods
gm = st.selectbox("Method", methods_here, index=methods_here.index(flagged_here[0]) if flagged_here else 0)
n_show = st.slider("How many", 1, 8, 4)
try:
    items = drift_gallery(res.result_id, method=gm, n=int(n_show), actor=principal)
except (ValueError, PermissionError) as exc:
    show_error(exc)
    st.stop()
for i, it in enumerate(items):
    meas = ", ".join(f"{MEASURES[k]} {v:.2f}" for k, v in it.measures.items() if v is not None and k in MEASURES)
    st.markdown(f"**{literal(it.key)}** · explained class **{literal(it.target_label)}** · predictions "
                f"{literal(res.base)}: {literal(it.base_prediction)}, {literal(res.new)}: {literal(it.new_prediction)} · {meas}")
    if it.image is not None:
        st.plotly_chart(heatmap_grid(it.image, {f"version {res.base}": it.base_map,
                                                f"version {res.new}": it.new_map}, cols=2),
                        use_container_width=True, key=f"gallery-{i}")
    elif it.tokens is not None:
        scale = max(float(abs(it.base_scores).max()), float(abs(it.new_scores).max())) or 1.0
        # st.html, not Markdown: the tokens are the texts' own words, escaped as HTML by token_html.
        st.html(f"version {html.escape(str(res.base))}: " + token_html(it.tokens, it.base_scores, scale=scale))
        st.html(f"version {html.escape(str(res.new))}: " + token_html(it.tokens, it.new_scores, scale=scale))
