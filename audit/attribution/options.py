"""Option declarations, the catalogue of method classes, and the validated option set of one attribution run.

Each method declares its own options (``Option`` objects, see audit.declarations) in its module; the
engine declares the few options that belong to the run (batch sizes, precision, progress).
``AttributionOptions`` holds one value per declared name, so unknown names fail loudly instead of being ignored.
"""

from __future__ import annotations

from typing import Callable, Literal, Mapping, Union, get_args

import torch

from audit.catalogue import Catalogue
from audit.declarations import (  # noqa: F401 - the checks the method modules declare options with
    Option,
    OptionSet,
    OptionsView,
    boolean,
    callable_or_none,
    in_closed,
    in_open,
    integer,
    non_negative,
    one_of,
    optional_boolean,
    optional_positive,
    optional_positive_int,
    positive,
    positive_int,
)

# Method names are whatever the registered classes call themselves (see registry.METHODS); a
# Literal here would be a second list to keep in step with the method files.
MethodName = str

BaselineName = Literal["zeros", "ones", "blur", "uniform"]
BASELINE_NAMES: tuple[str, ...] = get_args(BaselineName)
# None means zeros; a tensor is a dataset mean (or any reference) broadcast to the inputs.
BaselineSpec = Union[None, str, float, torch.Tensor]

ProgressFn = Callable[[float, str], None]

# ---- options shared by several methods ---------------------------------------------------------

SEED = Option("seed", 0, "seed of the method's random draws (per sample: mixed with a hash of the sample)",
              check=integer)
BLUR_SIGMA = Option("blur_sigma", None, "Gaussian sigma of 'blur' references (None: 1/16 of the shorter side)",
                    check=optional_positive)
# The engine applies these to the evaluations a method makes on its inference path; a method lists
# them when it evaluates there (perturbed inputs, path points, noisy copies), since they change its numbers.
FAST = Option("fast", False, "bf16 autocast + channels-last for the many-evaluation methods, if a fidelity "
              "guard passes", check=boolean)
FAST_MIN_RANK_CORR = Option("fast_min_rank_corr", 0.9, "saliency rank correlation bf16 vs float32 that the "
                            "fast path must reach to be used", check=in_closed(-1.0, 1.0))
INFERENCE_PATH: tuple[Option, ...] = (FAST, FAST_MIN_RANK_CORR)

# ---- options of the run itself (never part of a method's result) -------------------------------

BATCH_SIZE = Option("batch_size", None, "samples per model evaluation (None: sized from the memory budget)",
                    result=False, check=optional_positive_int)
MEMORY_BUDGET_BYTES = Option("memory_budget_bytes", None, "activation memory per evaluation (None: half the "
                             "free CUDA memory; on CPU AUDIT_MEMORY_MB, else a quarter of free RAM up to 1 GiB)",
                             result=False, check=optional_positive_int)
OPTIMIZE = Option("optimize", None, "evaluate the many-evaluation methods on a BatchNorm-folded, channels-last "
                  "copy (None: when at least 64 evaluations are planned on a conv model); the copy is checked "
                  "to compute the same logits, so maps change at float rounding only",
                  result=False, exact=False, check=optional_boolean)
INCREMENTAL = Option("incremental", None, "on the optimised copy, re-evaluate only the region a local change "
                     "(an occlusion window) reaches, layer by layer, when the copy is a traced graph (None: on CPU; "
                     "True: also on a GPU; False: full forwards); the same sums in crops, so maps change at float rounding at most",
                     result=False, exact=False, check=optional_boolean)
PROGRESS = Option("progress", None, "callback(fraction, method name) after each method", result=False,
                  check=callable_or_none)
ENGINE_OPTIONS: tuple[Option, ...] = (
    BATCH_SIZE, MEMORY_BUDGET_BYTES, OPTIMIZE, INCREMENTAL, PROGRESS, FAST, FAST_MIN_RANK_CORR,
)


# The classes of audit.attribution.methods add themselves here (through registry.register) when their
# modules are imported. The catalogue lives below the registry and the method base because the option
# set validates against every registered method's declarations; registry.py is its public face.
CATALOGUE = Catalogue(f"{__package__}.methods", kind="attribution method", engine_options=ENGINE_OPTIONS)


def option_table() -> dict[str, Option]:
    """Every declared option (engine first, then each method's), by name."""
    return CATALOGUE.option_table()


class AttributionOptions(OptionSet):
    """Every option of one attribution run, with the declared defaults filled in; read as attributes.

    Build it with :meth:`from_kwargs` (validated against the declarations of the registered
    methods and the engine). Immutable: :meth:`replace` returns a new, validated set.
    """

    __slots__ = ()
    kind = "attribution"

    @classmethod
    def declared(cls) -> Mapping[str, Option]:
        return option_table()

    def check_together(self) -> None:
        for cls in CATALOGUE.registered().values():
            cls.check_options(self)  # type: ignore[attr-defined]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AttributionOptions):
            return NotImplemented
        return self.as_record() == other.as_record()

    def __repr__(self) -> str:
        return f"AttributionOptions({', '.join(f'{k}={v!r}' for k, v in sorted(self.as_record().items()))})"

    def as_record(self) -> dict[str, object]:
        """Plain-data view for storage and parameter hashing (tensors summarised by shape and sum)."""
        out: dict[str, object] = {}
        for name, value in self._values.items():
            if name == PROGRESS.name:
                continue
            if isinstance(value, torch.Tensor):
                value = {"tensor_shape": list(value.shape), "sum": float(value.double().sum())}
            out[name] = value
        return out
