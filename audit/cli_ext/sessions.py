"""CLI commands for sign-in sessions: ``sessions list`` and ``sessions revoke`` (admins)."""

from __future__ import annotations

import argparse
import json

from audit.cli_ext.common import CliError, emit, shell_operator


def cmd_sessions(args: argparse.Namespace) -> int:
    from audit.services.governance import sessions
    from storage.db import migrate

    migrate()
    op = shell_operator()
    if args.sessions_cmd == "list":
        rows = sessions.list_sessions(actor=op, username=args.user)
        if args.json:
            emit(json.dumps(rows, indent=2, default=str))
            return 0
        if not rows:
            emit("no live session")
        for r in rows:
            emit(f"{r['id']:>5}  {r['username']:<20} {r['via']:<9} since {r['created_at']:%Y-%m-%d %H:%M} UTC, "
                 f"expires {r['expires_at']:%Y-%m-%d %H:%M} UTC")
        return 0
    if (args.id is None) == (args.user is None):
        raise CliError("give exactly one of --id or --user")
    if args.id is not None:
        ended = sessions.revoke_session_by_id(args.id, actor=op)
        emit(f"session {args.id} revoked" if ended else f"session {args.id} had already ended")
    else:
        emit(f"{sessions.revoke_all_sessions(args.user, actor=op)} session(s) of {args.user} revoked")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("sessions", help="list or revoke sign-in sessions (admins)")
    ss = sp.add_subparsers(dest="sessions_cmd", required=True)
    ls = ss.add_parser("list", help="live sessions, newest first")
    ls.add_argument("--user", help="only this user's")
    ls.add_argument("--json", action="store_true")
    rv = ss.add_parser("revoke", help="end a session (by id) or every session of a user")
    rv.add_argument("--id", type=int)
    rv.add_argument("--user")
    sp.set_defaults(fn=cmd_sessions)
