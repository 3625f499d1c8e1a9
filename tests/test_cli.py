"""The command line: exit codes and one-line messages, registration through the CLI, verify-log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from sqlalchemy import text

from audit.cli import main
from audit.models.zoo import SmallCNN

ROOT = Path(__file__).resolve().parents[1]


def _files(tmp_path: Path) -> tuple[Path, Path]:
    weights = tmp_path / "w.safetensors"
    save_file(SmallCNN().state_dict(), str(weights))
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(str(i) for i in range(10)))
    return weights, labels


def _register(weights: Path, labels: Path, version: str = "1") -> list[str]:
    return ["register", "--family", "cli-fam", "--version", version, "--task", "image-classification",
            "--arch", "small_cnn", "--arch-kwargs", '{"in_channels": 1}', "--weights", str(weights),
            "--labels", str(labels), "--input-size", "1,32,32"]


def test_register_then_list_json(audit_home, tmp_path, capsys):
    weights, labels = _files(tmp_path)
    assert main(_register(weights, labels)) == 0
    out = capsys.readouterr().out
    assert "sha256=" in out
    assert main(["models", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    assert models[0]["family"] == "cli-fam"
    assert models[0]["versions"][0]["sha256"] in out


def test_duplicate_version_is_an_error(audit_home, tmp_path, capsys):
    weights, labels = _files(tmp_path)
    assert main(_register(weights, labels)) == 0
    capsys.readouterr()
    assert main(_register(weights, labels)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "immutable" in err and "\n" not in err


@pytest.mark.parametrize("args, needle", [
    (["register", "--family", "f", "--version", "1", "--task", "image-classification"], "exactly one of"),
    (["register", "--family", "f", "--version", "1", "--task", "image-classification", "--weights", "x"], "--arch"),
])
def test_bad_arguments_exit_nonzero_with_one_line(audit_home, capsys, args, needle):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_register_refuses_pickled_model_and_stores_nothing(audit_home, tmp_path, capsys):
    path = tmp_path / "full.pt"
    torch.save(SmallCNN(), path)
    _, labels = _files(tmp_path)
    args = _register(path, labels)
    assert main(args) == 2
    assert "needs code to unpickle" in capsys.readouterr().err
    assert main(["models", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert not any((audit_home / "artifacts").rglob("*")) if (audit_home / "artifacts").exists() else True


def test_verify_log_detects_tampering_via_subprocess(audit_home, tmp_path):
    weights, labels = _files(tmp_path)
    assert main(_register(weights, labels)) == 0
    assert main(_register(weights, labels, version="2")) == 0
    env = dict(os.environ, AUDIT_HOME=str(audit_home))
    ok = subprocess.run([sys.executable, "-m", "audit", "verify-log"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    from storage.db import get_engine

    with get_engine().begin() as conn:
        conn.execute(text("UPDATE audit_log SET details='{}' WHERE seq=1"))
    bad = subprocess.run([sys.executable, "-m", "audit", "verify-log"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode == 1
    assert "seq=1" in bad.stderr and "edited" in bad.stderr


def test_unknown_command_exits_nonzero(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code != 0


# ---- register --exported / --onnx / --arch package.module:Callable --------------------------------------

@pytest.fixture(scope="module")
def any_arch_files(tmp_path_factory):
    """One TinyResNet (tests.models.custom_arch) in every format, and its labels file."""
    from tests.models.model_files import write_model_files

    folder = tmp_path_factory.mktemp("any-arch")
    files = write_model_files(folder / "files")
    labels = folder / "labels.txt"
    labels.write_text("\n".join(f"c{i}" for i in range(10)))
    return files, labels


def _register_args(version: str, labels: Path, *source: str) -> list[str]:
    return ["register", "--family", "any-arch", "--version", version, "--task", "image-classification",
            *source, "--labels", str(labels), "--input-size", "1,32,32", "--mean", "0.5", "--std", "0.25"]


def _models_json(capsys) -> list:
    capsys.readouterr()
    assert main(["models", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_register_every_new_format_from_the_command_line(audit_home, any_arch_files, capsys):
    files, labels = any_arch_files
    assert main(_register_args("exp", labels, "--exported", str(files.exported))) == 0
    assert main(_register_args("imp", labels, "--arch", "tests.models.custom_arch:TinyResNet", "--arch-kwargs",
                               '{"width": 8}', "--weights", str(files.weights))) == 0
    assert main(_register_args("onnx", labels, "--onnx", str(files.onnx), "--onnx-tolerance", "1e-3")) == 0
    versions = {v["version"]: v for v in _models_json(capsys)[0]["versions"]}
    assert [versions[v]["format"] for v in ("exp", "imp", "onnx")] == ["exported", "import_path", "onnx"]
    assert versions["imp"]["provenance"]["import_path"] == "tests.models.custom_arch:TinyResNet"
    assert versions["onnx"]["provenance"]["onnx_check"]["tolerance"] == 1e-3
    assert versions["exp"]["target_layer"] == versions["imp"]["target_layer"] == "stage2"


@pytest.mark.parametrize("source, needle", [
    (["--exported", "{random}"], "random.pt2"),
    (["--exported", "{weights}"], "tiny.safetensors"),
    (["--onnx", "{random_onnx}"], "random.onnx"),
    (["--arch", "no_such_package.mod:Net", "--weights", "{weights}"], "not installed"),
    (["--arch", "tests.models.custom_arch:NOT_A_CALLABLE", "--weights", "{weights}"], "not a callable"),
    (["--arch", "tests.models.custom_arch:TinyResNet", "--arch-kwargs", '{"width": 4}', "--weights", "{weights}"],
     "do not fit"),
    (["--arch", "tests.models.custom_arch:TinyResNet", "--weights", "{absent}"], "not found"),
    (["--exported", "{exported}", "--onnx", "{random_onnx}"], "exactly one of"),
    (["--exported", "{exported}", "--dataset", "ref"], "go with --onnx"),
    (["--onnx", "{onnx}", "--dataset", "no-such-set"], "'no-such-set' does not exist"),
])
def test_register_bad_new_sources_exit_with_one_line_and_write_nothing(audit_home, any_arch_files, tmp_path, capsys,
                                                                       source, needle):
    files, labels = any_arch_files
    (tmp_path / "random.pt2").write_bytes(os.urandom(1024))
    (tmp_path / "random.onnx").write_bytes(os.urandom(1024))
    paths = {"random": tmp_path / "random.pt2", "random_onnx": tmp_path / "random.onnx", "weights": files.weights,
             "exported": files.exported, "onnx": files.onnx, "absent": tmp_path / "absent.safetensors"}
    before = _models_json(capsys)
    args = _register_args("1", labels, *[str(paths[a[1:-1]]) if a[1:-1] in paths else a for a in source])
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and needle in err and len(err.splitlines()) == 1
    assert _models_json(capsys) == before == []
