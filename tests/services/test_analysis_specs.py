"""Each analysis declares which of its arguments change the stored result: no argument is left out."""

from __future__ import annotations

import inspect

import pytest

from audit.services.analyses.concepts.service import TCAV_SPEC, run_concept_test
from audit.services.analyses.drift.service import DRIFT_SPEC, compute_drift

CASES = [(TCAV_SPEC, run_concept_test, {"family", "version"}), (DRIFT_SPEC, compute_drift, {"family", "base", "new"})]


@pytest.mark.parametrize("spec, fn, identity", CASES, ids=[c[0].kind for c in CASES])
def test_every_argument_is_declared_once(spec, fn, identity):
    params = set(inspect.signature(fn).parameters)
    declared = set(spec.result_options) | set(spec.other_arguments)
    assert params - identity == declared, (params - identity) ^ declared
    assert not set(spec.result_options) & set(spec.other_arguments)
