"""Architectures named by import path (``package.module:Callable``) from the app's own environment.

Importing a module runs its code, so the path must name code that is already installed where the app
runs (nothing is uploaded with it). The registry records where the architecture came from: the
import path, the distribution that ships it and its version, and the SHA-256 of the source file
that defines the callable; loading a version whose source has changed since is refused.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import json
import re
from pathlib import Path
from typing import Any, Callable, Optional

from torch import nn

from audit.models.loading import ModelLoadError, _one_line

IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
MAX_IMPORT_PATH = 120  # the registry's architecture column


def is_import_path(text: Optional[str]) -> bool:
    """``package.module:Callable`` (a torchvision or zoo name has no colon)."""
    return bool(text) and ":" in str(text)


def resolve_callable(import_path: str) -> Callable[..., Any]:
    """Import ``package.module`` and return its attribute ``Callable`` (dotted attributes allowed)."""
    if not IMPORT_PATH.match(import_path or ""):
        raise ModelLoadError(f"architecture {import_path!r} must be an import path 'package.module:Callable'")
    if len(import_path) > MAX_IMPORT_PATH:
        raise ModelLoadError(f"architecture import path is longer than {MAX_IMPORT_PATH} characters")
    module_name, attr_path = import_path.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        raise ModelLoadError(f"module {module_name!r} cannot be imported: {missing!r} is not installed in the app's "
                             "environment") from None
    except Exception as exc:  # noqa: BLE001 - the module's own code failed while importing
        raise ModelLoadError(f"module {module_name!r} failed to import ({type(exc).__name__}: {_one_line(exc)})") from None
    obj: Any = module
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise ModelLoadError(f"module {module_name!r} has no attribute {attr_path!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelLoadError(f"{import_path} is a {type(obj).__name__}, not a callable that builds a model")
    return obj


def build_from_import_path(import_path: str, kwargs: dict[str, Any]) -> nn.Module:
    """Call the architecture with ``kwargs``; the result must be an ``nn.Module``."""
    if not isinstance(kwargs, dict):
        raise ModelLoadError(f"architecture arguments must be a JSON object, got {type(kwargs).__name__}")
    fn = resolve_callable(import_path)
    try:
        module = fn(**kwargs)
    except Exception as exc:  # noqa: BLE001 - whatever the user's architecture raises, one line
        raise ModelLoadError(f"{import_path}(**{json.dumps(kwargs)}) failed ({type(exc).__name__}: "
                             f"{_one_line(exc)})") from None
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"{import_path} returned a {type(module).__name__}, not a torch.nn.Module")
    return module


def _source_file(fn: Any, module_name: str) -> Optional[Path]:
    try:  # a decorated factory's own file, not its decorator's
        found = inspect.getsourcefile(inspect.unwrap(fn))
    except (TypeError, ValueError):  # a builtin or C extension
        found = None
    if found is None:
        found = getattr(importlib.import_module(module_name), "__file__", None)
    return Path(found) if found else None


def _distribution(module_name: str) -> tuple[Optional[str], Optional[str]]:
    top = module_name.split(".", 1)[0]
    for dist in importlib.metadata.packages_distributions().get(top, []):
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None, None


def import_provenance(import_path: str) -> dict[str, Any]:
    """Where the architecture comes from, as the registry stores it with the version."""
    fn = resolve_callable(import_path)
    module_name = import_path.split(":", 1)[0]
    source = _source_file(fn, module_name)
    dist, version = _distribution(module_name)
    return {
        "import_path": import_path, "distribution": dist, "distribution_version": version,
        "source_file": source.name if source else None,
        "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest() if source and source.is_file() else None,
    }


def check_same_source(import_path: str, recorded: dict[str, Any]) -> None:
    """Refuse to rebuild a version whose architecture's source file changed since it was registered."""
    expected = recorded.get("source_sha256")
    if not expected:
        return
    now = import_provenance(import_path)
    if now["source_sha256"] != expected:
        installed = f"{now['distribution']} {now['distribution_version']}" if now["distribution"] else "the module"
        raise ModelLoadError(
            f"the source of {import_path} changed since this version was registered (sha256 {expected[:12]} then, "
            f"{str(now['source_sha256'])[:12]} now, from {installed}); install the registered release or register "
            "a new version")
