"""Provenance helpers: library versions and the device, recorded with every stored result."""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata

TRACKED = ("torch", "torchvision", "transformers", "numpy", "scikit-learn", "scikit-image", "shap",
           "fairlearn", "sqlalchemy", "streamlit")


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in TRACKED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    from audit import __version__

    out["audit"] = __version__
    return out
