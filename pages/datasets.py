"""Datasets: the stored reference and concept sets, and importing one's own (a zip of images plus a CSV
index, a CSV or JSONL of texts, or a zip of concept images), previewed and validated before anything
is stored."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import streamlit as st

from audit.services.core.datasets import (DatasetError, DatasetValidationError, dataset_summary, import_concept_set,
                                     import_image_dataset, import_text_dataset, list_datasets, load_image_files, sample_index,
                                     preview_image_import)
from audit.services.core.registry import list_models
from audit.viz import outlined
from pages.ui import current_principal, literal, show_error

principal = current_principal()
st.title("Datasets")
st.caption("Reference sets feed explanations, concept tests, the bias audit, drift and reports; concept sets "
           "are the examples a concept test measures. Stored sets are immutable and content-hashed.")


def _with_box(img: np.ndarray, region) -> np.ndarray:  # noqa: ANN001
    """An RGB copy of an image in [0, 1] with its declared region (box or mask) outlined in red."""
    return outlined(img, region)


def _problems(exc: DatasetValidationError) -> None:
    st.error(f"{len(exc.problems)} problem(s); nothing was stored.")
    st.dataframe([{"where and what": p} for p in exc.problems], hide_index=True, use_container_width=True)


@contextmanager
def _importing(what: str) -> Iterator[Path]:
    """A scratch folder for the uploads; a failed validation is shown as its list of problems."""
    with tempfile.TemporaryDirectory() as tmp, st.spinner(f"validating every {what}…"):
        try:
            yield Path(tmp)
        except DatasetValidationError as exc:
            _problems(exc)
        except (DatasetError, OSError) as exc:  # OSError: a full disk, PermissionError among them
            show_error(exc)


def _save(upload, folder: Path) -> Path:  # noqa: ANN001 - a Streamlit UploadedFile
    path = folder / Path(upload.name).name
    path.write_bytes(upload.getvalue())
    return path


stored = list_datasets()
st.subheader("Stored sets")
if stored:
    st.dataframe([{"name": d["name"], "kind": d["kind"], "samples": d["samples"], "groups": ", ".join(d["groups"]),
                   "regions": "yes" if d["regions"] else "no", "sha256": d["sha256"][:16]} for d in stored],
                 hide_index=True, use_container_width=True)
    pick = st.selectbox("Show", [d["name"] for d in stored])
    try:
        info = dataset_summary(pick)
    except DatasetError as exc:
        show_error(exc)
        st.stop()
    c1, c2 = st.columns(2)
    c1.write({"labels": info["labels"]})
    c2.write({"groups": info["groups"], "regions": info["regions"]})
    if info["kind"] == "image":
        index = sample_index(pick)
        n = min(12, len(index.keys))
        shown = load_image_files(pick, keys=index.keys[:n], with_regions=True)
        st.image([_with_box(img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy(), region)
                  for img, region in shown], width=80, clamp=True,
                 caption=[literal(f"{index.keys[i]}: {index.label_texts[i] or '-'} ({shown[i][0].shape[-1]}x"
                                  f"{shown[i][0].shape[-2]})") for i in range(n)])
else:
    st.info("No dataset is stored yet.")

if not principal.can("register"):
    st.caption("Importing datasets needs the administrator role.")
    st.stop()

st.subheader("Import")
families = [f["family"] for f in list_models()]
tab_img, tab_txt, tab_concept = st.tabs(["Reference images", "Texts", "Concept set"])

with tab_img:
    with st.form("import-images"):
        name = st.text_input("Name", key="img-name")
        c1, c2 = st.columns(2)
        archive = c1.file_uploader("Images (zip)", type=["zip"], key="img-zip")
        index = c2.file_uploader("Index (CSV)", type=["csv"], key="img-csv")
        c1, c2, c3, c4 = st.columns(4)
        path_col = c1.text_input("Path column", "path")
        label_col = c2.text_input("Label column (empty: unlabelled)", "label")
        group_cols = c3.text_input("Group columns (comma-separated)", "")
        region_cols = c4.text_input("Region columns x0,y0,x1,y1 (optional)", "")
        mask_col = st.text_input("Mask column (optional): mask image paths in the zip, nonzero pixels are the "
                                 "region", "", key="img-mask")
        family = st.selectbox("Labels and input size of family (optional)", ["(from the CSV)"] + families)
        description = st.text_input("Description", "")
        check, do_import = st.columns(2)
        checked = check.form_submit_button("Check and preview")
        imported = do_import.form_submit_button("Import", type="primary")
    if checked or imported:
        if archive is None or index is None:
            st.error("upload the zip of images and its CSV index")
            st.stop()
        opts = dict(path_column=path_col.strip(), label_column=label_col.strip() or None,
                    group_columns=[c.strip() for c in group_cols.split(",") if c.strip()],
                    region_columns=[c.strip() for c in region_cols.split(",") if c.strip()] or None,
                    mask_column=mask_col.strip() or None,
                    family=None if family == "(from the CSV)" else family)
        with _importing("file and row") as tmp:
            zpath, cpath = _save(archive, tmp), _save(index, tmp)
            if imported:
                res = import_image_dataset(name.strip(), zpath, cpath, description=description, actor=principal,
                                           **opts)
                st.success(f"stored {res['samples']} samples as {literal(repr(name.strip()))}, each at its own "
                           f"size (most common {res['size'][2]}x{res['size'][1]}; {res['resized']} scaled down to "
                           "the import cap); every analysis prepares them as the model declares")
            else:
                pv = preview_image_import(name.strip(), zpath, cpath, actor=principal, **opts)
                st.success(f"{pv['samples']} samples pass validation; each is stored at its own size (most "
                           f"common {pv['size'][2]}x{pv['size'][1]}; {pv['resized']} scaled down); groups: "
                           f"{literal(', '.join(pv['groups'])) or 'none'}; "
                           f"regions: {'yes' if pv['regions'] else 'no'}. Nothing is stored until you import.")
                st.write({"labels": pv["label_counts"], "unlabelled": pv["unlabelled"]})
                st.image([_with_box(p["image"], p["region"]) for p in pv["preview"]], width=80, clamp=True,
                         caption=[literal(f"{p['source']}: {p['label'] or '-'} {p['groups'] or ''}") for p in pv["preview"]])

with tab_txt:
    with st.form("import-texts"):
        name = st.text_input("Name", key="txt-name")
        upload = st.file_uploader("Texts (CSV or JSONL)", type=["csv", "jsonl"], key="txt-file")
        c1, c2, c3 = st.columns(3)
        text_col = c1.text_input("Text column", "text")
        label_col = c2.text_input("Label column (empty: unlabelled)", "label", key="txt-label")
        group_cols = c3.text_input("Group columns (comma-separated)", "", key="txt-groups")
        description = st.text_input("Description", "", key="txt-desc")
        go = st.form_submit_button("Import", type="primary")
    if go:
        if upload is None:
            st.error("upload a CSV or JSONL file")
            st.stop()
        with _importing("row") as tmp:
            res = import_text_dataset(name.strip(), _save(upload, tmp), text_column=text_col.strip(),
                                      label_column=label_col.strip() or None,
                                      group_columns=[c.strip() for c in group_cols.split(",") if c.strip()],
                                      description=description, actor=principal)
            st.success(f"stored {res['samples']} texts as {literal(repr(name.strip()))}")

with tab_concept:
    st.caption("A text model's concept is a set of example sentences: import it on the Texts tab, with the label "
               "column left empty.")
    with st.form("import-concept"):
        name = st.text_input("Name", key="concept-name")
        archive = st.file_uploader("Concept images (zip)", type=["zip"], key="concept-zip")
        family = st.selectbox("Input size of family (optional)", ["(most common size)"] + families, key="cf")
        go = st.form_submit_button("Import", type="primary")
    if go:
        if archive is None:
            st.error("upload a zip of concept images")
            st.stop()
        with _importing("file") as tmp:
            import_concept_set(name.strip(), _save(archive, tmp),
                               family=None if family == "(most common size)" else family, actor=principal)
            st.success(f"stored concept set {literal(repr(name.strip()))}: use it on the Concept tests page or with "
                       f"`python -m audit tcav --concepts` {literal(name.strip())}")
