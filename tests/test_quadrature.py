"""The one quadrature module: known integrals on [0, 1], each rule's order of accuracy, the aliases, and
that the image and the text Integrated Gradients both integrate with it (aliases included)."""

from __future__ import annotations

import math

import pytest
import torch

from audit.quadrature import ALIASES, IG_METHOD, IG_STEPS, RULES, canonical_rule, check_points, points_and_weights


def _integral(rule, steps, f):
    alphas, weights = points_and_weights(rule, steps)
    assert alphas.dtype == weights.dtype == torch.float64
    return float((weights * f(alphas)).sum())


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_integrates_known_functions(rule):
    alphas, weights = points_and_weights(rule, 64)
    assert alphas.shape == weights.shape == (64,)
    assert torch.all((alphas >= 0) & (alphas <= 1)) and torch.all(weights > 0)
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-12)  # the integral of 1
    assert _integral(rule, 64, torch.exp) == pytest.approx(math.e - 1, abs=3e-2)
    assert _integral(rule, 64, lambda a: torch.cos(math.pi * a / 2)) == pytest.approx(2 / math.pi, abs=1e-2)


def test_points_are_where_each_rule_puts_them():
    a, w = points_and_weights("riemann_left", 4)
    assert a.tolist() == [0.0, 0.25, 0.5, 0.75] and w.tolist() == [0.25] * 4
    a, _ = points_and_weights("riemann_right", 4)
    assert a.tolist() == [0.25, 0.5, 0.75, 1.0]
    a, _ = points_and_weights("riemann_middle", 4)
    assert a.tolist() == [0.125, 0.375, 0.625, 0.875]
    a, w = points_and_weights("riemann_trapezoid", 5)
    assert a.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0] and w.tolist() == [0.125, 0.25, 0.25, 0.25, 0.125]
    a, w = points_and_weights("gausslegendre", 2)  # nodes 1/2 -+ 1/(2 sqrt 3), weights 1/2
    torch.testing.assert_close(a, torch.tensor([0.5 - 0.5 / math.sqrt(3), 0.5 + 0.5 / math.sqrt(3)], dtype=torch.float64))
    torch.testing.assert_close(w, torch.tensor([0.5, 0.5], dtype=torch.float64))


@pytest.mark.parametrize("steps", [1, 3, 8])
def test_gauss_legendre_is_exact_up_to_degree_2n_minus_1(steps):
    degree = 2 * steps - 1
    assert _integral("gausslegendre", steps, lambda a: a**degree) == pytest.approx(1 / (degree + 1), abs=1e-13)
    # one degree more is not exact: the rule is no better than its theory says
    assert abs(_integral("gausslegendre", steps, lambda a: a ** (degree + 1)) - 1 / (degree + 2)) > 1e-11


@pytest.mark.parametrize(("rule", "order"), [("riemann_left", 1), ("riemann_right", 1), ("riemann_middle", 2),
                                            ("riemann_trapezoid", 2)])
def test_riemann_rules_converge_at_their_order(rule, order):
    exact = 1 - math.cos(1.0)  # integral of sin over [0, 1]
    coarse = abs(_integral(rule, 16, torch.sin) - exact)
    fine = abs(_integral(rule, 32, torch.sin) - exact)
    assert coarse / fine == pytest.approx(2**order, rel=0.1)  # doubling the points divides the error by 2^order
    # and the low-order rules are exact where they should be: left/right for constants, middle/trapezoid for lines
    line = _integral(rule, 16, lambda a: 3 * a + 1)
    assert (line == pytest.approx(2.5, abs=1e-12)) == (order == 2)


@pytest.mark.parametrize(("alias", "rule"), sorted(ALIASES.items()))
def test_aliases_name_the_same_rule(alias, rule):
    assert canonical_rule(alias) == rule
    for got, want in zip(points_and_weights(alias, 7), points_and_weights(rule, 7)):
        assert torch.equal(got, want)


def test_bad_rules_and_point_counts_are_refused_with_what_is_valid():
    with pytest.raises(ValueError, match="unknown ig_method 'simpson'; choose from: gausslegendre.*, gl"):
        points_and_weights("simpson", 4)
    with pytest.raises(ValueError, match="needs ig_steps >= 2"):
        check_points("trapezoid", 1)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="ig_steps must be a positive integer"):
            points_and_weights("gl", bad)
    with pytest.raises(ValueError, match="'left'"):  # the option's check offers the aliases too
        IG_METHOD.check("ig_method", "leftish")
    assert IG_METHOD.choices == RULES and IG_STEPS.low == 1


def test_the_image_and_the_text_ig_declare_the_same_options():
    from audit.attribution import method_spec
    from audit.text import text_method_spec

    image = {o.name: o for o in method_spec("integrated_gradients").options}
    text = {o.name: o for o in text_method_spec("integrated_gradients").options}
    for name in ("ig_steps", "ig_method", "ig_tolerance", "ig_max_steps"):
        assert image[name] is text[name], name


def test_the_image_ig_accepts_the_aliases():
    from audit.attribution import attribute

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Tanh(), torch.nn.Flatten(),
                                torch.nn.Linear(2 * 6 * 6, 3)).eval()
    x = torch.rand(2, 1, 8, 8)
    targets = torch.tensor([0, 2])
    for alias, rule in (("left", "riemann_left"), ("gl", "gausslegendre"), ("trapezoid", "riemann_trapezoid")):
        by_alias = attribute(model, x, targets, ["integrated_gradients"], ig_steps=6, ig_method=alias)
        by_name = attribute(model, x, targets, ["integrated_gradients"], ig_steps=6, ig_method=rule)
        assert torch.equal(by_alias["integrated_gradients"], by_name["integrated_gradients"]), alias
    left = attribute(model, x, targets, ["integrated_gradients"], ig_steps=6, ig_method="left")
    right = attribute(model, x, targets, ["integrated_gradients"], ig_steps=6, ig_method="right")
    assert not torch.equal(left["integrated_gradients"], right["integrated_gradients"])
