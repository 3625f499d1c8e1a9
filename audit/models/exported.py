"""``torch.export`` archives (``.pt2``): checked byte by byte before torch reads them, then unflattened
into a module hierarchy so that every engine hook (CAM layers, TCAV, feature maps) finds named layers.

``torch.export.load`` itself may unpickle (pickled weights or constants, a fallback for the sample
inputs, torchbind objects), turn shape expressions into code (sympy) and compile guard strings. An
uploaded archive is therefore read here first and refused, with one line, unless every part is plain
data: tensors stored as raw bytes, sample inputs that load with ``weights_only=True``, graph nodes
that call registered operators only, and shape expressions made of symbols, numbers and operators.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import torch
from torch import nn

from audit.models.loading import ModelLoadError, _one_line

PT2_HINT = ("save it with torch.export.save(torch.export.export(model.eval(), (example,), "
            "dynamic_shapes=...), 'model.pt2')")
MODEL_NAME = "model"  # the program torch.export.save writes and torch.export.load returns

# Files an archive written by torch.export.save holds, relative to its root folder.
_FIXED_FILES = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id",
                "version", ".data/archive_version"}
_DATA_DIRS = ("data/weights/", "data/constants/", "extra/")
_OP_TARGET = re.compile(r"^torch\.ops\.[A-Za-z_]\w*\.[A-Za-z_]\w*(\.[A-Za-z_]\w*)?$")
_IDENT = re.compile(r"[A-Za-z_]\w*")
_SYMBOL = re.compile(r"^[a-z]{1,4}\d+$")  # s0, s77, u3, zuf0: shape symbols
_SYMPY_NAMES = frozenset({
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv",
    "LShift", "RShift", "Max", "Min", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv", "TruncToFloat",
    "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity", "IsNonOverlappingAndDenseIndicator",
    "Abs", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "True", "False", "Pow", "Mul", "Add",
    "Integer", "Rational", "oo", "zoo", "nan", "and", "or", "not", "L", "size", "stride", "storage_offset",
})
_SYMBOL_CALL = re.compile(r"Symbol\('([a-z]{1,4}\d+)'(?:,\s*[a-z_]+=(?:True|False))*\)")
_UNSAFE_TEXT = re.compile(r"__|['\"`;{}\\@$]|\blambda\b|\.(?=[A-Za-z_])")
_SAFE_INPUT_KINDS = {"user_input", "parameter", "buffer", "tensor_constant", "constant_input"}


def _refuse(path: Path, why: str) -> ModelLoadError:
    return ModelLoadError(f"{path.name} was refused without loading it: {why}")


def _sym_op_names() -> set[str]:
    """The non-operator call targets torch.export writes for shape arithmetic (``_operator.mul``...)."""
    from torch._export.serde.serialize import _SYM_OPS

    names = set()
    for op in _SYM_OPS:
        module = getattr(op, "__module__", None) or ""
        name = getattr(op, "__name__", None)
        if name and module in ("_operator", "operator", "math", "torch"):
            names.add(f"{'_operator' if module == 'operator' else module}.{name}")
    names.add("_operator.getitem")
    return names


def _check_expression(path: Path, text: str, where: str) -> None:
    """A shape expression or guard: symbols, numbers, operators and the known sympy functions only."""
    stripped = re.sub(r"L\['\w+'\]", "L", str(text))  # guards name inputs as L['x']
    stripped = _SYMBOL_CALL.sub(r"\1", stripped)  # symbols are written Symbol('s0', integer=True)
    stripped = re.sub(r"\.(size|stride|storage_offset)\(\)", "", stripped)
    if _UNSAFE_TEXT.search(stripped):
        raise _refuse(path, f"{where} {str(text)[:60]!r} is not a plain shape expression")
    for ident in _IDENT.findall(re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "0", stripped)):
        if ident not in _SYMPY_NAMES and not _SYMBOL.match(ident):
            raise _refuse(path, f"{where} {str(text)[:60]!r} names {ident!r}, which is not a shape symbol")


def _walk(obj: Any) -> Iterator[dict[str, Any]]:
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v)


def _check_program(path: Path, program: dict[str, Any]) -> None:
    """Every node calls a registered operator; no custom objects; every expression is plain."""
    allowed_sym = _sym_op_names()
    bad_targets: list[str] = []
    for d in _walk(program):
        if "target" in d and "inputs" in d and "outputs" in d:  # a graph node
            target = str(d["target"])
            if not (_OP_TARGET.match(target) or target in allowed_sym):
                bad_targets.append(target)
        for key in ("expr_str",):
            if key in d:
                _check_expression(path, d[key], "the shape expression")
        if d.get("custom_obj_values"):
            raise _refuse(path, "it holds custom (torchbind) objects, which load by unpickling")
    if bad_targets:
        raise _refuse(path, "its graph calls something other than registered operators: "
                      + ", ".join(sorted(set(bad_targets))[:5]))
    specs = program.get("graph_module", {}).get("signature", {}).get("input_specs", [])
    for spec in specs if isinstance(specs, list) else []:
        kind = next(iter(spec), None) if isinstance(spec, dict) else None  # a union: {kind: details}
        if kind not in _SAFE_INPUT_KINDS:
            raise _refuse(path, f"its inputs include a {kind} (only tensors and constants are accepted)")
    for guard in program.get("guards_code") or []:
        _check_expression(path, guard, "the guard")


def _check_payload_config(path: Path, raw: bytes, what: str) -> None:
    try:
        config = json.loads(raw).get("config", {})
    except (json.JSONDecodeError, AttributeError):
        raise _refuse(path, f"its {what} index is not valid JSON") from None
    for fqn, meta in config.items():
        if not isinstance(meta, dict) or meta.get("use_pickle") or meta.get("tensor_meta") is None:
            raise _refuse(path, f"{what} {fqn!r} is stored as a pickle, which would run code when loaded")
        if what == "constant" and not str(meta.get("path_name", "")).startswith("tensor_"):
            raise _refuse(path, f"constant {fqn!r} is an object (torchbind or opaque), which loads by unpickling")


def check_exported_archive(path: str | Path) -> None:
    """Refuse (ModelLoadError, one line) an archive that is not plain data written by torch.export.save."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"exported program not found: {path}")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path.name} is empty")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise ModelLoadError(f"{path.name} is not a torch.export archive (not a zip file); {PT2_HINT}") from None
    with zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        roots = {n.split("/", 1)[0] for n in names}
        if len(roots) != 1 or not all("/" in n for n in names):
            raise ModelLoadError(f"{path.name} is not a torch.export archive (no single root folder); {PT2_HINT}")
        root = roots.pop()
        rel = {n[len(root) + 1:]: n for n in names}
        try:
            fmt = zf.read(rel["archive_format"]).decode().strip() if "archive_format" in rel else ""
        except (zipfile.BadZipFile, OSError, UnicodeDecodeError, KeyError) as exc:
            raise ModelLoadError(f"{path.name} is a corrupt archive ({_one_line(exc)})") from None
        if fmt != "pt2":
            kind = "a pickled model or state dict (torch.save)" if "data.pkl" in rel else "another kind of zip"
            raise ModelLoadError(f"{path.name} is not a torch.export archive: it looks like {kind}; {PT2_HINT}")
        _check_members(path, zf, rel)


def _check_members(path: Path, zf: zipfile.ZipFile, rel: dict[str, str]) -> None:
    model_json = f"models/{MODEL_NAME}.json"
    programs = [r for r in rel if r.startswith("models/")]
    if programs != [model_json]:
        raise _refuse(path, f"expected exactly one program {model_json}, found {programs or 'none'}")
    sample = f"data/sample_inputs/{MODEL_NAME}.pt"
    for r in rel:
        if r in _FIXED_FILES or r in (model_json, sample):
            continue
        if not r.startswith(_DATA_DIRS) or PurePosixPath(r).suffix in (".pt", ".pkl", ".so", ".pyd", ".dll", ".py"):
            raise _refuse(path, f"it holds {r}, which torch.export.save does not write as plain data")
    try:
        program = json.loads(zf.read(rel[model_json]))
        _check_payload_config(path, zf.read(rel[f"data/weights/{MODEL_NAME}_weights_config.json"]), "weight")
        constants = rel.get(f"data/constants/{MODEL_NAME}_constants_config.json")
        if constants is not None:
            _check_payload_config(path, zf.read(constants), "constant")
        sample_bytes = zf.read(rel[sample]) if sample in rel else b""
    except KeyError as exc:
        raise _refuse(path, f"{exc.args[0]} is missing") from None
    except json.JSONDecodeError:
        raise _refuse(path, "its program is not valid JSON") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(f"{path.name} is a corrupt archive ({_one_line(exc)})") from None
    if not isinstance(program, dict):
        raise _refuse(path, "its program is not a JSON object")
    _check_program(path, program)
    if sample_bytes:
        # torch falls back to a full unpickle when this fails; here a failure is a refusal.
        try:
            torch.load(io.BytesIO(sample_bytes), weights_only=True)
        except pickle.UnpicklingError:
            raise _refuse(path, "its sample inputs need code to unpickle") from None
        except Exception as exc:  # noqa: BLE001 - untrusted bytes: any other failure is a damaged file
            raise _refuse(path, f"its sample inputs do not load ({_one_line(exc)})") from None


def load_exported(path: str | Path) -> nn.Module:
    """The archive's program as a module hierarchy (``torch.export.unflatten``), after the checks above."""
    path = Path(path)
    check_exported_archive(path)
    try:
        # From memory: torch reads a file path only when it ends in .pt2 (stored artifacts have no suffix).
        program = torch.export.load(io.BytesIO(path.read_bytes()))
        module = torch.export.unflatten(program)
    except Exception as exc:  # noqa: BLE001 - checked data that still fails: another torch's format, a bad graph
        raise ModelLoadError(f"{path.name} could not be loaded as a torch.export program ({_one_line(exc)})") from None
    module.exported_root_type = _root_type(program)  # type: ignore[attr-defined]
    return module


def _root_type(program: Any) -> str:
    """The exported module's class name as torch.export recorded it (for the registry's architecture)."""
    for node in program.graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        for fqn, type_name in stack.values():
            if fqn == "":
                return str(type_name).rsplit(".", 1)[-1]
    return "ExportedProgram"
