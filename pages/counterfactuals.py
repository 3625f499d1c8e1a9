"""Counterfactuals: the smallest change that flips a decision, side by side with the original."""

from __future__ import annotations

import streamlit as st

from audit.services.analyses.counterfactuals.service import (counterfactual_for_sample, run_reference_counterfactuals,
                                            text_counterfactual_for)
from audit.services.core.datasets import list_datasets, sample_index
from audit.viz import heatmap_grid, topk_bar
from pages.ui import current_principal, keep_result, kept_result, literal, pick_version, show_error

principal = current_principal()
st.title("Counterfactuals")
fam, ver = pick_version()
labels = ver["labels"]

if fam["task"] == "text-classification":
    text = st.text_area("Text", "She has a stable income and has never missed a payment.")
    if st.button("Find a minimal substitution", type="primary"):
        if not principal.can("run"):
            st.error("Your role may view stored results but not run searches.")
            st.stop()
        try:
            with st.spinner("Searching substitutions…"):
                st.json(text_counterfactual_for(fam["family"], ver["version"], text, actor=principal))
        except (ValueError, PermissionError) as exc:
            show_error(exc)
    st.stop()

datasets = [d["name"] for d in list_datasets() if d["kind"] == "image"]
dataset = st.selectbox("Reference set", datasets)
samples = sample_index(dataset)
with st.form("cf"):
    idx = st.slider("Sample", 0, len(samples.keys) - 1, 0)
    c1, c2, c3 = st.columns(3)
    target = c1.selectbox("Flip to", ["any other class"] + labels)
    distance = c2.radio("Distance", ["l2", "l1"], horizontal=True)
    k = c3.number_input("Diverse counterfactuals k", 0, 8, 0)
    go = st.form_submit_button("Search", type="primary")

if go:
    if not principal.can("run"):
        st.error("Your role may view stored results but not run searches.")
        st.stop()
    try:
        with st.spinner("Optimising the smallest change…"):
            keep_result("cf_result", counterfactual_for_sample(
                fam["family"], ver["version"], dataset=dataset, sample_key=samples.keys[idx],
                target=None if target == "any other class" else labels.index(target), distance=distance,
                k_diverse=int(k), actor=principal), fam, ver)
    except (ValueError, PermissionError) as exc:
        show_error(exc)

cf = kept_result("cf_result", fam, ver)
if cf is not None:
    (st.success if cf.valid else st.error)(
        f"{'Valid' if cf.valid else 'No valid'} counterfactual: {literal(labels[cf.original_class])} → "
        f"{literal(labels[cf.cf_class])} · L1 {cf.l1:.3f} · L2 {cf.l2:.3f} · changed {cf.changed_fraction:.1%} of pixels")
    st.caption("Judged on the 8-bit image shown here, fed back through the model.")
    c1, c2, c3 = st.columns(3)
    c1.image(cf.original.transpose(1, 2, 0).squeeze(), caption="original", use_container_width=True)
    c2.image(cf.counterfactual.transpose(1, 2, 0).squeeze(), caption="counterfactual", use_container_width=True)
    c3.plotly_chart(heatmap_grid(cf.original / 255.0, {"difference": cf.difference}, mode="signed", cols=1),
                    use_container_width=True)
    c1, c2 = st.columns(2)
    c1.caption("Probabilities before")
    c1.plotly_chart(topk_bar(cf.probabilities_before, labels), use_container_width=True, key="before")
    c2.caption("Probabilities after")
    c2.plotly_chart(topk_bar(cf.probabilities_after, labels), use_container_width=True, key="after")
    if cf.diverse:
        d = cf.diverse
        spread = "n/a" if d.diversity_l2 is None else f"{d.diversity_l2:.3f}"
        st.subheader(f"Diverse set: validity {d.validity:.0%}, mean pairwise L2 {spread}")
        st.image([im.transpose(1, 2, 0).squeeze() for im in d.images],
                 caption=[literal(labels[c]) + ("" if v else " (invalid)") for c, v in zip(d.classes, d.valid)], width=96)

st.divider()
st.subheader("Whole reference set")
limit = st.number_input("Samples", 5, len(samples.keys), min(40, len(samples.keys)))
if st.button("Run on the reference set"):
    if not principal.can("run"):
        st.error("Your role may view stored results but not run searches.")
        st.stop()
    bar = st.progress(0.0)
    try:
        res = run_reference_counterfactuals(fam["family"], ver["version"], dataset=dataset, limit=int(limit),
                                            actor=principal, progress=lambda f, m: bar.progress(min(1.0, f), text=literal(m)))
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("Valid", "n/a" if res.valid_rate is None else f"{res.valid_rate:.0%}")
        c2.metric("Mean L2", "n/a" if res.mean_l2 is None else f"{res.mean_l2:.3f}")
        c3.metric("Mean L1", "n/a" if res.mean_l1 is None else f"{res.mean_l1:.2f}")
        c4.metric("Changed pixels", "n/a" if res.mean_changed_fraction is None else f"{res.mean_changed_fraction:.1%}")
        st.caption(f"Validity judged on the {literal(res.validity_judged_on)}.")
    except (ValueError, PermissionError) as exc:
        show_error(exc)
    bar.empty()
