"""Bias audit: performance by group with confidence intervals, the worst group, explanation disparity,
and the identity-swap probe for text models."""

from __future__ import annotations

import streamlit as st

from audit.services.datasets import list_datasets
from audit.services.fairness import group_attributes, run_bias_audit, run_text_probe
from audit.services.registry import input_kind
from audit.viz import bars_with_errors
from pages.ui import current_principal, keep_result, kept_result, literal, pick_version, show_error

principal = current_principal()
st.title("Bias audit")
fam, ver = pick_version()
kind = input_kind(fam["task"])
datasets = [d["name"] for d in list_datasets() if d["kind"] == kind]
if not datasets:
    st.info(f"No {kind} reference set is stored.")
    st.stop()

# Outside the form: a choice inside it applies only when the form is sent, so the attribute list and
# the probe below would still follow the previous reference set.
dataset = st.selectbox("Reference set", datasets)
with st.form("bias"):
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
        bar = st.progress(0.0, text="starting the bias audit…")
        keep_result("bias_result", run_bias_audit(
            fam["family"], ver["version"], dataset=dataset, attributes=attributes, n_boot=int(n_boot),
            positive_label=None if pos.startswith("one-vs-rest") else labels.index(pos),
            csv_bytes=upload.getvalue() if upload is not None else None,
            explanation_method=None if expl == "none" else expl, actor=principal,
            progress=lambda f, m: bar.progress(min(1.0, f), text=literal(m))), fam, ver)
        bar.empty()
    except (ValueError, PermissionError) as exc:
        show_error(exc)

def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{value:.3f}"


res = kept_result("bias_result", fam, ver)
if res is not None:
    for flag in res.flags:
        st.warning(literal(flag))
    worst = res.worst_group.get("accuracy")
    st.subheader(f"By group ({res.n} samples of {literal(res.dataset)}) · worst accuracy: {literal(worst)}")
    rows = [g.to_dict() for g in res.by_group]
    names = [g.group for g in res.by_group]
    highlight = names.index(worst) if worst in names else None
    for metric in ("accuracy", "selection_rate", "tpr", "fpr"):
        if res.by_group and metric in res.by_group[0].rates:
            values = [g.rate(metric) for g in res.by_group]
            ci = [g.intervals.get(metric, (v, v)) for g, v in zip(res.by_group, values)]
            st.plotly_chart(bars_with_errors(names, values, [c[0] if c[0] is not None else v for c, v in zip(ci, values)],
                                             [c[1] if c[1] is not None else v for c, v in zip(ci, values)],
                                             title=f"{metric} by group (95% bootstrap CI)", highlight=highlight,
                                             yrange=(0, 1)), use_container_width=True)
    st.dataframe(rows, hide_index=True, use_container_width=True)
    c1, c2 = st.columns(2)
    c1.metric("Demographic parity difference", _fmt(res.demographic_parity_difference))
    c2.metric("Equalized odds difference", _fmt(res.equalized_odds_difference))
    st.json({"difference": res.difference, "ratio": res.ratio}, expanded=False)
    d = res.explanation_disparity
    if d is not None:
        if d.kind == "map_similarity":
            st.subheader(f"Explanation disparity ({d.method}: region-free comparison of the groups' mean maps)")
            st.info(literal(d.note))
            if d.maps is not None:
                st.caption(f"largest total-variation distance {_fmt(d.maps.difference)} (chance level "
                           f"{_fmt(d.maps.null_difference)}, permutation p = {_fmt(d.maps.p_value)})")
                st.dataframe([{"groups": " vs ".join(p.groups), "total variation": p.total_variation,
                               "rank correlation": p.rank_correlation} for p in d.maps.pairs],
                             hide_index=True, use_container_width=True)
        else:
            where = "the regions the data declares" if d.kind == "region" else "identity tokens"
            st.subheader(f"Explanation disparity ({d.method}: share of |attribution| on {where})")
            st.caption(literal(d.note))
            means = [g.mean for g in d.by_group]
            st.plotly_chart(bars_with_errors([g.group for g in d.by_group], means,
                                             [g.ci[0] if g.ci[0] is not None else g.mean for g in d.by_group],
                                             [g.ci[1] if g.ci[1] is not None else g.mean for g in d.by_group],
                                             title=f"uniform baseline {_fmt(d.baseline)}"), use_container_width=True)

if kind == "text":
    st.divider()
    st.subheader("Identity-swap probe")
    st.caption(f"Swap gendered words and names (he↔she, Mr↔Ms, …) in the texts of {literal(dataset)} (the reference set "
               "chosen above) and count how often the decision flips.")
    if st.button("Run the probe"):
        if not principal.can("run"):
            st.error("Your role may view stored results but not run audits.")
            st.stop()
        try:
            with st.spinner("Swapping identity terms…"):
                keep_result("probe", run_text_probe(fam["family"], ver["version"], dataset=dataset, actor=principal),
                            fam, ver)
        except (ValueError, PermissionError) as exc:
            show_error(exc)
    probe = kept_result("probe", fam, ver)
    if probe is not None:
        st.caption(f"Probed on {literal(probe.dataset)}.")
        c1, c2, c3 = st.columns(3)
        c1.metric("Flip rate", "n/a" if probe.flip_rate is None else f"{probe.flip_rate:.1%}")
        c2.metric("Mean |Δ probability|", _fmt(probe.mean_prob_change))
        c3.metric("Texts probed", probe.n)
        if probe.examples:
            st.dataframe([vars(e) for e in probe.examples], hide_index=True, use_container_width=True)
