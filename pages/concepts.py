"""Concept tests (TCAV): does the model use a human concept for a class? Scores against random runs,
p-values (raw and corrected), CAV accuracies, examples, and the same concept across versions."""

from __future__ import annotations

import streamlit as st

from audit.services.analyses import results_for
from audit.services.concepts import (GENERATED_CONCEPTS, concept_examples_preview, default_layers, layer_choices,
                                     run_concept_test)
from audit.services.datasets import list_datasets
from audit.viz import bars_with_errors
from pages.ui import current_principal, pick_version, show_error

principal = current_principal()
st.title("Concept tests (TCAV)")
st.caption("A concept is significant for a class when its TCAV scores differ from random-direction scores "
           "after correcting for every concept × layer tested.")

fam, ver = pick_version("image-classification")
labels = ver["labels"]
datasets = [d["name"] for d in list_datasets() if d["kind"] == "image"]

with st.form("tcav"):
    c1, c2 = st.columns(2)
    concepts = c1.multiselect("Concepts", list(GENERATED_CONCEPTS) + [d for d in datasets if d != "digits-reference"],
                              default=["watermark", "random-reference"])
    target_label = c2.selectbox("Class", labels, index=min(7, len(labels) - 1))
    layers = st.multiselect("Layers", layer_choices(fam["family"], ver["version"]),
                            default=default_layers(fam["family"], ver["version"]))
    c1, c2, c3, c4, c5 = st.columns(5)
    dataset = c1.selectbox("Reference data (inputs and random pool)", datasets)
    test = c5.selectbox("Test", ["ttest", "pseudo_concept"],
                        help="ttest: concept scores vs random-vs-random scores (standard TCAV); pseudo_concept: "
                             "the concept's mean score against random sets treated as concepts (fewer false positives)")
    n_random = c2.number_input("Random runs R", 2, 50, 10)
    alpha = c3.number_input("alpha", 0.001, 0.2, 0.05, format="%.3f")
    correction = c4.selectbox("Correction", ["holm", "bonferroni"])
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
            progress=lambda f, m: bar.progress(min(1.0, f), text=m))
    except (ValueError, PermissionError) as exc:
        show_error(exc)
    bar.empty()

result = st.session_state.get("tcav_result")
stored = results_for(fam["family"], ver["version"], "tcav")
if result is None and stored:
    result = stored[-1]
if result is None:
    st.stop()

summary = result["summary"]
st.subheader(f"Class {summary['target_label']} · {summary['n_random']} random runs · α={summary['alpha']} "
             f"({summary['correction']}, {summary.get('test', 'ttest')})")
rows = []
for concept, data in summary["concepts"].items():
    for layer, r in data["layers"].items():
        rows.append({"concept": concept, "layer": layer, "TCAV score": round(r["score"], 3),
                     "random mean": round(r["random_mean"], 3), "magnitude": round(r["magnitude"], 3),
                     "p (raw)": r["p_value"], "p (corrected)": r["p_value_corrected"],
                     "significant": "✅" if r["significant"] else "—",
                     "CAV accuracy": round(r["cav_accuracy"], 3),
                     "CAV flag": "low accuracy" if r["low_cav_accuracy"] else ""})
names = [f"{r['concept']} @ {r['layer']}" for r in rows]
means = []
lows, highs = [], []
for concept, data in summary["concepts"].items():
    for layer, r in data["layers"].items():
        scores = r["scores"]
        m = sum(scores) / len(scores)
        sd = (sum((s - m) ** 2 for s in scores) / max(1, len(scores) - 1)) ** 0.5
        means.append(m)
        lows.append(m - sd)
        highs.append(m + sd)
fig = bars_with_errors(names + ["random (null)"], means + [rows[0]["random mean"]],
                       lows + [rows[0]["random mean"]], highs + [rows[0]["random mean"]],
                       title="TCAV score ± 1 s.d. over runs (significant concepts marked ✅ in the table)",
                       yrange=(0, 1))
st.plotly_chart(fig, use_container_width=True)
st.dataframe(rows, hide_index=True, use_container_width=True)

st.subheader("Concept examples")
for concept in summary["concepts"]:
    try:
        imgs = concept_examples_preview(concept, dataset=result["parameters"].get("dataset", "digits-reference"))
        st.image(imgs, width=64, caption=[concept] * len(imgs), clamp=True)
    except ValueError as exc:
        show_error(exc)

st.subheader("Across versions")
compare = []
for v in fam["versions"]:
    for res in results_for(fam["family"], v["version"], "tcav"):
        for concept, data in res["summary"]["concepts"].items():
            for layer, r in data["layers"].items():
                compare.append({"version": v["version"], "class": res["summary"]["target_label"], "concept": concept,
                                "layer": layer, "score": round(r["score"], 3), "p (corrected)": r["p_value_corrected"],
                                "significant": r["significant"]})
st.dataframe(compare, hide_index=True, use_container_width=True)
