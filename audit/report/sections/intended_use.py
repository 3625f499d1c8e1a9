"""Section "Intended use and model description": the registry's record of the version and its lineage."""

from __future__ import annotations

from audit.models.preprocess import InputSpec

from audit.report.content import Section, Table
from audit.report.sections.base import ModelFacts, new_section


def intended_use_section(model: ModelFacts) -> Section:
    sec = new_section("intended_use")
    info = model.info
    sec.text(f"Intended use as registered for the family: {model.description or '(no description recorded)'}")
    sec.text(f"Version notes: {info.get('notes') or '(none)'}")
    sec.text("The registry keeps no separate intended-use statement, user population or deployment context; "
             "the reviewer should confirm them before sign-off.", "note")
    spec = info.get("input_spec") or {}
    model_input = (f"image {spec.get('channels')}x{spec.get('height')}x{spec.get('width')}"
                   if spec else "text (the model's own tokenizer)")
    labels = model.labels
    rows = [["Family", model.family], ["Version", model.version], ["Task", model.task],
            ["Architecture", info.get("architecture")], ["Format", info.get("format")],
            ["Classes", f"{len(labels)}: {', '.join(labels[:20])}{' ...' if len(labels) > 20 else ''}"],
            ["Input", model_input],
            *([["Preprocessing", InputSpec.from_dict(spec).describe()]] if spec else []),
            ["Explained layer (CAM methods)", info.get("target_layer") or "-"],
            ["Parent version", model.parent or "- (first version)"], ["Status", info.get("status")],
            ["Registered by", info.get("created_by")], ["Registered at (UTC)", (info.get("created_at") or "")[:19]],
            ["Model SHA-256", info.get("sha256")]]
    rows += provenance_rows(info.get("provenance") or {})
    sec.add(Table(["Property", "Value"], rows, widths=[0.3, 0.7], mono_columns=()))
    if model.lineage:
        sec.add(Table(["Version", "Status", "SHA-256", "Parent", "Registered"],
                      [[v["version"], v["status"], v["sha256"], v.get("parent") or "-", (v.get("created_at") or "")[:10]]
                       for v in model.lineage], caption="Lineage of the family (versions are immutable).",
                      widths=[0.1, 0.12, 0.5, 0.1, 0.18], mono_columns=(2,)))
    sec.cite("model", info.get("id"), str(info.get("sha256")), f"{model.family} {model.version} artifact")
    return sec


def provenance_rows(provenance: dict) -> list[list[str]]:
    """What the registry recorded of where the model came from (import path, ONNX check, torch.export)."""
    rows = []
    if provenance.get("import_path"):
        dist = provenance.get("distribution")
        origin = f"{dist} {provenance.get('distribution_version')}" if dist else "no installed distribution"
        rows.append(["Architecture source", f"{provenance['import_path']} from {origin}; "
                                            f"{provenance.get('source_file')} sha256 {provenance.get('source_sha256')}"])
    check = provenance.get("onnx_check")
    if check:
        rows.append(["ONNX conversion check", (
            f"largest logit difference {check['max_abs_diff']:.3g} against {check['runtime']} on {check['inputs']} "
            f"(allowed {check['tolerance']:g} x logit scale {check['logit_scale']:.3g}); {check['converter']}, "
            f"opset {check['opset']}" + (f" converted at {check['converted_opset']}"
                                          if check.get("converted_opset") != check["opset"] else ""))])
    if provenance.get("torch_version"):
        rows.append(["torch.export archive", f"loaded as a module hierarchy; registered under torch "
                                             f"{provenance['torch_version']}"])
    return rows
