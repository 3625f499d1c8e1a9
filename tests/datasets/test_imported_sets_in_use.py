"""Imported sets feed the analyses: a concept set from files runs in `tcav --concepts NAME` against a
reference set imported from a folder and CSV."""

from __future__ import annotations

import json

import numpy as np

from tests.datasets.conftest import write_csv


def test_tcav_runs_on_an_imported_concept_set_and_reference_set(audit_home, register_small_cnn, tmp_path, capsys):
    from PIL import Image

    from audit.cli import main

    register_small_cnn(mean=0.5, std=0.5)
    rng = np.random.default_rng(0)
    ref = tmp_path / "ref"
    ref.mkdir()
    rows = []
    for i in range(100):
        Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8), "L").save(ref / f"{i}.png")
        rows.append([f"{i}.png", "3" if i < 20 else str(i % 10)])
    write_csv(tmp_path / "ref.csv", ["path", "label"], rows)
    stripes = tmp_path / "stripes"
    stripes.mkdir()
    for i in range(12):
        arr = np.zeros((24, 24), dtype=np.uint8)
        arr[:, (i % 4)::4] = 255
        Image.fromarray(arr, "L").save(stripes / f"s{i}.jpg", quality=95)

    assert main(["dataset", "add", "--name", "ref", "--images", str(ref), "--index", str(tmp_path / "ref.csv"),
                 "--family", "tiny"]) == 0
    assert main(["concept", "add", "--name", "my-stripes", "--images", str(stripes), "--family", "tiny"]) == 0
    capsys.readouterr()
    rc = main(["tcav", "--family", "tiny", "--version", "1", "--concepts", "my-stripes", "--target", "3",
               "--dataset", "ref", "--n-random", "3", "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    result = json.loads(out.out)
    assert "my-stripes" in json.dumps(result)
