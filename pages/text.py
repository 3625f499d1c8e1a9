"""Text attributions: which words drove a text classifier's decision, per method, with attention views."""

from __future__ import annotations

import streamlit as st

from audit.services.core.datasets import list_datasets, load_text_samples
from audit.services.analyses.explanations.views import quality_metrics
from audit.services.analyses.text.service import (
    attention_maps,
    describe_parameters,
    explain_texts,
    text_faithfulness,
    method_agreement,
    text_method_choices,
)
from audit.viz import matrix_heatmap, token_html, topk_bar
from pages.ui import current_principal, literal, pick_version, show_error

CHOICES = text_method_choices()  # methods, labels, defaults and option ranges, from the methods' own classes
METHODS = CHOICES["methods"]  # name -> label as people say it
OPTIONS = CHOICES["options"]
QUALITY = quality_metrics("text")  # label, direction and meaning of each text metric, as it declares them
IG_MAX_STEPS = OPTIONS["ig_max_steps"]["default"]  # the engine's default cap

principal = current_principal()
st.title("Text attributions")
fam, ver = pick_version("text-classification")
labels = ver["labels"]

text_sets = [d["name"] for d in list_datasets() if d["kind"] == "text"]
source = st.radio("Text", ["Type a text", "Reference sample"], horizontal=True)
if source == "Reference sample" and text_sets:
    ds = st.selectbox("Reference set", text_sets)
    samples = load_text_samples(ds)
    i = st.slider("Sample", 0, len(samples.texts) - 1, 0)
    text = samples.texts[i]
    label = samples.label_texts[i]
    st.caption(f"label {literal(label) if label is not None else '—'} · groups {literal(samples.groups[i])}")
    st.markdown(literal(text))
else:
    text = st.text_area("Text", "She has a stable income and has never missed a payment.", max_chars=2000)

with st.form("text-explain"):
    methods = st.multiselect("Methods", list(METHODS), format_func=METHODS.get, default=CHOICES["preselected"])
    c1, c2, c3, c4 = st.columns(4)
    target_choice = c1.selectbox("Target", ["predicted"] + labels)
    steps = OPTIONS["ig_steps"]
    ig_steps = c2.number_input("IG steps", steps["low"], IG_MAX_STEPS, steps["default"], help=steps["doc"])
    baseline = c3.selectbox("IG baseline", OPTIONS["ig_baseline"]["choices"], help=OPTIONS["ig_baseline"]["doc"])
    tolerance = c4.number_input("IG completeness tolerance", float(OPTIONS["ig_tolerance"]["low"]), None, 0.0,
                                step=0.005, format="%.3f",
                                help="0 keeps the steps fixed; above 0, a text whose completeness gap exceeds "
                                     f"it is integrated again with twice the steps (up to {IG_MAX_STEPS})")
    go = st.form_submit_button("Explain", type="primary")

if go:
    if not principal.can("run"):
        st.error("Your role may view stored results but not run new explanations.")
        st.stop()
    bar = st.progress(0.0, text="attributing…")
    try:
        st.session_state["text_exp"] = explain_texts(
            fam["family"], ver["version"], [text], methods=methods,
            target=None if target_choice == "predicted" else labels.index(target_choice),
            options={"ig_steps": int(ig_steps), "ig_baseline": baseline,
                     "ig_tolerance": float(tolerance) if tolerance > 0 else None}, actor=principal,
            progress=lambda f, m: bar.progress(min(1.0, f), text=literal(m)))[0]
        st.session_state["text_exp_key"] = (fam["family"], ver["version"])
    except (ValueError, PermissionError) as exc:
        show_error(exc)
    bar.empty()

entry = st.session_state.get("text_exp")
if entry is None or st.session_state.get("text_exp_key") != (fam["family"], ver["version"]):
    st.stop()

c1, c2 = st.columns([1, 2])
with c1:
    pred = entry["prediction"]
    st.metric("Predicted", literal(labels[pred]), f"{entry['probabilities'][pred]:.1%}")
    st.plotly_chart(topk_bar(entry["probabilities"], labels), use_container_width=True)
    if entry["delta"] is not None:
        gap = QUALITY["completeness_error"]
        st.caption(f"Integrated Gradients {gap['label'].lower()}: {entry['delta']:.2e} ({gap['better']})",
                   help=gap["description"])
with c2:
    st.subheader(f"Tokens towards class {literal(labels[entry['target']])}")
    view = st.radio("View", ["words", "tokens"], horizontal=True)
    for m, scores in entry["scores"].items():
        # The options shown are those stored with this map, not the form's current values.
        used = describe_parameters(m, entry.get("parameters", {}).get(m, {}))
        st.markdown(f"**{METHODS.get(m, m)}**" + (f" · {used}" if used else "")
                    + (" · from the store" if entry["cached"][m] else ""))
        if view == "words" and entry["word_scores"].get(m) is not None:
            st.html(token_html(entry["words"], entry["word_scores"][m]))
        else:
            st.html(token_html(entry["tokens"], scores))
    st.caption("Red pushes towards the class, blue away; each method on its own scale (hover for values).")

names, agreement = method_agreement(entry)
if len(names) > 1:
    shown = [METHODS.get(n, n) for n in names]
    st.plotly_chart(matrix_heatmap(agreement, shown, shown, title="Method agreement (Spearman rank correlation)",
                                   zmin=-1, zmax=1, colorscale="RdBu"), use_container_width=True)

faith = text_faithfulness(fam["family"], ver["version"], entry)
faith_metrics = [QUALITY[k] for k in next(iter(faith.values()), {}) if k in QUALITY]
with st.expander(f"Faithfulness ({' and '.join(d['label'].lower() for d in faith_metrics)})"):
    st.caption(" ".join(f"{d['label']}: {d['description']} ({d['better']})." for d in faith_metrics)
               + " Averaged over the top 1-50% of tokens. " + " ".join(sorted({d["paper"] for d in faith_metrics})))
    st.dataframe([{"method": METHODS.get(m, m), **{f"{d['label']} ({d['better']})": round(v[d["name"]], 4)
                                                   for d in faith_metrics}} for m, v in faith.items()],
                 hide_index=True, use_container_width=True)

with st.expander("Attention per layer and head, and rollout"):
    att = attention_maps(fam["family"], ver["version"], entry["text"])
    a = att["attentions"]
    c1, c2 = st.columns(2)
    layer = c1.slider("Layer", 0, a.shape[0] - 1, a.shape[0] - 1)
    head = c2.slider("Head", 0, a.shape[1] - 1, 0)
    st.plotly_chart(matrix_heatmap(a[layer, head], att["tokens"], att["tokens"],
                                   title=f"Attention, layer {layer}, head {head}", zmin=0, zmax=1),
                    use_container_width=True)
    st.markdown("**Rollout from [CLS]**")
    st.html(token_html(att["tokens"], att["rollout"]))
