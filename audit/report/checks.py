"""The report's explanation-quality checks on its own samples: deletion/insertion curves of each method's
maps against a random map, and the model-randomisation sanity check. One typed result, with its writer
(``to_summary``, stored as kind ``explanation_quality``) and its reader (``from_summary``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from audit.jsonsafe import finite_or_none

KIND = "explanation_quality"
RANDOM_MAP = "random"


@dataclass(frozen=True)
class SanityOutcome:
    steps: tuple[str, ...]
    correlations: dict[str, list[float]]  # method -> rank correlation with the trained maps, per step
    flagged: dict[str, bool]
    threshold: float
    samples: int
    status: dict[str, str] = field(default_factory=dict)  # changed | unchanged | undefined
    reasons: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExplanationQuality:
    """Mean deletion/insertion curves and AUCs per method (plus ``random``), and the sanity check."""

    samples: int
    fractions: tuple[float, ...]
    deletion: dict[str, list[float]]
    insertion: dict[str, list[float]]
    deletion_auc: dict[str, Optional[float]]
    insertion_auc: dict[str, Optional[float]]
    sanity: Optional[SanityOutcome] = None
    methods: tuple[str, ...] = field(default=())

    def beats_random(self, method: str) -> bool:
        """A faithful map makes the probability fall faster than a random one: lower deletion AUC."""
        d, r = self.deletion_auc.get(method), self.deletion_auc.get(RANDOM_MAP)
        return d is not None and r is not None and d < r

    def to_summary(self) -> dict[str, Any]:
        s: dict[str, Any] = {"samples": self.samples, "fractions": list(self.fractions), "deletion": self.deletion,
                             "insertion": self.insertion, "deletion_auc": self.deletion_auc,
                             "insertion_auc": self.insertion_auc, "methods": list(self.methods)}
        if self.sanity is not None:
            s["sanity"] = {"steps": list(self.sanity.steps), "correlations": self.sanity.correlations,
                           "flagged": self.sanity.flagged, "threshold": self.sanity.threshold,
                           "samples": self.sanity.samples, "status": dict(self.sanity.status),
                           "reasons": dict(self.sanity.reasons)}
        return s

    @classmethod
    def from_summary(cls, s: Mapping[str, Any]) -> "ExplanationQuality":
        san = s.get("sanity") or None
        sanity = None if not san else SanityOutcome(
            steps=tuple(san.get("steps") or ()), correlations={k: list(v) for k, v in (san.get("correlations") or {}).items()},
            flagged={k: bool(v) for k, v in (san.get("flagged") or {}).items()},
            threshold=float(san.get("threshold", 0.5)), samples=int(san.get("samples") or 0),
            status={k: str(v) for k, v in (san.get("status") or {}).items()},
            reasons={k: str(v) for k, v in (san.get("reasons") or {}).items()})
        d_auc = {k: finite_or_none(v) for k, v in (s.get("deletion_auc") or {}).items()}
        methods = tuple(s.get("methods") or (m for m in d_auc if m != RANDOM_MAP))
        return cls(samples=int(s.get("samples") or 0), fractions=tuple(s.get("fractions") or ()),
                   deletion=dict(s.get("deletion") or {}), insertion=dict(s.get("insertion") or {}),
                   deletion_auc=d_auc, insertion_auc={k: finite_or_none(v) for k, v in (s.get("insertion_auc") or {}).items()},
                   sanity=sanity, methods=methods)


def explanation_quality(model: nn.Module, x: torch.Tensor, targets: Sequence[int], maps: Mapping[str, np.ndarray], *,
                        layer: Optional[str], steps: int, sanity_methods: Sequence[str], sanity_samples: int,
                        sanity_max_steps: int = 4, ig_steps: int = 16, seed: int = 0) -> ExplanationQuality:
    """Deletion and insertion curves of each map (and of a seeded random map) on inputs ``x``; the sanity
    check of ``sanity_methods`` on the first ``sanity_samples`` inputs."""
    from audit.quality import deletion_curve, insertion_curve, sanity_check

    if x.shape[0] != len(targets):
        raise ValueError(f"{x.shape[0]} inputs but {len(targets)} targets; give one target per input")
    t = torch.tensor(list(targets), device=x.device)
    g = torch.Generator().manual_seed(seed)
    random_map = torch.rand((x.shape[0], x.shape[2], x.shape[3]), generator=g)
    fractions: list[float] = []
    curves: dict[str, dict[str, Any]] = {"deletion": {}, "insertion": {}, "deletion_auc": {}, "insertion_auc": {}}
    for name, attr in [*((m, torch.as_tensor(a)) for m, a in maps.items()), (RANDOM_MAP, random_map)]:
        d = deletion_curve(model, x, t, attr.to(x.device), steps=steps)
        i = insertion_curve(model, x, t, attr.to(x.device), steps=steps)
        fractions = d.fractions.tolist()
        curves["deletion"][name] = d.curves.mean(0).tolist()
        curves["insertion"][name] = i.curves.mean(0).tolist()
        curves["deletion_auc"][name] = float(d.auc.mean())
        curves["insertion_auc"][name] = float(i.auc.mean())
    n = min(sanity_samples, x.shape[0])
    sanity = None
    if sanity_methods and n:
        res = sanity_check(model, x[:n], t[:n], list(sanity_methods), layer=layer, max_steps=sanity_max_steps,
                           ig_steps=ig_steps)
        sanity = SanityOutcome(tuple(res.steps), {k: [float(v) for v in vs] for k, vs in res.correlations.items()},
                               {k: bool(v) for k, v in res.flagged.items()}, float(res.threshold), n,
                               status=dict(res.status), reasons={k: res.reason(k) for k in res.status})
    return ExplanationQuality(samples=x.shape[0], fractions=tuple(fractions), sanity=sanity, methods=tuple(maps),
                              **curves)
