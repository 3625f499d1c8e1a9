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


def test_text_bench_prints_ratios_for_both_sets(capsys):
    import re

    from audit.bench import text as text_bench

    code = text_bench.main(["--tiny", "--texts", "2", "--mixed", "3", "--min-tokens", "5", "--max-tokens", "20",
                            "--steps", "4", "--rounds", "1"])
    assert code == 0
    out = capsys.readouterr().out
    for title in ("fixed set", "mixed-length set"):
        line = next(ln for ln in out.splitlines() if ln.startswith(f"{title} ratio ours/captum"))
        ratios = re.findall(r"([0-9.]+)x", line)
        assert len(ratios) == 3 and all(float(r) > 0 for r in ratios)
        diff = float(line.rsplit(":", 1)[1])
        assert diff < 1e-4  # same attributions as captum
    assert "tokens 5-20" in out
    shared = next(ln for ln in out.splitlines() if ln.startswith("mixed-length set shared passes ("))
    assert re.search(r": [0-9.]+x; max \|score difference\| ([0-9.e+-]+)$", shared)
    assert float(shared.rsplit(" ", 1)[1]) < 1e-5  # together gives the maps of one call per method


def test_text_bench_adaptive_side_reports_its_completeness_against_captum(capsys):
    import re

    from audit.bench import text as text_bench

    code = text_bench.main(["--tiny", "--texts", "2", "--mixed", "0", "--steps", "16", "--rounds", "1",
                            "--tolerance", "1e-12", "--start-steps", "2"])
    assert code == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("fixed set adaptive (start 2 steps, tolerance 1e-12)"))
    assert re.search(r": [0-9.]+x vs the faster captum; its max \|delta\| is (within|ABOVE) captum's$", line)
    row = next(ln for ln in out.splitlines() if ln.startswith("ours/adaptive"))
    assert len(row.split()) == 6


def test_text_bench_rejects_bad_arguments():
    from audit.bench import text as text_bench

    assert text_bench.main(["--tiny", "--min-tokens", "50", "--max-tokens", "10"]) == 2


def test_memory_bench_reports_peak_rss_with_and_without_budget(capsys):
    import re

    from audit.bench import memory as memory_bench

    code = memory_bench.main(["--arch", "resnet18", "--size", "32", "--steps", "4", "--budget-mb", "5"])
    assert code == 0
    out = capsys.readouterr().out
    budgeted = re.search(r"budgeted \(AUDIT_MEMORY_MB=5\): chunk (\d+) path points, peak RSS (\d+) MB", out)
    assert budgeted and int(budgeted.group(1)) >= 1 and int(budgeted.group(2)) > 0
    assert re.search(r"single batch \(4 path points\): peak RSS \d+ MB", out)
    assert float(re.search(r"peak RSS ratio single/budgeted: ([0-9.]+)x", out).group(1)) > 0
