"""Quadrature rules on [0, 1] for path integrals: the points and weights of Integrated Gradients,
and the options that choose them. One module for the image and the text IG: the same names, aliases
and defaults on both sides.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import numpy as np
import torch

from audit.declarations import Choice, Option, optional_positive, positive_int

Rule = Literal["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]
RULES: tuple[str, ...] = get_args(Rule)
# Other spellings people use (Captum's names are the canonical ones above).
ALIASES: dict[str, str] = {
    "left": "riemann_left",
    "right": "riemann_right",
    "middle": "riemann_middle",
    "trapezoid": "riemann_trapezoid",
    "gauss_legendre": "gausslegendre",
    "gl": "gausslegendre",
}
# The fewest points a rule is defined with (the trapezoid needs both ends).
MIN_POINTS: dict[str, int] = {"riemann_trapezoid": 2}

UNKNOWN_RULE = "unknown ig_method {name!r}; choose from: {valid}"
TOO_FEW_POINTS = "ig_method={rule!r} needs ig_steps >= {least}, got {steps!r}"
BAD_POINTS = "ig_steps must be a positive integer, got {steps!r}"


def canonical_rule(name: Any) -> str:
    """The rule's canonical name (an alias resolved); ValueError for a name no rule has."""
    rule = ALIASES.get(name, name) if isinstance(name, str) else name
    if rule not in RULES:
        raise ValueError(UNKNOWN_RULE.format(name=name, valid=", ".join(RULES + tuple(ALIASES))))
    return rule


def check_points(rule: str, steps: Any) -> None:
    """ValueError unless ``steps`` points are a valid count for ``rule`` (canonical or alias)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(BAD_POINTS.format(steps=steps))
    rule = canonical_rule(rule)
    least = MIN_POINTS.get(rule, 1)
    if steps < least:
        raise ValueError(TOO_FEW_POINTS.format(rule=rule, least=least, steps=steps))


def points_and_weights(rule: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` points alpha in [0, 1] and their weights (float64), so that the integral of f over
    [0, 1] is about sum(w * f(alpha)); Gauss-Legendre is exact for polynomials of degree < 2 * steps."""
    check_points(rule, steps)
    rule = canonical_rule(rule)
    n = steps
    if rule == "gausslegendre":
        pts, wts = np.polynomial.legendre.leggauss(n)
        alphas, weights = (pts + 1.0) / 2.0, wts / 2.0
    elif rule == "riemann_trapezoid":
        alphas = np.linspace(0.0, 1.0, n)
        weights = np.full(n, 1.0 / (n - 1))
        weights[0] = weights[-1] = 0.5 / (n - 1)
    else:
        offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[rule]
        alphas, weights = (np.arange(n) + offset) / n, np.full(n, 1.0 / n)
    return torch.from_numpy(np.asarray(alphas, dtype=np.float64)), torch.from_numpy(np.asarray(weights, dtype=np.float64))


# The options of both IGs: the rule and its points, and the adaptive refinement on the completeness error.
IG_STEPS = Option("ig_steps", 50, "quadrature points on the path", check=positive_int, label="steps")
IG_METHOD = Option("ig_method", "gausslegendre", "quadrature rule (one of RULES or an alias)",
                   check=Choice(RULES, aliases=tuple(ALIASES)), label="quadrature")
IG_TOLERANCE = Option("ig_tolerance", None, "integrate again with twice the steps where the completeness error "
                      "|sum(attribution) - (f(x) - f(baseline))| exceeds this (None: fixed steps)",
                      check=optional_positive, label="completeness tolerance")
IG_MAX_STEPS = Option("ig_max_steps", 512, "step cap of the adaptive refinement", check=positive_int,
                      label="max steps", acts_only_with=IG_TOLERANCE.name)
