"""Bias audit: performance by group with confidence intervals, the worst group, explanation disparity,
and the identity-swap probe for text models."""

from __future__ import annotations

import streamlit as st

from audit.services.datasets import list_datasets
from audit.services.fairness import group_attributes, run_bias_audit, run_text_probe
from audit.viz import bars_with_errors
from pages.ui import current_principal, pick_version, show_error

principal = current_principal()
st.title("Bias audit")
fam, ver = pick_version()
kind = "text" if fam["task"] == "text-classification" else "image"
datasets = [d["name"] for d in list_datasets() if d["kind"] == kind]
if not datasets:
    st.info(f"No {kind} reference set is stored.")
    st.stop()

with st.form("bias"):
    dataset = st.selectbox("Reference set", datasets)
    attrs = group_attributes(dataset)
    attributes = st.multiselect("Sensitive attributes (several = intersections)", attrs, default=attrs[:1])
    upload = st.file_uploader("…or a CSV with sample_id and group columns (overrides the stored groups)", type=["csv"])
    c1, c2, c3 = st.columns(3)
    labels = ver["labels"]
    pos = c1.selectbox("Positive class", ["one-vs-rest (macro)"] + labels if len(labels) > 2 else labels,
                       index=0 if len(labels) > 2 else len(labels) - 1)
    n_boot = c2.number_input("Bootstrap resamples", 0, 2000, 200)
    expl = c3.selectbox("Explanation disparity", ["none", "gradcam", "saliency", "integrated_gradients"]
                        if kind == "image" else ["none", "integrated_gradients", "grad_x_input"])
    run = st.form_submit_button("Run the audit", type="primary")

if run:
    if not principal.can("run"):
        st.error("Your role may view stored results but not run audits.")
        st.stop()
    try:
        with st.spinner("Predicting the reference set and bootstrapping…"):
            st.session_state["bias_result"] = run_bias_audit(
                fam["family"], ver["version"], dataset=dataset, attributes=attributes, n_boot=int(n_boot),
                positive_label=None if pos.startswith("one-vs-rest") else labels.index(pos),
                csv_bytes=upload.getvalue() if upload is not None else None,
                explanation_method=None if expl == "none" else expl, actor=principal)
    except (ValueError, PermissionError) as exc:
        show_error(exc)

res = st.session_state.get("bias_result")
if res is not None:
    s = res["summary"]
    for flag in s["flags"]:
        st.warning(flag)
    worst = s["worst_group"].get("accuracy")
    st.subheader(f"By group ({s['n']} samples) · worst accuracy: {worst}")
    rows = s["by_group"]
    names = [r["group"] for r in rows]
    highlight = names.index(worst) if worst in names else None
    for metric in ("accuracy", "selection_rate", "tpr", "fpr"):
        if metric in rows[0]:
            ci = [r.get(f"{metric}_ci") or [r[metric], r[metric]] for r in rows]
            st.plotly_chart(bars_with_errors(names, [r[metric] for r in rows], [c[0] for c in ci], [c[1] for c in ci],
                                             title=f"{metric} by group (95% bootstrap CI)", highlight=highlight,
                                             yrange=(0, 1)), use_container_width=True)
    st.dataframe(rows, hide_index=True, use_container_width=True)
    c1, c2 = st.columns(2)
    c1.metric("Demographic parity difference", f"{s['demographic_parity_difference']:.3f}")
    c2.metric("Equalized odds difference", f"{s['equalized_odds_difference']:.3f}")
    st.json({"difference": s["difference"], "ratio": s["ratio"]}, expanded=False)
    if s.get("explanation_disparity"):
        d = s["explanation_disparity"]
        st.subheader(f"Explanation disparity ({d['method']}: share of |attribution| on "
                     f"{'the watermark region' if d['kind'] == 'region' else 'identity tokens'})")
        st.plotly_chart(bars_with_errors([r["group"] for r in d["by_group"]], [r["mean"] for r in d["by_group"]],
                                         [r["ci"][0] if r["ci"][0] is not None else r["mean"] for r in d["by_group"]],
                                         [r["ci"][1] if r["ci"][1] is not None else r["mean"] for r in d["by_group"]],
                                         title=f"uniform baseline {d['baseline']:.3f}"), use_container_width=True)

if kind == "text":
    st.divider()
    st.subheader("Identity-swap probe")
    st.caption("Swap gendered words and names (he↔she, Mr↔Ms, …) and count how often the decision flips.")
    if st.button("Run the probe"):
        try:
            with st.spinner("Swapping identity terms…"):
                st.session_state["probe"] = run_text_probe(fam["family"], ver["version"], dataset=datasets[0],
                                                           actor=principal)
        except (ValueError, PermissionError) as exc:
            show_error(exc)
    probe = st.session_state.get("probe")
    if probe is not None:
        p = probe["summary"]
        c1, c2, c3 = st.columns(3)
        c1.metric("Flip rate", f"{p['flip_rate']:.1%}")
        c2.metric("Mean |Δ probability|", f"{p['mean_prob_change']:.3f}")
        c3.metric("Texts probed", p["n"])
        if p.get("examples"):
            st.dataframe(p["examples"], hide_index=True, use_container_width=True)
