"""Concept tests (TCAV): does the model use a human concept for a class? Scores against random runs,
p-values (raw and corrected), CAV accuracies, examples, and the same concept across versions."""

from __future__ import annotations

import streamlit as st

from audit.services.concepts import (CORRECTIONS, DEFAULT_CORRECTION, GENERATED_CONCEPTS, MIN_RUNS,
                                     TEXT_GENERATED_CONCEPTS, ConceptError, concept_examples_preview, default_layers,
                                     layer_choices, run_concept_test, stored_concept_tests)
from audit.services.datasets import list_datasets, pick_reference_set
from audit.services.registry import input_kind
from audit.viz import bars_with_errors
from pages.ui import current_principal, literal, pick_version, show_error

principal = current_principal()
st.title("Concept tests (TCAV)")
st.caption("A concept is significant for a class when its TCAV scores differ from random-direction scores "
           "after correcting for every concept × layer tested.")

fam, ver = pick_version()
labels = ver["labels"]
kind = input_kind(fam["task"])
text = kind == "text"
datasets = [d["name"] for d in list_datasets() if d["kind"] == kind]
if not datasets:
    st.info(f"No {kind} reference set is stored: import one on the Datasets page.")
    st.stop()
if text:
    st.caption("A text concept is a stored text dataset of example sentences (import it on the Datasets page); "
               "random-reference is a control drawn like the random counterparts. Layers are the encoder's blocks, "
               "read through their [CLS] vector.")
    reference = pick_reference_set(None, fam["task"], labels)["name"]  # the set the other pages default to
    concept_choices = list(TEXT_GENERATED_CONCEPTS) + datasets
    default_concepts = [d for d in datasets if d != reference][:1] + ["random-reference"]
else:
    reference = datasets[0]
    concept_choices = list(GENERATED_CONCEPTS) + [d for d in datasets if d != "digits-reference"]
    default_concepts = ["watermark", "random-reference"]

with st.form("tcav"):
    c1, c2 = st.columns(2)
    concepts = c1.multiselect("Concepts", concept_choices, default=default_concepts)
    target_label = c2.selectbox("Class", labels, index=min(7, len(labels) - 1))
    try:
        suggested = default_layers(fam["family"], ver["version"])
    except ConceptError as exc:
        suggested = []
        st.caption(f"No default layers: {exc}")
    layers = st.multiselect("Layers", layer_choices(fam["family"], ver["version"]), default=suggested)
    c1, c2, c3, c4, c5 = st.columns(5)
    dataset = c1.selectbox("Reference data (inputs and random pool)", datasets, index=datasets.index(reference))
    test = c5.selectbox("Test", ["ttest", "pseudo_concept"],
                        help="ttest: concept scores vs random-vs-random scores (standard TCAV); pseudo_concept: "
                             "the concept's mean score against random sets treated as concepts (fewer false positives)")
    n_random = c2.number_input("Random runs R", 1, 50, 10, help=f"at least {MIN_RUNS}; 10 or more recommended")
    alpha = c3.number_input("alpha", 0.001, 0.2, 0.05, format="%.3f")
    correction = c4.selectbox("Correction", CORRECTIONS, index=CORRECTIONS.index(DEFAULT_CORRECTION))
    run = st.form_submit_button("Run concept test", type="primary")

if run:
    if not principal.can("run"):
        st.error("Your role may view stored results but not run concept tests.")
        st.stop()
    bar = st.progress(0.0, text="capturing activations…")
    try:
        st.session_state["tcav_result"] = run_concept_test(
            fam["family"], ver["version"], concepts=concepts, target=labels.index(target_label), layers=layers,
            dataset=dataset, n_random=int(n_random), alpha=float(alpha), correction=correction, test=test, actor=principal,
            progress=lambda f, m: bar.progress(min(1.0, f), text=literal(m)))
    except (ValueError, PermissionError) as exc:
        show_error(exc)
    bar.empty()

result = st.session_state.get("tcav_result")
stored = stored_concept_tests(fam["family"], ver["version"])
if result is None or result.stored is None or result.stored.version != ver["version"] \
        or result.stored.family != fam["family"]:
    result = stored[-1] if stored else None
if result is None:
    st.stop()

st.subheader(f"Class {literal(result.target_label)} · {result.n_random} random runs · α={result.alpha} "
             f"({result.correction}, {result.test})")
rows = [{"concept": c.concept, "layer": c.layer, "TCAV score": c.score, "random mean": c.random_mean,
         "magnitude": c.magnitude, "p (raw)": c.p_value, "p (corrected)": c.p_value_corrected,
         "significant": "✅" if c.significant else "—", "CAV accuracy": c.cav_accuracy,
         "CAV flag": "low accuracy" if c.low_cav_accuracy else ""} for c in result.cells]
names, means, lows, highs = [], [], [], []
for c in result.cells:
    m = sum(c.scores) / len(c.scores)
    sd = (sum((s - m) ** 2 for s in c.scores) / max(1, len(c.scores) - 1)) ** 0.5
    names.append(f"{c.concept} @ {c.layer}")
    means.append(m)
    lows.append(m - sd)
    highs.append(m + sd)
null = result.cells[0].random_mean or 0.0
fig = bars_with_errors(names + ["random (null)"], means + [null], lows + [null], highs + [null],
                       title="TCAV score ± 1 s.d. over runs (significant concepts marked ✅ in the table)",
                       yrange=(0, 1))
st.plotly_chart(fig, use_container_width=True)
st.dataframe(rows, hide_index=True, use_container_width=True,
             column_config={k: st.column_config.NumberColumn(format="%.3f")
                            for k in ("TCAV score", "random mean", "magnitude", "CAV accuracy")})

st.subheader("Concept examples")
for concept in result.concepts:
    try:
        examples = concept_examples_preview(concept, dataset=result.stored.dataset or datasets[0],
                                            family=fam["family"], version=ver["version"])
        if examples and isinstance(examples[0], str):
            st.markdown(f"**{literal(concept)}**\n" + "\n".join(f"- {literal(t)}" for t in examples[:5]))
        else:
            st.image(examples, width=64, caption=[literal(concept)] * len(examples), clamp=True)
    except ValueError as exc:
        show_error(exc)

st.subheader("Across versions")
compare = [{"version": v["version"], "class": res.target_label, "concept": c.concept, "layer": c.layer,
            "score": c.score, "p (corrected)": c.p_value_corrected, "significant": c.significant}
           for v in fam["versions"] for res in stored_concept_tests(fam["family"], v["version"]) for c in res.cells]
st.dataframe(compare, hide_index=True, use_container_width=True)
