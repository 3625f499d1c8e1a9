"""Registry: model families and versions (metadata, hash, status, lineage); register by upload."""

from __future__ import annotations

import json

import streamlit as st

from audit.services.core.registry import MAX_MODEL_BYTES, allowed_statuses, list_models, register_upload, set_status
from pages.ui import current_principal, literal, short_hash, show_error

principal = current_principal()
st.title("Model registry")

models = list_models()
if not models:
    st.info("The registry is empty. Build the demo with `python -m audit demo`, or register a model below.")

for fam in models:
    with st.container(border=True):
        st.subheader(literal(fam["family"]))
        st.caption(f"{literal(fam['task'])} · {literal(fam['description'])}")
        rows = [{
            "version": v["version"], "status": v["status"], "sha256": short_hash(v["sha256"], 16),
            "format": v["format"], "architecture": v["architecture"], "parent": v["parent"] or "—",
            "target layer": v["target_layer"] or "—", "classes": len(v["labels"]),
            "created by": v["created_by"], "created at": (v["created_at"] or "")[:19],
        } for v in fam["versions"]]
        st.dataframe(rows, hide_index=True, use_container_width=True)
        lineage = " → ".join(literal(v["version"]) for v in fam["versions"])
        st.markdown(f"**Lineage:** {lineage}")
        for v in fam["versions"]:
            with st.expander(f"Version {literal(v['version'])} details"):
                st.markdown(f"**SHA-256:** `{v['sha256']}`")
                st.markdown(f"**Notes:** {literal(v['notes']) or '—'}")
                st.json({"labels": v["labels"], "input_spec": v["input_spec"], "metrics": v["metrics"]},
                        expanded=False)
                moves = allowed_statuses(v["status"])
                if v["status"] in ("approved", "rejected"):
                    st.caption(f"{v['status'].capitalize()} by a signed report: final. A correction is a new version.")
                elif principal.can("run") and moves:
                    st.caption("Approval or rejection comes only from signing a stored report of this version "
                               "(Reports page), by someone other than its author.")
                    new_status = moves[0]
                    if st.button(f"Move to {new_status}", key=f"set-{fam['family']}-{v['version']}"):
                        try:
                            set_status(fam["family"], v["version"], new_status, actor=principal)
                            st.rerun()
                        except (ValueError, PermissionError) as exc:
                            show_error(exc)

st.divider()
st.subheader("Register a new version")
if not principal.can("register"):
    st.caption("Only administrators register models.")
else:
    with st.form("register"):
        c1, c2 = st.columns(2)
        family = c1.text_input("Family", placeholder="e.g. digits-cnn")
        version = c2.text_input("Version", placeholder="e.g. 3")
        fmt = st.radio("Format", ["state_dict", "torchscript", "hf", "exported", "onnx"], horizontal=True,
                       format_func=lambda f: {"state_dict": "weights (safetensors / state dict) + architecture",
                                              "torchscript": "TorchScript",
                                              "hf": "Hugging Face image classifier (zip of its directory)",
                                              "exported": "torch.export archive (.pt2)",
                                              "onnx": "ONNX (checked against onnxruntime)"}[f])
        c1, c2 = st.columns(2)
        arch = c1.text_input("Architecture (torchvision or zoo name, or package.module:Callable where enabled)",
                             placeholder="resnet18 or small_cnn")
        arch_kwargs = c2.text_input("Architecture arguments (JSON)", value='{"num_classes": 10}')
        labels_text = st.text_area("Class labels, one per line")
        c1, c2, c3 = st.columns(3)
        size = c1.text_input("Input C,H,W", value="3,224,224")
        mean = c2.text_input("Mean", value="0.485,0.456,0.406")
        std = c3.text_input("Std", value="0.229,0.224,0.225")
        from_dir = st.checkbox("Hugging Face: input spec from its preprocessor_config.json "
                               "(labels left empty come from id2label)", value=True)
        notes = st.text_input("Notes")
        upload = st.file_uploader(f"Model file (at most {MAX_MODEL_BYTES // 2**20} MB)")
        submitted = st.form_submit_button("Validate and register")
    if submitted:
        try:
            if upload is None:
                raise ValueError("choose a model file to upload")
            hf_dir = fmt == "hf" and from_dir
            spec = None
            if not hf_dir:
                c, h, w = (int(v) for v in size.split(","))
                spec = {"channels": c, "height": h, "width": w, "mean": [float(v) for v in mean.split(",")],
                        "std": [float(v) for v in std.split(",")]}
            whole_model = fmt in ("hf", "exported", "onnx")  # the file holds the architecture too
            kwargs = {} if whole_model else (json.loads(arch_kwargs) if arch_kwargs.strip() else {})
            labels = [line.strip() for line in labels_text.splitlines() if line.strip()] or None
            with st.spinner("Validating the model before anything is stored…"):
                row = register_upload(
                    filename=upload.name, data=upload.getvalue(), fmt=fmt, actor=principal, family=family,
                    version=version, task="image-classification", labels=labels, input_spec=spec,
                    architecture=None if whole_model else (arch or None), arch_kwargs=kwargs, notes=notes,
                )
            st.success(f"Registered {literal(row['family'])} {literal(row['version'])} (sha256 {row['sha256']})")
        except json.JSONDecodeError as exc:
            st.error(f"Architecture arguments are not valid JSON: {literal(exc.msg)}")
        except (ValueError, PermissionError) as exc:
            show_error(exc)
