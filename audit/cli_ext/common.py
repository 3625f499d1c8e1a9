"""What every CLI command shares: the one-line error, the output, the shell operator's principal, the
progress bar on stderr, reading a signer's password, and queueing a long command as a job (``--background``).

Command modules (``audit.cli``, ``audit/cli_ext``, each analysis's ``cli.py``) import this module; it imports
none of them."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any, Callable

from audit.services.governance.principals import Principal


class CliError(Exception):
    """Raised for a user mistake on the command line; printed as one line."""


def emit(*parts: object, sep: str = " ", end: str = "\n", file: Any = None, flush: bool = False) -> None:
    """The commands' output, written to the terminal's stream (stdout unless ``file``). This module and the
    command modules are the only places that write to a terminal; the engine and services report through
    logging and progress callbacks."""
    stream = sys.stdout if file is None else file
    stream.write(sep.join(str(p) for p in parts) + end)
    if flush:
        stream.flush()


def shell_operator() -> Principal:
    """Whoever has a shell on the server acts as an administrator; the audit log names them."""
    return Principal(f"cli:{getpass.getuser()}", "admin")


def progress_printer(label: str) -> Callable[[float, str], None]:
    last = {"pct": -1}

    def show(frac: float, msg: str) -> None:
        pct = int(frac * 100)
        if pct != last["pct"]:
            last["pct"] = pct
            emit(f"\r[{label}] {pct:3d}% {msg[:70]:<70}", end="\n" if pct >= 100 else "", file=sys.stderr,
                 flush=True)

    return show


def version_command(sub: Any, name: str, *, help: str) -> argparse.ArgumentParser:
    """A subcommand about one registered model version: ``--family`` and ``--version``, both required."""
    sp = sub.add_parser(name, help=help)
    sp.add_argument("--family", required=True)
    sp.add_argument("--version", required=True)
    return sp


def split_names(text: str | None) -> list[str]:
    """A comma-separated option as a list of names (blanks dropped)."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def read_password(username: str) -> str:
    """A registered user's password, to act as them: asked without echo in a terminal, else the first line of
    standard input (for scripts: `printf '%s\\n' "$PW" | python -m audit ...`)."""
    if sys.stdin.isatty():
        password = getpass.getpass(f"password of {username}: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CliError(f"no password given for {username} (type it at the prompt or pipe it on standard input)")
    return password


def submit_background(kind: str, parameters: dict[str, Any]) -> int:
    """Queue ``kind`` with ``parameters`` as the operator and print ``{"job": ID}``."""
    # deferred: every command builds the parser, and the queue loads the database layer
    from audit.services.jobs.queue import submit_job
    from storage.db import migrate

    migrate()
    job = submit_job(kind, parameters, actor=shell_operator())
    emit(json.dumps({"job": job.id}))
    return 0
