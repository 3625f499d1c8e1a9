"""CLI commands for the user's own data: ``dataset add|list|show`` and ``concept add``.

Imports are all-or-nothing; a failed validation prints every problem on one line and exits non-zero."""

from __future__ import annotations

import argparse
import json
from typing import Any

from audit.cli_ext.common import CliError, emit, shell_operator, split_names


def _checked(fn, *args: Any, **kwargs: Any) -> dict[str, Any]:  # noqa: ANN001
    """Call an import; its validation errors become one CLI line listing the problems."""
    from audit.services.core.datasets import DatasetValidationError

    try:
        return fn(*args, **kwargs)
    except DatasetValidationError as exc:
        raise CliError(exc.summary) from None


def cmd_dataset(args: argparse.Namespace) -> int:
    from storage.db import migrate

    migrate()
    return {"add": _dataset_add, "list": _dataset_list, "show": _dataset_show}[args.dataset_cmd](args)


def _dataset_add(args: argparse.Namespace) -> int:
    from audit.services.core.datasets import import_image_dataset, import_text_dataset

    if args.labels_are_indices and not args.family:
        raise CliError("--labels-are-indices needs --family: the indices are that family's class indices")
    if bool(args.images) == bool(args.texts):
        raise CliError("give exactly one of --images DIR_OR_ZIP (with --index FILE.csv) or --texts FILE.csv|FILE.jsonl")
    groups = split_names(args.group_columns)
    if args.images:
        if not args.index:
            raise CliError("--images needs --index FILE.csv (one row per image: path, label, groups, region)")
        regions = split_names(args.region_columns) or None
        if regions is not None and len(regions) != 4:
            raise CliError(f"--region-columns needs four column names x0,y0,x1,y1, got {args.region_columns!r}")
        out = _checked(import_image_dataset, args.name, args.images, args.index, path_column=args.path_column,
                       label_column=args.label_column, group_columns=groups, region_columns=regions,
                       mask_column=(args.mask_column or "").strip() or None,
                       description=args.description or "", family=args.family, actor=shell_operator(),
                       labels_are_indices=args.labels_are_indices)
        emit(f"dataset {out['name']}: {out['samples']} images stored at their own sizes (most common "
             f"{out['size'][2]}x{out['size'][1]}, {out['size'][0]} channel(s), {out['resized']} scaled down to the "
             f"import cap), regions {'yes' if out['regions'] else 'no'}, sha256={out['sha256']}")
        return 0
    if args.index or args.region_columns or args.mask_column:
        raise CliError("--index, --region-columns and --mask-column apply to --images only")
    out = _checked(import_text_dataset, args.name, args.texts, text_column=args.text_column,
                   label_column=args.label_column, group_columns=groups, description=args.description or "",
                   family=args.family, actor=shell_operator(), labels_are_indices=args.labels_are_indices)
    emit(f"dataset {out['name']}: {out['samples']} texts stored, sha256={out['sha256']}")
    return 0


def _dataset_list(args: argparse.Namespace) -> int:
    from audit.services.core.datasets import list_datasets

    rows = [{k: d[k] for k in ("name", "kind", "samples", "sha256", "groups", "regions")} for d in list_datasets()]
    if args.json:
        emit(json.dumps(rows, indent=2))
        return 0
    if not rows:
        emit("no datasets stored (run `python -m audit demo` or `python -m audit dataset add`)")
    for d in rows:
        emit(f"{d['name']:<24} {d['kind']:<6} {d['samples']:>6} samples  groups: {', '.join(d['groups']) or '-'}  "
             f"regions: {'yes' if d['regions'] else 'no'}  {d['sha256'][:12]}")
    return 0


def _dataset_show(args: argparse.Namespace) -> int:
    from audit.services.core.datasets import dataset_summary

    info = dataset_summary(args.name)
    if args.json:
        emit(json.dumps(info, indent=2))
        return 0
    emit(f"{info['name']} ({info['kind']}): {info['samples']} samples, sha256={info['sha256']}")
    if info["description"]:
        emit(f"  {info['description']}")
    emit("  labels: " + (", ".join(f"{k} ({n})" for k, n in info["labels"].items()) or "-"))
    if not info["groups"]:
        emit("  groups: -")
    for g, values in info["groups"].items():
        emit(f"  group {g}: " + ", ".join(f"{v} ({n})" for v, n in values.items()))
    masks = f" ({info['region_masks']} as masks)" if info.get("region_masks") else ""
    emit(f"  regions: {'yes' if info['regions'] else 'no'}{masks}")
    return 0


def cmd_concept(args: argparse.Namespace) -> int:
    from audit.services.core.datasets import import_concept_set
    from storage.db import migrate

    migrate()
    out = _checked(import_concept_set, args.name, args.images, description=args.description or "",
                   family=args.family, actor=shell_operator())
    emit(f"concept set {out['name']}: {out['samples']} images at {out['size'][2]}x{out['size'][1]}; "
         f"use it as `tcav --concepts {out['name']}` (sha256={out['sha256']})")
    return 0


def add_commands(sub: Any) -> None:
    sp = sub.add_parser("dataset", help="import, list and show reference sets (images or texts)")
    ds = sp.add_subparsers(dest="dataset_cmd", required=True)
    a = ds.add_parser("add", help="import an image set (folder or zip + CSV index) or a text set (CSV/JSONL)")
    a.add_argument("--name", required=True)
    a.add_argument("--images", help="folder or zip archive of images (any format Pillow reads)")
    a.add_argument("--index", help="CSV with one row per image")
    a.add_argument("--texts", help="CSV or JSON Lines file of texts")
    a.add_argument("--path-column", default="path")
    a.add_argument("--text-column", default="text")
    a.add_argument("--label-column", default="label",
                   help="class names, matched to a model's classes by name; an empty name stores no labels")
    a.add_argument("--labels-are-indices", action="store_true",
                   help="the label column holds --family's class indices (stored as the names they stand for)")
    a.add_argument("--group-columns", help="comma-separated columns stored as sample groups, e.g. site,sex")
    a.add_argument("--region-columns", help="four columns x0,y0,x1,y1: one pixel box per image (its own pixels)")
    a.add_argument("--mask-column", help="column of mask image paths (same folder/zip, the image's size): nonzero "
                                         "pixels are the sample's region; an empty cell declares none")
    a.add_argument("--description")
    a.add_argument("--family", help="check labels against this family's class names")
    lst = ds.add_parser("list", help="stored datasets")
    lst.add_argument("--json", action="store_true")
    sh = ds.add_parser("show", help="samples, labels, groups and regions of one dataset")
    sh.add_argument("name")
    sh.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_dataset)

    sp = sub.add_parser("concept", help="store a concept set for concept tests (tcav --concepts NAME)")
    cs = sp.add_subparsers(dest="concept_cmd", required=True)
    a = cs.add_parser("add", help="every image in a folder or zip becomes one concept set")
    a.add_argument("--name", required=True)
    a.add_argument("--images", required=True, help="folder or zip archive of images")
    a.add_argument("--description")
    a.add_argument("--family", help="store the images at this family's input size")
    sp.set_defaults(fn=cmd_concept)
