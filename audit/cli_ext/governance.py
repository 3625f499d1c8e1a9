"""CLI commands for governance: ``log-head`` (export the audit log's signed head, to keep off this machine) and
``identities`` (single sign-on identities mapped to local users). ``verify-log --anchor`` lives in audit.cli."""

from __future__ import annotations

import argparse
import json

from audit.cli_ext.common import CliError, emit, shell_operator


def cmd_log_head(args: argparse.Namespace) -> int:
    from audit.services.governance.audit_trail import log_head

    emit(json.dumps(log_head(), sort_keys=True))
    return 0


def cmd_identities(args: argparse.Namespace) -> int:
    from audit.services.governance import identities
    from storage.db import migrate

    migrate()
    op = shell_operator()
    if args.identities_cmd == "list":
        rows = identities.list_identities(actor=op)
        if args.json:
            emit(json.dumps(rows, indent=2))
        elif not rows:
            emit("no single sign-on identity is mapped")
        for r in rows if not args.json else []:
            emit(f"{r['issuer']}  {r['claim']}={r['value']}  -> {r['username']}  (mapped by {r['created_by']})")
        return 0
    if (args.subject is None) == (args.email is None):
        raise CliError("give exactly one of --subject or --email")
    if args.identities_cmd == "map":
        row = identities.map_identity(args.issuer, args.username, subject=args.subject, email=args.email, actor=op)
        emit(f"{row['issuer']} {row['claim']}={row['value']} now signs in as {row['username']}")
    else:
        revoked = identities.unmap_identity(args.issuer, subject=args.subject, email=args.email, actor=op)
        emit(f"identity unmapped; {revoked} session(s) it had opened were revoked")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("log-head", help="print the audit log's signed head as JSON (redirect it to a file kept "
                                         "elsewhere; `verify-log --anchor FILE` checks against it)")
    sp.set_defaults(fn=cmd_log_head)

    sp = sub.add_parser("identities", help="map single sign-on identities to local users (admins)")
    ids = sp.add_subparsers(dest="identities_cmd", required=True)
    ls = ids.add_parser("list", help="mapped identities")
    ls.add_argument("--json", action="store_true")
    for name, helptext in (("map", "let a provider identity sign in as a local user (with that user's role)"),
                           ("unmap", "remove a mapping and revoke the sessions it opened")):
        p = ids.add_parser(name, help=helptext)
        p.add_argument("--issuer", required=True, help="the provider's issuer URL (the ID token's 'iss' claim)")
        p.add_argument("--subject", help="the provider's stable user id (the 'sub' claim; preferred)")
        p.add_argument("--email", help="a verified e-mail address (when the subject is not known yet)")
        if name == "map":
            p.add_argument("--user", dest="username", required=True, help="the local user it signs in as")
    sp.set_defaults(fn=cmd_identities)
