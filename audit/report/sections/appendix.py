"""Section "Appendix": every result the report rests on with the hash that pins it, the library
versions of the generating process and the report's parameters."""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from audit.env import library_versions
from audit.report.content import ManifestEntry, Section, Table
from audit.report.naming import references
from audit.report.sections.base import new_section

RENDERING_LIBRARIES = ("reportlab", "matplotlib")


def report_libraries() -> dict[str, str]:
    """Versions of the libraries that computed and rendered the report (those of this process)."""
    from importlib import metadata

    libs = dict(library_versions())
    for name in RENDERING_LIBRARIES:
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return libs


def appendix_section(manifest: Sequence[ManifestEntry], libraries: Mapping[str, str],
                     parameters: Mapping[str, Any], *, cited: Sequence[str] = ()) -> Section:
    """``cited``: identifiers of the methods and analyses the report used; each paper is listed once."""
    sec = new_section("appendix")
    refs = references(cited)
    if refs:
        sec.add(Table(["Method or analysis", "Reference"], [[what, paper] for what, paper in refs],
                      widths=[0.28, 0.72], caption="References: the publication behind each method and analysis."))
    sec.text("Every stored result this report used, with the hash that pins it: artifact SHA-256 for models, "
             "explanation maps and stored arrays; content hash for reference sets; parameter hash for analyses "
             "without an artifact; SHA-256 of the values for results computed at report time.", "note")
    sec.add(Table(["Kind", "Id", "SHA-256", "What"],
                  [[m.kind, m.id if m.id is not None else "-", m.sha256, m.description] for m in manifest],
                  widths=[0.16, 0.06, 0.56, 0.22], mono_columns=(2,)))
    sec.add(Table(["Library", "Version"], [[k, v] for k, v in sorted(libraries.items())], widths=[0.5, 0.5],
                  caption="Library versions of the process that generated this report."))
    sec.add(Table(["Parameter", "Value"],
                  [[k, json.dumps(v, sort_keys=True, default=str)] for k, v in parameters.items()],
                  widths=[0.3, 0.7], caption="Report parameters."))
    return sec
