"""One multiple-testing correction for every analysis: known answers worked out by hand, and every consumer
(the TCAV engine, the concept service, the job check, the CLI) refusing an unknown name the same way."""

from __future__ import annotations

import numpy as np
import pytest

from audit.multiple_testing import (CORRECTIONS, DEFAULT_CORRECTION, ERR_CORRECTION, check_correction,
                                    correct_pvalues)


def test_holm_by_hand_with_a_tie_a_cap_and_an_order_to_restore():
    # p = [0.04, 0.001, 0.03, 0.03, 0.5], m = 5. Sorted (stable): 0.001 (i1), 0.03 (i2), 0.03 (i3), 0.04 (i0),
    # 0.5 (i4); times m - k: 0.005, 0.12, 0.09, 0.08, 0.5; running max: 0.005, 0.12, 0.12, 0.12, 0.5.
    got = correct_pvalues([0.04, 0.001, 0.03, 0.03, 0.5], "holm")
    np.testing.assert_allclose(got, [0.12, 0.005, 0.12, 0.12, 0.5])
    # m = 3: 0.2 * 3 = 0.6, 0.3 * 2 = 0.6, 0.6 * 1 = 0.6 -> all 0.6; 0.4 * 3 = 1.2 caps at 1
    np.testing.assert_allclose(correct_pvalues([0.3, 0.2, 0.6], "holm"), [0.6, 0.6, 0.6])
    np.testing.assert_allclose(correct_pvalues([0.4, 0.5, 0.9], "holm"), [1.0, 1.0, 1.0])


def test_bonferroni_by_hand():
    np.testing.assert_allclose(correct_pvalues([0.01, 0.2, 0.3], "bonferroni"), [0.03, 0.6, 0.9])
    np.testing.assert_allclose(correct_pvalues([0.5, 0.001], "bonferroni"), [1.0, 0.002])


def test_one_test_is_left_alone_and_no_test_gives_nothing():
    for name in CORRECTIONS:
        np.testing.assert_allclose(correct_pvalues([0.07], name), [0.07])
        assert correct_pvalues([], name).shape == (0,)


def test_the_names_and_the_default():
    assert CORRECTIONS == ("holm", "bonferroni") and DEFAULT_CORRECTION == "holm"
    assert check_correction("bonferroni") == "bonferroni"
    with pytest.raises(ValueError) as err:
        check_correction("fdr_bh")
    assert str(err.value) == ERR_CORRECTION.format(value="fdr_bh")


def test_every_consumer_refuses_an_unknown_correction_with_the_same_message(tiny_image):
    import torch

    from audit.cli import build_parser
    from audit.concepts import run_tcav
    from audit.concepts.stats import correct_pvalues as reexported
    from audit.services.concepts import ConceptError, run_concept_test
    from audit.services.job_kinds import JobError, _check_tcav

    assert reexported is correct_pvalues
    want = ERR_CORRECTION.format(value="fdr")
    with pytest.raises(ValueError) as err:
        run_tcav(torch.nn.Linear(2, 2), [], torch.zeros(3, 2), [torch.zeros(3, 2)] * 2, torch.zeros(3, 2), 0,
                 correction="fdr")
    assert str(err.value) == want
    with pytest.raises(ConceptError) as err:
        run_concept_test("tiny", "1", concepts=["watermark"], target=0, correction="fdr")
    assert str(err.value) == want
    request = {"family": "tiny", "version": "1", "dataset": "ref", "concepts": ["watermark"], "target": 0}
    assert _check_tcav(request)["correction"] == DEFAULT_CORRECTION
    with pytest.raises(JobError) as err:
        _check_tcav({**request, "correction": "fdr"})
    assert str(err.value) == want
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["tcav", "--family", "f", "--version", "1", "--target", "0", "--correction", "fdr"])
    args = parser.parse_args(["tcav", "--family", "f", "--version", "1", "--target", "0"])
    assert args.correction == DEFAULT_CORRECTION
