"""The analysis registry: the job kinds, the full audit's steps, the report's sections and the CLI's commands
are read from the registered analyses, and a new analysis kind is one new package (issue 23)."""

from __future__ import annotations

import inspect
import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from audit.services.analyses import registry
from audit.services.analyses.registry import audit_steps, registered_analyses, report_parts, use_cases
from tests.conftest import TINY_LABELS

ANALYSES_DIR = Path(registry.__file__).parent


def _commands() -> set[str]:
    from audit.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return set(sub.choices)


def test_every_package_of_the_analyses_folder_is_registered_in_its_order():
    packages = {p.parent.name for p in ANALYSES_DIR.glob("*/__init__.py")}
    analyses = registered_analyses()
    assert {a.name for a in analyses} == packages
    assert [a.order for a in analyses] == sorted(a.order for a in analyses)
    assert [s.name for s in audit_steps()] == ["explanations", "concepts", "bias", "counterfactuals", "drift"]
    assert [p.section.key for p in report_parts()] == ["explanations", "quality", "concepts", "bias",
                                                       "counterfactuals", "drift"]


def test_job_kinds_and_commands_come_from_the_analyses():
    from audit.services.jobs.queue import job_kind, job_kinds

    assert list(job_kinds()) == [j.name for a in registered_analyses() for j in a.jobs]
    assert list(job_kinds()) == ["explain", "tcav", "bias", "counterfactuals", "drift", "report", "full_audit"]
    assert job_kind("tcav") is registry.analysis("concepts").jobs[0]
    assert {"explain", "tcav", "bias", "drift", "drift-trend", "report", "report-sign", "reports", "audit"} <= _commands()


def test_every_use_case_declares_its_keyword_arguments():
    """Each registered use case takes its subject positionally and everything else by keyword; every keyword
    is declared in its spec (result option or other argument); no two analyses store the same kind."""
    kinds = [u.spec.kind for u in use_cases()]
    assert sorted(kinds) == ["bias", "counterfactual", "drift", "tcav", "text_probe"]
    for case in use_cases():
        params = inspect.signature(case.run).parameters.values()
        subject = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        keywords = {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
        declared = set(case.spec.result_options) | set(case.spec.other_arguments)
        assert subject[:1] == ["family"] and keywords <= declared, (case.spec.kind, keywords - declared)


def test_listing_the_analyses_loads_no_engine():
    """Every command builds the parser and the job queue lists the kinds: both read the registry, so a package
    registers with its light parts and names the others (``Ref``), loaded when the full audit or a report asks."""
    import subprocess

    heavy = "('torch', 'sklearn', 'pandas', 'reportlab', 'sqlalchemy')"
    code = ("import sys; from audit.cli import build_parser; build_parser(); "
            f"print(sorted(m for m in {heavy} if m in sys.modules)); "
            "from audit.services.jobs.queue import job_kinds; job_kinds(); "
            f"print(sorted(m for m in {heavy} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    parser, queue = out.stdout.split("\n")[:2]
    assert parser == "['torch']", out.stdout + out.stderr  # torch: register's model sources, as before the registry
    assert queue == "['sqlalchemy', 'torch']", out.stdout + out.stderr  # the queue's own database layer
    assert isinstance(registry.analysis("concepts").step, registry.Ref)


def test_two_analyses_cannot_claim_the_same_job_kind_step_or_section():
    from audit.services.analyses.registry import Analysis

    concepts = registry.analysis("concepts")
    with pytest.raises(ValueError, match="job kind 'tcav' is declared by both"):
        registry.register_analysis(Analysis("copycat", "Copy", 99, jobs=concepts.jobs))
    assert "copycat" not in {a.name for a in registered_analyses()}
    registry.register_analysis(Analysis("copycat", "Copy", 99, step=concepts.step, report=concepts.report))
    try:
        with pytest.raises(ValueError, match="full-audit step 'concepts' is declared by both"):
            audit_steps()
        with pytest.raises(ValueError, match="report section 'concepts' is declared by both"):
            report_parts()
    finally:
        registry.unregister_analysis("copycat")
    assert len(audit_steps()) == 5


# ---- a new analysis kind is one new package ------------------------------------------------------------

PLUGIN = "plugin_label_balance"
PLUGIN_INIT = '''
"""A test-only analysis: how many reference samples each class has, stored as kind "label_balance"."""
from audit.services.analyses.registry import Analysis, Ref, UseCase, register_analysis

from .wiring import JOB, add_commands

ANALYSIS = register_analysis(Analysis(
    name="plugin_label_balance", label="Label balance", order=35,
    use_cases=(UseCase(f"{__name__}.service", "SPEC", "count_labels"),), jobs=(JOB,),
    step=Ref(f"{__name__}.parts", "STEP"), report=Ref(f"{__name__}.parts", "REPORT"), commands=add_commands,
), module=__name__)
'''
PLUGIN_SERVICE = '''
"""The use case: count the reference set's labels, store the counts once per (model version, dataset)."""
from collections import Counter

from audit.results.base import AnalysisSpec
from audit.services.core.datasets import dataset_key, sample_index
from audit.services.core.registry import get_version
from audit.services.core.runs import analysis_key, find_analysis, store_analysis, tracked_run
from audit.services.governance.principals import SYSTEM, require

SPEC = AnalysisSpec(kind="label_balance", result_options=("dataset",))


def count_labels(family, version, *, dataset, actor=SYSTEM, progress=None):
    require(actor, "run")
    info = get_version(family, version)
    key = analysis_key(SPEC, model_sha256=info["sha256"], dataset_sha256=dataset_key(dataset, info["labels"]),
                       options={"dataset": dataset})
    stored = find_analysis("label_balance", family, version, key)
    if stored is not None:
        return stored
    counts = Counter(str(t) for t in sample_index(dataset).label_texts)
    with tracked_run("label_balance", family=family, version=version, parameters={"dataset": dataset},
                     actor=actor) as run:
        return store_analysis("label_balance", family, version, key=key, parameters={"dataset": dataset},
                              summary={"counts": dict(sorted(counts.items())), "dataset": dataset}, actor=actor,
                              dataset=dataset, run_id=run.run_id)
'''
PLUGIN_WIRING = '''
"""The light parts, read whenever analyses are listed: the job kind and the command."""
import json

from audit.cli_ext.common import emit, shell_operator
from audit.models.tasks import input_kind
from audit.services.jobs.kinds import JobKind, dataset_param, no_extra, version_param


def check(p):
    no_extra(p, ("family", "version", "dataset"), "label_balance")
    info = version_param(p)
    return {"family": p["family"], "version": p["version"], "dataset": dataset_param(p.get("dataset"), input_kind(info["task"]))}


def run_job(p, actor, ctx):
    from .service import count_labels

    return {"result_id": count_labels(p["family"], p["version"], dataset=p["dataset"], actor=actor).id}


JOB = JobKind("label_balance", "Label balance", ("run",), check, run_job)


def cmd(args):
    from .service import count_labels

    res = count_labels(args.family, args.version, dataset=args.dataset, actor=shell_operator())
    emit(json.dumps({"id": res.id, "counts": res.summary["counts"]}))
    return 0


def add_commands(sub):
    sp = sub.add_parser("label-balance", help="samples per class of a reference set")
    sp.add_argument("--family", required=True)
    sp.add_argument("--version", required=True)
    sp.add_argument("--dataset", required=True)
    sp.set_defaults(fn=cmd)
'''

PLUGIN_PARTS = '''
"""The full-audit step and the report's section, loaded when the full audit or a report reads them."""
from audit.report.compliance import SectionSpec
from audit.report.content import Section
from audit.services.analyses.registry import AuditStep, ReportPart
from audit.services.core.runs import stored_analyses

from .service import count_labels


def step(plan, opts, actor, progress):
    return [count_labels(plan.family, plan.version, dataset=plan.dataset, actor=actor).id]


def gather(g):
    sec = Section("label_balance", "Label balance")
    stored = stored_analyses(g.model.family, g.model.version, "label_balance")
    if not stored:
        return [sec.find("Label balance", "samples per class", "missing", "no stored label count")]
    counts = stored[-1].summary["counts"]
    return [sec.find("Label balance", "samples per class", "info", f"{len(counts)} classes, {sum(counts.values())} samples")]


STEP = AuditStep("label_balance", 0.05, step)
REPORT = ReportPart(SectionSpec("label_balance", "Label balance", ("IV.2(d)",), ("DEV-DATA",)), gather,
                    areas=("Label balance",), finding_rank=2)
'''


@pytest.fixture()
def plugin(tmp_path, audit_home, register_small_cnn):
    """The tiny model, a reference set 'ref' of 12 images (classes 0, 1, 2 four times each), and the plugin
    package written into a folder on the analyses package's path, found by the same discovery."""
    from audit.report.compliance import SECTION_BY_KEY
    from audit.services.core.datasets import add_image_dataset

    register_small_cnn()
    add_image_dataset("ref", torch.rand(12, 1, 32, 32, generator=torch.Generator().manual_seed(0)),
                      [i % 3 for i in range(12)], [{"site": "A" if i % 2 else "B"} for i in range(12)],
                      label_names=TINY_LABELS)
    folder = tmp_path / "plugins"
    (folder / PLUGIN).mkdir(parents=True)
    for name, text in (("__init__", PLUGIN_INIT), ("service", PLUGIN_SERVICE), ("wiring", PLUGIN_WIRING),
                       ("parts", PLUGIN_PARTS)):
        (folder / PLUGIN / f"{name}.py").write_text(textwrap.dedent(text))
    package = sys.modules["audit.services.analyses"]
    package.__path__.append(str(folder))
    try:
        registry.discover(force=True)
        yield
    finally:
        package.__path__.remove(str(folder))
        registry.unregister_analysis(PLUGIN)
        for name in [m for m in sys.modules if m.startswith(f"audit.services.analyses.{PLUGIN}")]:
            sys.modules.pop(name)
    assert PLUGIN not in {a.name for a in registered_analyses()}
    assert "label_balance" not in SECTION_BY_KEY


def test_a_new_analysis_kind_is_one_new_package(plugin, capsys):
    import audit.report.compliance as compliance
    from audit.cli import main
    from audit.services.analyses.full_audit.service import FullAuditOptions, run_full_audit
    from audit.services.analyses.reports.service import build_document
    from audit.services.core.runs import stored_analyses
    from audit.services.jobs.queue import job_kinds
    from audit.services.jobs.queue import get_job, submit_job
    from audit.services.jobs.worker import Worker

    # the job kinds: listed after the concept test (its order), checked at submission, run by the worker
    assert list(job_kinds())[:3] == ["explain", "tcav", "label_balance"]
    with pytest.raises(ValueError, match="unknown parameter"):
        submit_job("label_balance", {"family": "tiny", "version": "1", "dataset": "ref", "extra": 1})
    job = submit_job("label_balance", {"family": "tiny", "version": "1", "dataset": "ref"})
    assert Worker(lease_s=10).run(once=True) == 1
    done = get_job(job.id)
    assert done.status == "done", done.error
    stored = stored_analyses("tiny", "1", "label_balance")
    assert [r.id for r in stored] == [done.result["result_id"]]
    assert stored[0].summary["counts"] == {TINY_LABELS[0]: 4, TINY_LABELS[1]: 4, TINY_LABELS[2]: 4}

    # the CLI: a new command, its answer the stored result
    assert "label-balance" in _commands()
    capsys.readouterr()
    assert main(["label-balance", "--family", "tiny", "--version", "1", "--dataset", "ref"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == stored[0].id

    # the report: its section in the analyses' order, in the compliance mapping, its finding in the summary
    assert "label_balance" not in compliance.SECTION_BY_KEY  # declared when a report first reads the parts
    doc = build_document("tiny", "1", dataset="ref", compute_missing=False)
    keys = [s.key for s in compliance.SECTIONS]
    assert keys.index("label_balance") == keys.index("limitations") - 1
    assert [r[2] for r in compliance.mapping_rows() if r[1] == "Label balance"] == ["IV.2(d) Data requirements"]
    keys = [s.key for s in doc.sections]
    assert keys.index("concepts") + 1 == keys.index("label_balance") == keys.index("bias") - 1
    section = doc.sections[keys.index("label_balance")]
    assert [(f.status, f.detail) for f in section.findings] == [("info", "3 classes, 12 samples")]
    order = [f.section for f in doc.findings]  # finding_rank 2: after bias (1), before counterfactuals (4)
    assert order.index("bias") < order.index("label_balance") < order.index("counterfactuals")

    # the full audit: a step in its order, its stored result reused, the section's status in the answer
    audit = run_full_audit("tiny", "1", dataset="ref", options=FullAuditOptions(
        explain_limit=1, explain_options={"ig_steps": 4, "seed": 0}, cf_limit=1,
        cf_search={"max_iter": 2, "binary_steps": 1, "restarts": 1}, bias_n_boot=5))
    assert list(audit.steps) == ["explanations", "concepts", "label_balance", "bias", "counterfactuals", "drift",
                                 "report"]
    assert audit.results["label_balance"] == [stored[0].id]
    assert audit.sections["label_balance"] == "INFO"
    assert "label_balance" not in audit.skipped
