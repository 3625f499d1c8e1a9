"""Dispatch ``python -m audit.bench {attribution,text,tcav,fairness,memory,jobs,audit,gpu} [options]`` to its module's ``main``."""

from __future__ import annotations

import importlib
import sys

SUITES = ("attribution", "text", "tcav", "fairness", "memory", "jobs", "audit", "gpu")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUITES:
        print(f"usage: python -m audit.bench {{{','.join(SUITES)}}} [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"audit.bench.{argv[0]}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
