"""Installation settings that administrators change (TorchScript uploads, the audit-log checkpoint
interval): read and written only here, each change written to the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from audit.services.governance.principals import PermissionDenied, Principal
from storage import auditlog
from storage.db import transaction
from storage.orm import utcnow
from storage.repositories import SettingsRepository

TORCHSCRIPT_UPLOADS = "uploads.torchscript_enabled"
IMPORT_PATH_UPLOADS = "uploads.import_path_enabled"
CHECKPOINT_EVERY = auditlog.CHECKPOINT_SETTING


@dataclass(frozen=True)
class SettingSpec:
    key: str
    default: Any
    description: str
    parse: Callable[[Any], Any]


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        return value.strip().lower() in ("true", "1", "yes", "on")
    raise ValueError(f"expected true or false, got {value!r}")


def _interval(value: Any) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a whole number, got {value!r}") from None
    if isinstance(value, bool) or not 1 <= n <= auditlog.MAX_CHECKPOINT_EVERY:
        raise ValueError(f"expected a whole number from 1 to {auditlog.MAX_CHECKPOINT_EVERY}, got {value!r}")
    return n


SETTINGS: dict[str, SettingSpec] = {s.key: s for s in (
    SettingSpec(TORCHSCRIPT_UPLOADS, False, "Accept TorchScript archives uploaded from the browser (TorchScript is "
                                            "code that runs when the model is loaded)", _bool),
    SettingSpec(IMPORT_PATH_UPLOADS, False, "Accept architectures named by import path (package.module:Callable) "
                                            "from the browser (importing a module runs its code)", _bool),
    SettingSpec(CHECKPOINT_EVERY, auditlog.CHECKPOINT_EVERY, "Sign an audit-log checkpoint every N events "
                                                             "(and at each report and sign-off)", _interval),
)}


# Settings are an administrator's business; the admin-only permission of auth.PERMISSIONS is "manage_users".
ADMIN_PERMISSION = "manage_users"


def _require_admin(actor: Principal) -> None:
    if not actor.can(ADMIN_PERMISSION):
        raise PermissionDenied(f"user {actor.username!r} ({actor.role}) may not read or change installation settings")


def _spec(key: str) -> SettingSpec:
    if key not in SETTINGS:
        raise ValueError(f"unknown setting {key!r}; known: {', '.join(sorted(SETTINGS))}")
    return SETTINGS[key]


def setting_value(key: str) -> Any:
    """The effective value for the services' own checks (no principal: nothing is shown to anyone)."""
    spec = _spec(key)
    with transaction() as s:
        row = SettingsRepository(s).get(key)
        return spec.default if row is None else row.value


def list_settings(*, actor: Principal) -> list[dict[str, Any]]:
    _require_admin(actor)
    with transaction() as s:
        repo = SettingsRepository(s)
        out = []
        for spec in SETTINGS.values():
            row = repo.get(spec.key)
            out.append({"key": spec.key, "value": spec.default if row is None else row.value, "default": spec.default,
                        "description": spec.description, "updated_by": row.updated_by if row else None,
                        "updated_at": row.updated_at.isoformat() if row and row.updated_at else None})
        return out


def get_setting(key: str, *, actor: Principal) -> Any:
    _require_admin(actor)
    return setting_value(key)


def set_setting(key: str, value: Any, *, actor: Principal) -> Any:
    """Store a validated value and log who changed it from what to what."""
    _require_admin(actor)
    spec = _spec(key)
    try:
        parsed = spec.parse(value)
    except ValueError as exc:
        raise ValueError(f"setting {key}: {exc}") from None
    with transaction() as s:
        repo = SettingsRepository(s)
        row = repo.get(key)
        old = spec.default if row is None else row.value
        repo.put(key, parsed, updated_by=actor.username, updated_at=utcnow())
        auditlog.append(s, actor=actor.username, action="setting.change", subject=key,
                        details={"from": old, "to": parsed}, checkpoint=True)
    return parsed
