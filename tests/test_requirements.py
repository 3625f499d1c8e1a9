"""Issue 22: requirements.txt admits no release of the web server or the model/image parsers older than the
ones the tests run on (older ones have published security fixes), and what is installed satisfies it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {"streamlit": "1.67", "transformers": "5.25", "pillow": "13.0"}


def _requirements() -> dict[str, Requirement]:
    lines = (ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines())
    return {(r := Requirement(ln)).name.lower(): r for ln in lines if ln}


def test_parsers_and_web_server_have_recent_lower_bounds():
    reqs = _requirements()
    for name, floor in FLOORS.items():
        lower = [Version(s.version) for s in reqs[name].specifier if s.operator in (">=", "==", "~=")]
        assert lower and max(lower) >= Version(floor), f"{name}: {reqs[name]} admits releases older than {floor}"


def test_the_installed_packages_satisfy_requirements():
    wrong = []
    for name, req in _requirements().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue  # optional extras of other machines (checked by their own CI)
        if not req.specifier.contains(installed, prereleases=True):
            wrong.append(f"{name} {installed} does not satisfy {req}")
    assert not wrong, wrong
