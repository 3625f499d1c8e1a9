"""Role x action matrix: viewer, auditor and admin against every service action that checks a permission,
each cell's expected answer written once in ACTIONS. A cell is "refused" when the service raises
PermissionDenied, "allowed" when it gets past the check (it may then fail on the dummy arguments: an unknown
model, report or user). A second test reads audit/services and fails when a function that checks a
permission is missing from the table, so a new action cannot go untested."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from audit.services.analyses.concepts import service as concepts
from audit.services.analyses.counterfactuals import service as counterfactuals
from audit.services.analyses.drift import service as drift
from audit.services.analyses.drift import views as drift_views
from audit.services.analyses.explanations import service as explain
from audit.services.analyses.explanations import views as explain_views
from audit.services.analyses.fairness import service as fairness
from audit.services.analyses.full_audit import service as full_audit
from audit.services.analyses.reports import records as report_records
from audit.services.analyses.reports import service as reports
from audit.services.analyses.text import service as text
from audit.services.core import datasets, registry
from audit.services.governance import audit_trail, auth, identities, sessions, settings, throttle
from audit.services.governance.principals import PermissionDenied, Principal
from audit.services.jobs import queue as jobs

ROOT = Path(__file__).resolve().parents[2]
# The table names each service module by a short name (module.function); a module that checks a permission
# and has no name here shows up under its dotted path below audit.services.
MODULES = {
    "audit_trail": audit_trail, "auth": auth, "concepts": concepts, "counterfactuals": counterfactuals,
    "datasets": datasets, "drift": drift, "drift_views": drift_views, "explain": explain,
    "explain_views": explain_views, "fairness": fairness, "full_audit": full_audit, "identities": identities,
    "jobs": jobs, "registry": registry, "report_records": report_records, "reports": reports,
    "sessions": sessions, "settings": settings, "text": text, "throttle": throttle}
SHORT_NAMES = {module.__name__: name for name, module in MODULES.items()}


def _short(module: str) -> str:
    return SHORT_NAMES.get(module, module.removeprefix("audit.services."))
ROLES = ("viewer", "auditor", "admin")
EVERYONE = frozenset(ROLES)
AUDITORS = frozenset({"auditor", "admin"})
ADMINS = frozenset({"admin"})
NOPE = "no-such-family"
TS = settings.TORCHSCRIPT_UPLOADS

Call = Callable[[Principal, dict[str, Any]], Any]

# (service function, who may, a call with that actor). ctx holds a loaded tiny model for explain_methods.
ACTIONS: list[tuple[str, frozenset[str], Call]] = [
    ("auth.create_user", ADMINS, lambda a, c: auth.create_user(f"new-{a.role}", "long-enough-pw", "viewer", actor=a)),
    ("auth.list_users", ADMINS, lambda a, c: auth.list_users(actor=a)),
    ("auth.set_active", ADMINS, lambda a, c: auth.set_active("nobody", False, actor=a)),
    ("auth.reset_password", ADMINS, lambda a, c: auth.reset_password("nobody", "long-enough-pw", actor=a)),
    ("sessions.list_sessions", ADMINS, lambda a, c: sessions.list_sessions(actor=a)),
    ("sessions.revoke_session_by_id", ADMINS, lambda a, c: sessions.revoke_session_by_id(10_000, actor=a)),
    ("sessions.revoke_all_sessions", ADMINS, lambda a, c: sessions.revoke_all_sessions("nobody", actor=a)),
    ("identities.map_identity", ADMINS,
     lambda a, c: identities.map_identity("https://id.example.org", "nobody", subject="s", actor=a)),
    ("identities.unmap_identity", ADMINS,
     lambda a, c: identities.unmap_identity("https://id.example.org", subject="s", actor=a)),
    ("identities.list_identities", ADMINS, lambda a, c: identities.list_identities(actor=a)),
    ("settings.list_settings", ADMINS, lambda a, c: settings.list_settings(actor=a)),
    ("settings.get_setting", ADMINS, lambda a, c: settings.get_setting(TS, actor=a)),
    ("settings.set_setting", ADMINS, lambda a, c: settings.set_setting(TS, False, actor=a)),
    ("registry.register_version", ADMINS, lambda a, c: registry.register_version(
        family="", version="1", task="image-classification", source=None, labels=["a"], actor=a)),
    ("registry.register_upload", ADMINS,
     lambda a, c: registry.register_upload(filename="m.pt", data=b"", fmt="torchscript", actor=a)),
    ("registry.set_status", AUDITORS, lambda a, c: registry.set_status(NOPE, "1", "in-review", actor=a)),
    ("datasets.add_image_dataset", ADMINS, lambda a, c: datasets.add_image_dataset(
        "d", torch.zeros(0), [], [], label_names=["a"], actor=a)),
    ("datasets.add_text_dataset", ADMINS,
     lambda a, c: datasets.add_text_dataset("d", [], [], [], label_names=["a"], actor=a)),
    ("datasets.import_image_dataset", ADMINS,
     lambda a, c: datasets.import_image_dataset("d", c["missing"], c["missing"], actor=a)),
    ("datasets.import_concept_set", ADMINS, lambda a, c: datasets.import_concept_set("d", c["missing"], actor=a)),
    ("datasets.import_text_dataset", ADMINS, lambda a, c: datasets.import_text_dataset("d", c["missing"], actor=a)),
    ("explain.explain_image", AUDITORS, lambda a, c: explain.explain_image(NOPE, "1", methods=[], actor=a)),
    ("explain.explain_reference_set", AUDITORS,
     lambda a, c: explain.explain_reference_set(NOPE, "1", "ref", methods=["saliency"], batch_size=0, actor=a)),
    # Computing a map needs "run"; a map that is already stored is read by anyone (so a fresh sample per role).
    ("explain.explain_methods", AUDITORS, lambda a, c: explain.explain_methods(
        c["handle"], "tiny", "1", torch.rand(1, 1, 32, 32), [f"{a.role:0<64}"[:64]], [0], ["saliency"], {},
        sample_ids=[None], actor=a, progress=None)),
    ("explain.reverify", AUDITORS, lambda a, c: explain.reverify(10_000, actor=a)),
    ("explain_views.sanity", AUDITORS, lambda a, c: explain_views.sanity(None, methods=["saliency"], actor=a)),
    ("text.explain_texts", AUDITORS, lambda a, c: text.explain_texts(NOPE, "1", ["t"], methods=["grad_x_input"], actor=a)),
    ("concepts.run_concept_test", AUDITORS,
     lambda a, c: concepts.run_concept_test(NOPE, "1", concepts=[], target=0, actor=a)),
    ("fairness.run_bias_audit", AUDITORS,
     lambda a, c: fairness.run_bias_audit(NOPE, "1", dataset="ref", attributes=["site"], actor=a)),
    ("fairness.run_text_probe", AUDITORS, lambda a, c: fairness.run_text_probe(NOPE, "1", dataset="notes", actor=a)),
    ("counterfactuals.counterfactual_for_sample", AUDITORS, lambda a, c: counterfactuals.counterfactual_for_sample(
        NOPE, "1", dataset="ref", sample_key="ref-0", actor=a)),
    ("counterfactuals.run_reference_counterfactuals", AUDITORS,
     lambda a, c: counterfactuals.run_reference_counterfactuals(NOPE, "1", dataset="ref", actor=a)),
    ("counterfactuals.text_counterfactual_for", AUDITORS,
     lambda a, c: counterfactuals.text_counterfactual_for(NOPE, "1", "text", actor=a)),
    ("drift.compute_drift", AUDITORS, lambda a, c: drift.compute_drift(NOPE, "1", "2", actor=a)),
    ("drift_views.drift_trend(compute_missing=True)", AUDITORS,
     lambda a, c: drift_views.drift_trend(NOPE, compute_missing=True, actor=a)),
    ("drift_views.drift_trend(compute_missing=False)", EVERYONE,
     lambda a, c: drift_views.drift_trend(NOPE, compute_missing=False, actor=a)),
    ("drift_views.drift_gallery", EVERYONE, lambda a, c: drift_views.drift_gallery(10_000, method="saliency", actor=a)),
    ("reports.build_document", AUDITORS, lambda a, c: reports.build_document(NOPE, "1", actor=a)),
    ("reports.generate_report", AUDITORS, lambda a, c: reports.generate_report(NOPE, "1", actor=a)),
    ("report_records.report_bytes", EVERYONE, lambda a, c: report_records.report_bytes(10_000, actor=a)),
    ("report_records.job_report", EVERYONE, lambda a, c: report_records.job_report(10_000, actor=a)),
    ("report_records.sign_report", AUDITORS,
     lambda a, c: report_records.sign_report(10_000, decision="approved", reason="r", actor=a)),
    ("full_audit.run_full_audit", AUDITORS, lambda a, c: full_audit.run_full_audit(NOPE, "1", dataset="ref", actor=a)),
    # The audit trail holds failed sign-in usernames: administrators read it; auditors verify and anchor it.
    ("audit_trail.recent_entries", ADMINS, lambda a, c: audit_trail.recent_entries(5, actor=a)),
    ("audit_trail.export_rows", ADMINS, lambda a, c: audit_trail.export_rows(5, actor=a)),
    ("audit_trail.export_csv", ADMINS, lambda a, c: audit_trail.export_csv(5, actor=a)),
    ("audit_trail.verify_log", AUDITORS, lambda a, c: audit_trail.verify_log(actor=a)),
    ("audit_trail.log_head", AUDITORS, lambda a, c: audit_trail.log_head(actor=a)),
    ("datasets.preview_image_import", ADMINS,
     lambda a, c: datasets.preview_image_import("d", c["missing"], c["missing"], actor=a)),
]
# Service functions the pages call that every signed-in role may use, so they take no actor: pure helpers
# (no stored data) and reads of the registry and stored results, which the viewer role exists to read.
OPEN_TO_EVERY_ROLE: dict[str, str] = {
    **{f"explain_views.{n}": "pure helper or a read of stored maps and results" for n in (
        "cost_estimate", "describe_engine", "explain_form", "faithfulness_curves", "feature_maps", "localisation",
        "method_labels", "sample_region", "sanity_methods", "reference_view")},
    **{f"text.{n}": "pure helper or a read of stored token attributions" for n in (
        "attention_maps", "describe_parameters", "method_agreement", "text_faithfulness", "text_methods",
        "text_params_key", "text_method_choices")},
    **{f"concepts.{n}": "pure helper or a read of stored concept tests" for n in (
        "concept_examples_preview", "default_layers", "layer_choices", "stored_concept_tests")},
    **{f"datasets.{n}": "a read of stored reference sets" for n in (
        "dataset_summary", "list_datasets", "load_image_samples", "load_text_samples", "pick_reference_set",
        "sample_index", "load_image_files")},
    "drift.available_methods": "pure helper", "drift.drift_assessment": "a read of a stored drift result",
    "fairness.group_attributes": "a read of a stored set's group columns",
    "registry.allowed_statuses": "pure helper", "registry.input_kind": "pure helper", "registry.list_models": "a read of the registry",
    "report_records.list_reports": "a read of stored reports (their bytes go through report_bytes, in ACTIONS)",
    "explain_views.true_class_view": "a read of stored maps (its actor only attributes computing)",
    "explain_views.quality_metrics": "pure helper: the quality metrics' declarations",
}
# The job queue (audit/services/jobs/queue.py) has its permission checks tested with it.
NOT_IN_TABLE = {"jobs": "the job queue's own tests (work in progress in another change)"}


def _outcome(call: Call, actor: Principal, ctx: dict[str, Any]) -> str:
    try:
        call(actor, ctx)
    except PermissionDenied:
        return "refused"
    except TypeError as exc:  # a wrong call in this table must not pass as "allowed"
        raise AssertionError(f"the table calls the service wrongly: {exc}") from exc
    except Exception:  # noqa: BLE001 - past the permission check, the dummy arguments may fail any way
        return "allowed"
    return "allowed"


def test_every_role_gets_exactly_what_the_table_says(register_small_cnn, tmp_path):
    register_small_cnn()
    ctx = {"handle": registry.load_handle("tiny", "1"), "missing": tmp_path / "missing"}
    wrong = []
    for name, who, call in ACTIONS:
        for role in ROLES:
            expected = "allowed" if role in who else "refused"
            got = _outcome(call, Principal(f"matrix-{role}", role), ctx)
            if got != expected:
                wrong.append(f"{name} as {role}: expected {expected}, got {got}")
    assert not wrong, "\n".join(wrong)


def test_the_table_uses_only_the_three_role_sets_and_never_refuses_an_admin():
    assert {who for _, who, _ in ACTIONS} == {ADMINS, AUDITORS, EVERYONE}
    assert not [name for name, who, _ in ACTIONS if "admin" not in who]


def _checked_functions() -> set[str]:
    found = set()
    for path in sorted((ROOT / "audit" / "services").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                continue
            if any(isinstance(n, ast.Call) and getattr(n.func, "id", None) in ("require", "_require_admin")
                   for n in ast.walk(node)):
                found.add(f"{_short(module)}.{node.name}")
    return found


def test_every_service_action_that_checks_a_permission_is_in_the_table():
    listed = {name.split("(")[0] for name, _, _ in ACTIONS}
    missing = {f for f in _checked_functions() if f not in listed and f.split(".")[0] not in NOT_IN_TABLE
               and f != "auth.require"}
    assert not missing, f"add these to ACTIONS: {sorted(missing)}"
    assert len(listed) >= 40


def _page_service_calls() -> set[str]:
    """module.function for every function of audit.services that a page (or the router) imports or calls."""
    import importlib
    import inspect

    found = set()
    for path in sorted((ROOT / "pages").glob("*.py")) + [ROOT / "streamlit_app.py"]:
        tree = ast.parse(path.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("audit.services"):
                for alias in node.names:
                    dotted = f"{node.module}.{alias.name}"
                    if dotted in SHORT_NAMES:  # a module imported by name: its functions are called as attributes
                        aliases[alias.asname or alias.name] = SHORT_NAMES[dotted]
                    else:
                        found.add((_short(node.module), alias.name))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                found.add((aliases[node.value.id], node.attr))
    out = set()
    for module, name in found:
        obj = getattr(MODULES.get(module) or importlib.import_module(f"audit.services.{module}"), name, None)
        if inspect.isfunction(obj):  # a re-exported function is named by the services module that defines it
            home = _short(obj.__module__) if obj.__module__.startswith("audit.services.") else module
            out.add(f"{home}.{name}")
    return out


def test_every_service_function_a_page_calls_is_in_the_matrix_or_declared_open():
    """Issue 22: the matrix covers every read a page makes. A function a page calls is either role-checked and
    in ACTIONS (each cell tested above), or declared open to every role with the reason; a page function that
    takes an actor must be in ACTIONS, so its check cannot go untested."""
    import inspect

    listed = {name.split("(")[0] for name, _, _ in ACTIONS}
    sign_in = {"auth.authenticate", "identities.sign_in_with_identity", "throttle.client_address"}  # before any role
    sessions_ = {f"sessions.{n}" for n in ("create_session", "resolve_session", "revoke", "issue_handoff", "cookie_name",
                                           "handoff_pending")}  # the router's own session plumbing
    calls = _page_service_calls()
    unclassified = sorted(f for f in calls if f not in listed and f not in OPEN_TO_EVERY_ROLE and f not in sign_in
                          and f not in sessions_ and f.split(".")[0] not in NOT_IN_TABLE)
    assert not unclassified, f"add these page calls to ACTIONS or OPEN_TO_EVERY_ROLE: {unclassified}"
    with_actor = sorted(f for f in OPEN_TO_EVERY_ROLE
                        if "actor" in inspect.signature(getattr(MODULES[f.split(".")[0]], f.split(".")[1])).parameters)
    assert with_actor == ["explain_views.true_class_view"], with_actor
    assert {"audit_trail.recent_entries", "audit_trail.verify_log", "audit_trail.log_head",
            "datasets.preview_image_import"} <= listed
