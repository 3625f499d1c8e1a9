"""Command line: ``python -m audit <command>``. Every command exits non-zero with a one-line message on bad input.

The commands of the model registry, users and the database are here; every analysis adds its own commands
(``audit/services/analyses/<name>/cli.py``, through its registered ``Analysis``), and the job queue, datasets,
governance and sessions theirs (``audit/cli_ext``)."""

from __future__ import annotations

import argparse
import getpass
import importlib
import json
import logging
import sys
from typing import Optional

from audit.cli_ext.common import CliError, progress_printer, shell_operator
from audit.services.analyses.registry import registered_analyses

log = logging.getLogger("audit.cli")


def _parse_floats(text: Optional[str], what: str) -> Optional[list[float]]:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CliError(f"{what} must be comma-separated numbers, got {text!r}") from None


# ------------------------------------------------------------------ commands

def cmd_migrate(args: argparse.Namespace) -> int:
    from storage.db import database_url, migrate

    migrate()
    print(f"database at the newest schema: {_redact(database_url())}")
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    """What `make run` does before starting the app: migrate, demo if empty, admin if none."""
    from audit.services.governance.auth import ensure_admin
    from audit.services.core.registry import list_models
    from storage.db import migrate

    migrate()
    if not list_models() and not args.no_demo:
        _run_demo(seed=0)
    password = ensure_admin()
    if password:
        print("=" * 64)
        print("Created the administrator account (shown once, only a hash is stored):")
        print(f"  username: admin\n  password: {password}")
        print("=" * 64)
    return 0


def _run_demo(seed: int) -> None:
    from audit.demo.build import build_demo

    summary = build_demo(seed=seed, progress=progress_printer("demo"))
    if summary.skipped:
        print("the registry already holds models; demo not rebuilt")
    else:
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in summary.stage_seconds.items())
        print(f"demo built in {summary.seconds:.0f} s ({stages}): families {', '.join(summary.families)}; "
              f"datasets {', '.join(summary.datasets)}")


def cmd_demo(args: argparse.Namespace) -> int:
    from storage.db import migrate

    migrate()
    _run_demo(seed=args.seed)
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from audit.cli_ext.model_sources import model_source
    from audit.models.loading import hf_image_input_spec, hf_labels, read_labels_file
    from audit.services.core.registry import register_version
    from storage.db import migrate

    source = model_source(args)
    labels = read_labels_file(args.labels) if args.labels else None
    if labels is None and args.hf_dir:
        labels = hf_labels(args.hf_dir)  # id2label of its config.json
    preset = _torchvision_preset(args.torchvision_weights) if args.torchvision_weights else None
    if labels is None and preset is not None:
        labels = preset["labels"]
    if labels is None:
        raise CliError("--labels FILE is required (one class name per line, or a JSON list)")
    spec = None
    if args.task == "image-classification":
        if preset is not None and not args.input_size:
            spec = dict(preset["input_spec"])
        elif args.input_size:
            size = [int(v) for v in _parse_floats(args.input_size, "--input-size") or []]
            if len(size) != 3:
                raise CliError("--input-size must be C,H,W")
            spec = {"channels": size[0], "height": size[1], "width": size[2],
                    "mean": _parse_floats(args.mean, "--mean") or [0.0], "std": _parse_floats(args.std, "--std") or [1.0]}
        elif not (args.hf_dir and hf_image_input_spec(args.hf_dir)) and not args.crop:
            raise CliError("--input-size C,H,W is required for image models (a Hugging Face directory may give it "
                           "in preprocessor_config.json instead)")
        # otherwise the Hugging Face preprocessor config gives the spec
        spec = _with_preprocessing(args, spec)
    migrate()
    row = register_version(family=args.family, version=args.version, task=args.task, source=source, labels=labels,
                           input_spec=spec, target_layer=args.target_layer, parent=args.parent, notes=args.notes or "",
                           actor=shell_operator())
    print(f"registered {row['family']} {row['version']} sha256={row['sha256']}")
    return 0


def _torchvision_preset(name: str) -> dict:
    """Input spec and class names that torchvision declares for one of its weight sets (read from its
    metadata; no weights are downloaded)."""
    from torchvision.models import get_weight

    try:
        weights = get_weight(name)
    except (ValueError, KeyError, AttributeError):
        raise CliError(f"--torchvision-weights {name!r} is not a torchvision weight set "
                       "(e.g. ResNet18_Weights.IMAGENET1K_V1)") from None
    t = weights.transforms()
    crop = list(getattr(t, "crop_size", [224]))
    resize = list(getattr(t, "resize_size", [256]))
    spec = {"channels": 3, "height": int(crop[0]), "width": int(crop[-1]), "mean": [float(v) for v in t.mean],
            "std": [float(v) for v in t.std], "resize_mode": "shorter", "resize": int(resize[0]),
            "interpolation": str(getattr(t, "interpolation").value), "antialias": bool(getattr(t, "antialias", True))}
    return {"input_spec": spec, "labels": list(weights.meta.get("categories") or []) or None}


def _with_preprocessing(args: argparse.Namespace, spec: Optional[dict]) -> Optional[dict]:
    """--resize (shorter side), --crop H,W, --interpolation and --pixel-range on top of the input spec."""
    if not (args.resize or args.crop or args.interpolation or args.pixel_range):
        return spec
    if spec is None:
        spec = {"channels": 3, "mean": _parse_floats(args.mean, "--mean") or [0.0],
                "std": _parse_floats(args.std, "--std") or [1.0]}
    spec = dict(spec)
    if args.crop and not args.resize:
        raise CliError("--crop H,W needs --resize N (the shorter side the image is resized to before the crop)")
    if args.resize:
        if args.resize < 8:
            raise CliError("--resize must be the shorter side in pixels (at least 8)")
        spec.update(resize_mode="shorter", resize=int(args.resize))
    if args.crop:
        crop = [int(v) for v in _parse_floats(args.crop, "--crop") or []]
        if len(crop) != 2:
            raise CliError("--crop must be H,W")
        if args.input_size and [spec.get("height"), spec.get("width")] != crop:
            raise CliError(f"--crop {crop[0]},{crop[1]} disagrees with --input-size {args.input_size}: the crop is "
                           "the model's input size")
        spec.update(height=crop[0], width=crop[1])
    elif args.resize and not spec.get("height"):
        raise CliError("--resize needs --crop H,W or --input-size C,H,W (the size the model takes)")
    if args.interpolation:
        spec["interpolation"] = args.interpolation
    if args.pixel_range:
        rng = _parse_floats(args.pixel_range, "--pixel-range") or []
        if len(rng) != 2:
            raise CliError("--pixel-range must be LOW,HIGH (what pixel values 0 and 255 become), e.g. 0,255")
        spec["pixel_range"] = rng
    return spec


def cmd_models(args: argparse.Namespace) -> int:
    from audit.services.core.registry import list_models
    from storage.db import migrate

    migrate()
    models = list_models()
    if args.json:
        print(json.dumps(models, indent=2, default=str))
        return 0
    if not models:
        print("no models registered (run `python -m audit demo`)")
    for fam in models:
        print(f"{fam['family']} ({fam['task']})")
        for v in fam["versions"]:
            print(f"  {v['version']:<8} {v['status']:<10} {v['sha256'][:12]}  {v['architecture']}  parent={v['parent']}")
    return 0


def cmd_verify_log(args: argparse.Namespace) -> int:
    from audit.services.governance.audit_trail import verify_log

    report = verify_log(anchor_file=args.anchor)
    if report.ok:
        anchored = f"; it holds the exported head {args.anchor} unchanged" if report.anchored else ""
        print(f"audit log intact: {report.checked} entries, hash chain and {report.checkpoints} signed "
              f"checkpoint(s) verified{anchored}")
        return 0
    if args.verbose:
        for problem in report.problems:
            print(problem, file=sys.stderr)
    more = len(report.problems) - 1
    rest = f" (and {more} more problem(s); -v lists them)" if more and not args.verbose else ""
    print(f"audit log TAMPERED: {report.problems[0]}{rest}", file=sys.stderr)
    return 1


def cmd_users(args: argparse.Namespace) -> int:
    from audit.services.governance import auth
    from storage.db import migrate

    migrate()
    op = shell_operator()
    if args.users_cmd == "list":
        for u in auth.list_users(actor=op):
            print(f"{u['username']:<20} {u['role']:<8} {'active' if u['active'] else 'disabled'}")
        return 0
    if args.users_cmd == "add":
        password = args.password or _prompt_password()
        auth.create_user(args.username, password, args.role, actor=op)
        print(f"user {args.username} ({args.role}) created")
    elif args.users_cmd == "disable":
        auth.set_active(args.username, False, actor=op)
        print(f"user {args.username} disabled")
    elif args.users_cmd == "reset-password":
        password = args.password or _prompt_password()
        auth.reset_password(args.username, password, actor=op)
        print(f"password of {args.username} reset")
    return 0


def _prompt_password() -> str:
    if not sys.stdin.isatty():
        raise CliError("no password given: pass --password or run in a terminal")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise CliError("the passwords differ")
    return first


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def cmd_backup(args: argparse.Namespace) -> int:
    from audit.services.governance.backup import backup

    summary = backup(args.dest)
    print(f"backup written to {summary.path}: database {summary.database_bytes} bytes, "
          f"{summary.artifacts} artifacts, {summary.keys} key file(s), {summary.seconds:.1f} s")
    return 0


# ------------------------------------------------------------------ parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m audit", description="Model audit workbench")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="bring the database schema up to date").set_defaults(fn=cmd_migrate)
    sp = sub.add_parser("setup", help="migrate, build the demo if the registry is empty, create an admin")
    sp.add_argument("--no-demo", action="store_true")
    sp.set_defaults(fn=cmd_setup)

    sp = sub.add_parser("demo", help="build the embedded demo registry (offline)")
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(fn=cmd_demo)

    sp = sub.add_parser("register", help="register a new immutable model version")
    sp.add_argument("--family", required=True)
    sp.add_argument("--version", required=True)
    sp.add_argument("--task", required=True, choices=["image-classification", "text-classification"])
    from audit.cli_ext.model_sources import add_source_arguments

    add_source_arguments(sp)
    sp.add_argument("--labels", help="class names: one per line, or a JSON list")
    sp.add_argument("--input-size", help="C,H,W (a Hugging Face image directory's preprocessor config gives it)")
    sp.add_argument("--mean", help="per-channel mean, e.g. 0.485,0.456,0.406")
    sp.add_argument("--std", help="per-channel std, e.g. 0.229,0.224,0.225")
    sp.add_argument("--resize", type=int, help="preprocessing: resize the shorter side to N pixels (aspect kept), "
                                               "then centre-crop to --crop")
    sp.add_argument("--crop", help="preprocessing: centre crop H,W after --resize (the model's input size)")
    sp.add_argument("--interpolation", choices=["bilinear", "bicubic", "nearest"], help="resize filter (bilinear)")
    sp.add_argument("--pixel-range", help="LOW,HIGH: what pixel values 0 and 255 become before --mean/--std "
                                          "(default 0,1)")
    sp.add_argument("--torchvision-weights", help="take the input spec (and class names, without --labels) that "
                                                  "torchvision declares for a weight set, e.g. "
                                                  "ResNet18_Weights.IMAGENET1K_V1 (no download)")
    sp.add_argument("--target-layer")
    sp.add_argument("--parent")
    sp.add_argument("--notes")
    sp.set_defaults(fn=cmd_register)

    sp = sub.add_parser("models", help="list families and versions")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_models)

    sp = sub.add_parser("backup", help="consistent copy of the database and artifacts (safe while the app runs)")
    sp.add_argument("dest", help="an empty or new folder")
    sp.set_defaults(fn=cmd_backup)

    sp = sub.add_parser("verify-log", help="check the audit log's hash chain and signed checkpoints")
    sp.add_argument("--anchor", metavar="FILE", help="a head exported earlier with `log-head`: also check that the "
                                                     "log still holds it unchanged (no cut tail, no rewrite)")
    sp.set_defaults(fn=cmd_verify_log)

    sp = sub.add_parser("users", help="manage users")
    us = sp.add_subparsers(dest="users_cmd", required=True)
    a = us.add_parser("add")
    a.add_argument("username")
    a.add_argument("--role", required=True, choices=["admin", "auditor", "viewer"])
    a.add_argument("--password")
    d = us.add_parser("disable")
    d.add_argument("username")
    r = us.add_parser("reset-password")
    r.add_argument("username")
    r.add_argument("--password")
    us.add_parser("list")
    sp.set_defaults(fn=cmd_users)

    for analysis in registered_analyses():
        if analysis.commands is not None:
            analysis.commands(sub)
    for name in EXTENSIONS:
        importlib.import_module(f"audit.cli_ext.{name}").add_commands(sub)
    return p


# Feature areas besides the analyses that add commands: modules under audit/cli_ext.
EXTENSIONS: tuple[str, ...] = ("datasets", "jobs", "governance", "sessions")


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.fn(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI turns every failure into one line and an exit code
        known = (CliError, ValueError, PermissionError, FileNotFoundError, LookupError, RuntimeError, OSError)
        if not isinstance(exc, known) or args.verbose:
            log.exception("failed")
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
