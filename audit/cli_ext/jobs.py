"""CLI commands: jobs."""

from __future__ import annotations


def add_commands(sub) -> None:  # noqa: ANN001 - argparse subparsers
    pass
