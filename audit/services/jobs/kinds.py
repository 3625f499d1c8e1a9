"""What a kind of job is (the permission it needs, how its parameters are checked when it is submitted, which
service runs it) and the parameter checks the kinds share. Each analysis declares its own kinds
(``audit/services/analyses/<name>/job.py``); the queue lists those of every registered analysis (``job_kinds``).
A job never re-implements an analysis: it calls the same use case the pages and the CLI call, with a progress
callback where that service takes one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

from audit.services.governance.principals import Principal

Progress = Callable[[float, str], None]


class JobError(ValueError):
    """A job request that cannot be accepted or acted on; the message says what is wrong."""


@dataclass
class JobContext:
    """What the worker hands a running job: its progress callback (which raises at a batch boundary when
    the job must stop) and the batch executor of sample-sharded kinds."""

    progress: Progress
    executor: Any = None


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str  # as people say it
    permissions: tuple[str, ...]
    check: Callable[[Mapping[str, Any]], dict[str, Any]]  # -> the parameters as stored
    run: Callable[[dict[str, Any], Principal, JobContext], dict[str, Any]]  # -> the result pointer
    shardable: bool = False  # the Ray executor spreads its samples over a cluster

    def subject(self, params: Mapping[str, Any]) -> str:
        if "base" in params:
            return f"{params['family']}/{params['base']}->{params['new']}"
        return f"{params['family']}/{params['version']}"


# ------------------------------------------------------------------ parameter checks (one-line errors)
# Shared by the analyses' job kinds. The queue lists kinds without running one, so what a check needs from
# the engine or the registry (both load torch) is imported when the check runs.

def no_extra(params: Mapping[str, Any], allowed: Sequence[str], kind: str) -> None:
    extra = sorted(set(params) - set(allowed))
    if extra:
        raise JobError(f"{kind}: unknown parameter(s) {', '.join(extra)}; allowed: {', '.join(allowed)}")


def int_param(params: Mapping[str, Any], name: str, default: Optional[int], *, lo: int, hi: int = 1_000_000,
              optional: bool = False) -> Optional[int]:
    value = params.get(name, default)
    if value is None:
        if optional:
            return None
        raise JobError(f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value))
        except ValueError:
            raise JobError(f"{name} must be a whole number, got {value!r}") from None
    if not lo <= value <= hi:
        raise JobError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def float_param(params: Mapping[str, Any], name: str, default: float, *, lo: float, hi: float) -> float:
    value = params.get(name, default)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise JobError(f"{name} must be a number, got {value!r}") from None
    if not lo <= value <= hi:
        raise JobError(f"{name} must be between {lo:g} and {hi:g}, got {value:g}")
    return value


def names_param(params: Mapping[str, Any], name: str, *, required: bool = False) -> list[str]:
    value = params.get(name) or []
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise JobError(f"{name} must be a list of names")
    if required and not value:
        raise JobError(f"{name}: give at least one")
    return list(dict.fromkeys(value))


def version_param(params: Mapping[str, Any], key: str = "version", *, image_only: bool = False) -> dict[str, Any]:
    from audit.services.core.registry import RegistryError, get_version  # deferred: loads torch

    family, version = params.get("family"), params.get(key)
    if not family or not version:
        raise JobError(f"family and {key} are required")
    try:
        info = get_version(str(family), str(version))
    except RegistryError as exc:
        raise JobError(str(exc)) from None
    if image_only and info["task"] != "image-classification":
        raise JobError(f"{family} {version} is a text model; this job applies to image models")
    return info


def dataset_param(name: Any, kind: str, *, what: str = "dataset") -> str:
    from audit.services.core.datasets import list_datasets  # deferred: loads torch

    if not name or not isinstance(name, str):
        raise JobError(f"{what} is required")
    stored = {d["name"]: d["kind"] for d in list_datasets()}
    if name not in stored:
        raise JobError(f"{what} {name!r} does not exist")
    if stored[name] != kind:
        raise JobError(f"{what} {name!r} holds {stored[name]} samples, not {kind}s")
    return name


def options_param(options: Any) -> dict[str, Any]:
    from audit.attribution import AttributionOptions  # deferred: loads torch

    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise JobError("options must be a mapping of attribution option names to values")
    if "progress" in options:
        raise JobError("progress is not an option of a job: the worker reports progress")
    try:
        AttributionOptions.from_kwargs(**{k: v for k, v in options.items() if k != "layer"})
    except (TypeError, ValueError) as exc:
        raise JobError(str(exc).splitlines()[0]) from None
    return dict(options)


def methods_param(value: Any, *, required: bool = True) -> list[str]:
    from audit.attribution.registry import check_methods  # deferred: loads torch

    names = names_param({"methods": value}, "methods", required=required)
    try:
        return list(check_methods(names))
    except (TypeError, ValueError) as exc:
        raise JobError(str(exc).splitlines()[0]) from None
