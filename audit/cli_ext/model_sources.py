"""``register``'s model-source options: which file (or directory) holds the model and in what format.

One of ``--weights`` with ``--arch`` (a zoo or torchvision name, or an installed package's
``package.module:Callable`` with ``--arch-kwargs``), ``--torchscript``, ``--hf-dir``, ``--exported``
(a torch.export archive) or ``--onnx`` (checked against onnxruntime on ``--dataset`` or seeded inputs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from audit.cli_ext.common import CliError

ONE_SOURCE = ("give exactly one of --weights (with --arch), --torchscript, --hf-dir, --exported FILE.pt2 "
              "or --onnx FILE.onnx")


def add_source_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--arch", help="torchvision model name, project zoo name, or an installed package's "
                                   "'package.module:Callable' (with --weights)")
    sp.add_argument("--arch-kwargs", help='JSON keyword arguments for the architecture, e.g. {"num_classes": 10}')
    sp.add_argument("--weights", help="safetensors or state-dict file")
    sp.add_argument("--torchscript", help="TorchScript archive")
    sp.add_argument("--hf-dir", help="Hugging Face model directory (safetensors)")
    sp.add_argument("--exported", help="torch.export archive (.pt2, torch.export.save)")
    sp.add_argument("--onnx", help="ONNX model, converted to torch and checked against onnxruntime")
    sp.add_argument("--dataset", help="with --onnx: the reference set whose images the conversion is checked on "
                                      "(default: seeded random inputs)")
    sp.add_argument("--onnx-tolerance", type=float,
                    help="with --onnx: largest logit difference allowed, relative to max(1, max |logit|) "
                         "(default 1e-4)")


def _kwargs(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--arch-kwargs is not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise CliError("--arch-kwargs must be a JSON object of keyword arguments")
    return value


def model_source(args: argparse.Namespace) -> Any:
    """The ModelSource the options name; a CliError (one line) when they do not name exactly one."""
    from audit.services.core.registry import ModelSource

    given = [s for s in (args.weights, args.torchscript, args.hf_dir, args.exported, args.onnx) if s]
    if len(given) != 1:
        raise CliError(ONE_SOURCE)
    if args.weights and not args.arch:
        raise CliError("--weights needs --arch (a torchvision model name, a project zoo name or "
                       "'package.module:Callable')")
    if (args.dataset or args.onnx_tolerance is not None) and not args.onnx:
        raise CliError("--dataset and --onnx-tolerance go with --onnx (the reference set its conversion is checked on)")
    if args.hf_dir:
        return ModelSource("hf", Path(args.hf_dir))
    if args.torchscript:
        return ModelSource("torchscript", Path(args.torchscript))
    if args.exported:
        return ModelSource("exported", Path(args.exported))
    if args.onnx:
        return ModelSource("onnx", Path(args.onnx), check_dataset=args.dataset, tolerance=args.onnx_tolerance)
    fmt = "import_path" if ":" in args.arch else "state_dict"
    return ModelSource(fmt, Path(args.weights), args.arch, _kwargs(args.arch_kwargs))
