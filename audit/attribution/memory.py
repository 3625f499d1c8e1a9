"""The memory budget that sizes the engine's internal batches (IG path points, SmoothGrad copies,
occlusion windows): ``AUDIT_MEMORY_MB`` when set, else a share of the machine's available memory.
"""

from __future__ import annotations

import os

ENV_VAR = "AUDIT_MEMORY_MB"
# Without AUDIT_MEMORY_MB: a quarter of the available RAM (others share the machine), at most 1 GiB.
AVAILABLE_SHARE = 0.25
DEFAULT_CAP_BYTES = 1 << 30
ERR_BAD_ENV = "AUDIT_MEMORY_MB must be a positive number of megabytes, got {value!r}"


def available_bytes() -> int | None:
    """Available physical memory, from psutil when installed, else os.sysconf; None when unknown."""
    try:
        import psutil  # type: ignore[import-not-found]

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def cpu_budget_bytes(environ: dict[str, str] | None = None) -> int:
    """Activation bytes one internal batch may use on CPU."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV_VAR)
    if raw is not None and raw.strip():
        try:
            mb = float(raw)
        except ValueError:
            raise ValueError(ERR_BAD_ENV.format(value=raw)) from None
        if not mb > 0:
            raise ValueError(ERR_BAD_ENV.format(value=raw))
        return max(1, int(mb * (1 << 20)))
    avail = available_bytes()
    if avail is None:
        return DEFAULT_CAP_BYTES
    return max(1 << 26, min(DEFAULT_CAP_BYTES, int(avail * AVAILABLE_SHARE)))


# On CPU a batch whose activations outgrow the caches costs more per sample, not less: EfficientNet-Lite0 at
# 3x224x224 (one thread) takes 28-30 ms a sample forward at 2-8 samples per batch and 78 ms at 64; forward and
# backward 58 ms at 2 and 80 ms at 16. Batches are therefore sized by input elements on CPU: about seven such
# images forward, a third of that with gradients. Small inputs (the demo's 32 px digits) keep batches of 64.
CPU_BATCH_INPUT_ELEMENTS = 1 << 20
CPU_BATCH_CAP = 64


def batch_for(sample_numel: int, *, device: object = "cpu", with_grad: bool = False, cap: int = CPU_BATCH_CAP) -> int:
    """Samples per model evaluation for inputs of ``sample_numel`` elements each: on CPU sized to stay
    in cache (see CPU_BATCH_INPUT_ELEMENTS), at least 1 and at most ``cap``; on an accelerator ``cap``."""
    if getattr(device, "type", str(device).split(":")[0]) != "cpu":
        return cap
    budget = CPU_BATCH_INPUT_ELEMENTS // (3 if with_grad else 1)
    return int(max(1, min(cap, budget // max(1, int(sample_numel)))))
