"""The benchmark script runs end to end on a tiny configuration (a smoke test, not a timing)."""

from __future__ import annotations

import json

from audit.bench import attribution as bench


def test_bench_runs_and_reports_every_method(capsys):
    code = bench.main(["--arch", "small_cnn", "--images", "2", "--repeats", "1", "--warmup", "0", "--size", "32", "--ig-steps", "2",
                       "--sg-samples", "2", "--window", "16", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)["timing"]
    assert set(out["methods"]) == set(bench.SUITE)
    for row in out["methods"].values():
        assert row["ours_s"] > 0 and row["peer_s"] > 0
    assert out["methods"]["occlusion"]["rank_corr"] > 0.99
    assert out["totals"]["floor_s"] > 0


def test_bench_rejects_bad_arguments(capsys):
    assert bench.main(["--images", "0"]) == 2
