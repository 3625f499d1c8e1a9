"""The jobs command line: --background prints {"job": ID}, jobs show --json keeps its contract, cancel,
retry and download, and bad input is one line with a non-zero exit."""

from __future__ import annotations

import json

from audit.cli import main
from audit.services.jobs.worker import Worker


def _cli(capsys, *argv: str) -> tuple[int, str, str]:  # noqa: ANN001 - pytest fixture
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_background_commands_queue_jobs_and_show_keeps_its_contract(queue_home, capsys, tmp_path):
    rc, out, _ = _cli(capsys, "explain", "--family", "tiny", "--version", "1", "--dataset", "ref",
                      "--methods", "saliency,gradcam", "--limit", "6", "--background")
    assert rc == 0 and json.loads(out) == {"job": 1}
    rc, out, _ = _cli(capsys, "report", "--family", "tiny", "--version", "1", "--no-compute", "--background")
    assert rc == 0 and json.loads(out) == {"job": 2}
    rc, out, _ = _cli(capsys, "jobs", "show", "1", "--json")
    shown = json.loads(out)
    assert shown == {"id": 1, "kind": "explain", "status": "queued", "progress": 0.0, "message": "queued",
                     "executor": "local", "result": None, "error": None}
    assert Worker(lease_s=10).run(once=True) == 2
    rc, out, _ = _cli(capsys, "jobs", "list", "--json")
    listed = json.loads(out)
    assert [(j["id"], j["status"]) for j in listed] == [(2, "done"), (1, "done")]
    assert listed[1]["result"]["samples"] == 6 and listed[1]["result"]["computed"] == 12
    rc, out, _ = _cli(capsys, "jobs", "download", "2", "--out", str(tmp_path / "r.pdf"))
    data = (tmp_path / "r.pdf").read_bytes()
    assert rc == 0 and data[:5] == b"%PDF-" and out.split()[0] == listed[0]["result"]["sha256"]


def test_cancel_and_retry_from_the_command_line(queue_home, capsys):
    _cli(capsys, "bias", "--family", "tiny", "--version", "1", "--dataset", "ref", "--attributes", "site",
         "--n-boot", "5", "--background")
    rc, out, _ = _cli(capsys, "jobs", "cancel", "1")
    assert rc == 0 and out.strip() == "job 1: cancelled"
    rc, out, _ = _cli(capsys, "jobs", "retry", "1")
    assert rc == 0 and json.loads(out) == {"job": 1}
    Worker(lease_s=10).run(once=True)
    rc, out, _ = _cli(capsys, "jobs", "show", "1", "--json")
    shown = json.loads(out)
    assert shown["status"] == "done" and isinstance(shown["result"]["result_id"], int)


def test_bad_input_is_one_line(queue_home, capsys):
    for argv, needle in (
        (("explain", "--family", "tiny", "--version", "1", "--dataset", "ref", "--methods", "nope", "--background"),
         "unknown attribution method 'nope'"),
        (("report", "--family", "tiny", "--version", "1", "--background", "--out", "x.pdf"),
         "--out cannot be used with --background"),
        (("report", "--family", "tiny", "--version", "1"), "--out FILE.pdf is required"),
        (("jobs", "show", "99"), "no job with id 99"),
        (("jobs", "download", "99", "--out", "x.txt"), "--out must name a .pdf file"),
        (("worker", "--ray-address", "10.0.0.1:6379"), "--ray-address needs --executor ray"),
    ):
        rc, _, err = _cli(capsys, *argv)
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], (argv, err)
