"""Who acts and what their role allows: the principal every service takes, and the one permission check.

admin: manage users and the registry, read the audit trail; auditor: run audits, generate and sign reports,
verify the audit log; viewer: read models and results. Roles are enforced in the services, not only in the UI.
"""

from __future__ import annotations

from dataclasses import dataclass

# read_trail: read the audit trail itself (it holds failed sign-in usernames); verify_log: check the chain and
# export its signed head.
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "auditor": frozenset({"read", "run", "report", "sign", "verify_log"}),
    "admin": frozenset({"read", "run", "report", "sign", "register", "manage_users", "verify_log", "read_trail"}),
}


class PermissionDenied(PermissionError):
    """The acting user's role does not allow this action."""


@dataclass(frozen=True)
class Principal:
    username: str
    role: str

    def can(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.role, frozenset())


SYSTEM = Principal("system", "admin")


def require(principal: Principal, permission: str) -> None:
    if not principal.can(permission):
        raise PermissionDenied(f"user {principal.username!r} ({principal.role}) may not {permission.replace('_', ' ')}")
