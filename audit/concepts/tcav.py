"""TCAV (Kim et al., 2018, "Interpretability Beyond Feature Attribution: Testing with Concept
Activation Vectors"): concept scores per layer, tested against random CAVs with corrected p-values."""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
import sklearn
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from audit.concepts.capture import (
    LayerSpec,
    Representation,
    TextPooling,
    TextRepresentation,
    collect_activations,
    eval_mode,
    resolve_layers,
    target_gradients,
)
from audit.concepts.cav import CLASSIFIERS, ClassifierName, fit_in_span, pair_split
from audit.concepts.sets import set_sha256
from audit.concepts.stats import (
    ERR_ALPHA,
    TESTS,
    SignificanceTest,
    pseudo_concept_test,
    significance,
    two_sided_ttest,
)
from audit.jsonsafe import json_safe
from audit.multiple_testing import DEFAULT_CORRECTION, Correction, check_correction

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
ExampleSet = Any  # a tensor [N, ...] of model inputs, or a list of sentences for text models

MIN_CAV_ACCURACY = 0.7
RECOMMENDED_RUNS = 10

MIN_RUNS = 3
NullDesign = Literal["cycle", "all_pairs"]
NULL_DESIGNS: tuple[str, ...] = ("cycle", "all_pairs")

ERR_RANDOMS = (
    "randoms must be a list of at least {min} random example sets ({recommended} or more recommended), "
    "e.g. random_pool_sets(reference_images, 10, 50)"
)
ERR_N_RANDOM = "n_random must be between {min} and len(randoms) = {max}, got {value!r}"
ERR_NULL = "null must be 'cycle' or 'all_pairs', got {value!r}"


@dataclass
class LayerResult:
    """TCAV outcome for one concept at one layer.

    ``score`` is the mean over runs of the fraction of class inputs whose target-logit directional
    derivative along the CAV is positive; ``magnitude`` the mean over runs of
    sum(positive derivatives) / sum(|derivatives|). ``random_scores`` are the random-vs-random
    scores (the null distribution); the p-value is a two-sided t-test of ``scores`` against them,
    corrected over every concept x layer of the call.
    """

    layer: str
    score: float
    magnitude: float
    scores: list[float]
    magnitudes: list[float]
    random_scores: list[float]
    random_magnitudes: list[float]
    cav_accuracy: float
    cav_accuracies: list[float]
    random_cav_accuracies: list[float]
    low_cav_accuracy: bool
    t_statistic: float
    p_value: float
    p_value_corrected: float
    significant: bool


@dataclass
class TCAVResult:
    """One concept tested at every requested layer, with what is needed to store and recompute it."""

    concept: str
    target: int
    layers: dict[str, LayerResult]
    seed: int
    alpha: float
    correction: str
    n_tests: int
    n_random: int
    test: str
    null: str
    n_null: int
    concept_hash: str
    random_hashes: list[str]
    inputs_hash: str
    n_concept: int
    n_inputs: int
    classifier: str
    test_fraction: float
    min_cav_accuracy: float
    representation: str
    device: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (non-finite numbers become None)."""
        return json_safe(asdict(self))


@dataclass
class TCAVRunResult:
    """Several concepts tested in one call; p-values are corrected over concepts x layers together."""

    concepts: dict[str, TCAVResult]
    target: int
    layers: list[str]
    seed: int
    alpha: float
    correction: str
    n_tests: int
    n_random: int
    test: str
    null: str
    random_hashes: list[str]
    inputs_hash: str
    timings: dict[str, float] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per (concept, layer), for tables and reports."""
        out = []
        for name, res in self.concepts.items():
            for layer, lr in res.layers.items():
                out.append(
                    {
                        "concept": name,
                        "layer": layer,
                        "score": lr.score,
                        "magnitude": lr.magnitude,
                        "random_score_mean": float(np.mean(lr.random_scores)),
                        "cav_accuracy": lr.cav_accuracy,
                        "low_cav_accuracy": lr.low_cav_accuracy,
                        "p_value": lr.p_value,
                        "p_value_corrected": lr.p_value_corrected,
                        "significant": lr.significant,
                    }
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


def _is_text(examples: Any) -> bool:
    return isinstance(examples, (list, tuple)) and len(examples) > 0 and all(isinstance(s, str) for s in examples)


def _check_set(name: str, examples: Any, text: bool) -> None:
    if text:
        if not _is_text(examples):
            raise TypeError(f"{name} must be a non-empty list of strings, like the other sets of a text test")
        return
    if not isinstance(examples, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of model inputs [N, ...], got {type(examples).__name__}")
    if examples.ndim < 2 or len(examples) == 0:
        raise ValueError(f"{name} must be a non-empty batch [N, ...], got shape {tuple(examples.shape)}")


def _scores(dd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of directional derivatives [inputs, runs]: sign-count score and magnitude."""
    score = (dd > 0).mean(0)
    total = np.abs(dd).sum(0)
    positive = np.clip(dd, 0.0, None).sum(0)
    magnitude = np.divide(positive, total, out=np.zeros_like(total), where=total > 0)
    return score, magnitude


def _run_seed(seed: int, concept_index: int, counterpart: int) -> int:
    """A per-(set pair) seed, fixed across layers so a pair uses the same split at every layer."""
    return int(np.random.SeedSequence([seed, concept_index, counterpart]).generate_state(1)[0])


def null_pairs(n_concepts: int, runs: int, null: NullDesign) -> list[tuple[int, int]]:
    """(pseudo-concept, counterpart) set indices of the random-vs-random runs; random set i has
    index ``n_concepts + i``. ``cycle``: random i vs random i+1 (mod R), so every random set is
    once the pseudo-concept and once the counterpart; ``all_pairs``: every ordered pair i != j, as
    in the original TCAV implementation (R(R-1) CAVs)."""
    if null == "cycle":
        return [(n_concepts + i, n_concepts + (i + 1) % runs) for i in range(runs)]
    if null == "all_pairs":
        return [(n_concepts + i, n_concepts + j) for i in range(runs) for j in range(runs) if i != j]
    raise ValueError(ERR_NULL.format(value=null))


def _layer_scores(
    layer: str,
    acts: torch.Tensor,
    grads: torch.Tensor,
    pairs: Sequence[tuple[int, int]],
    sizes: Sequence[int],
    *,
    classifier: ClassifierName,
    test_fraction: float,
    seed: int,
    progress: Callable[[float], None],
) -> dict[str, np.ndarray]:
    """Scores, magnitudes and held-out CAV accuracies of every (pseudo-concept, counterpart) pair
    at one layer. ``acts`` [N, D] stacks all sets (sizes in order); ``grads`` is [inputs, D]."""
    bounds = np.cumsum([0, *sizes])
    a = acts.double()
    # all a CAV needs from the D-dimensional space, computed once per layer: the Gram matrix of
    # every example, and the class-input gradients against every example
    gram = (a @ a.T).cpu().numpy()
    grads_x_acts = (grads.double() @ a.T).cpu().numpy()
    del a
    if not (np.isfinite(gram).all() and np.isfinite(grads_x_acts).all()):
        raise ValueError(f"layer {layer!r} produced NaN or infinite activations or gradients; check the model and inputs")
    dd = np.zeros((grads_x_acts.shape[0], len(pairs)))
    accuracy = np.empty(len(pairs))
    # the per-CAV problems are tiny (n ~ 100): threaded BLAS only adds synchronisation, and
    # sklearn's per-call validation costs as much as the fit (the inputs were checked just above)
    with threadpool_limits(limits=1, user_api="blas"), sklearn.config_context(
        assume_finite=True, skip_parameter_validation=True
    ):
        for j, (ci, ri) in enumerate(pairs):
            pair_seed = _run_seed(seed, ci, ri)
            train_at, test_at, y_train, y_test = pair_split(sizes[ci], sizes[ri], test_fraction, pair_seed)
            rows = np.concatenate([np.arange(bounds[ci], bounds[ci + 1]), np.arange(bounds[ri], bounds[ri + 1])])
            fit = fit_in_span(gram, rows[train_at], rows[test_at], y_train, y_test, classifier=classifier,
                              seed=pair_seed)
            if fit.norm > 0:
                # = grads @ cav, with cav = acts[train].T @ coef / norm the unit CAV towards the concept
                dd[:, j] = grads_x_acts[:, fit.train_index] @ fit.coef / fit.norm
            accuracy[j] = fit.accuracy
            if (j + 1) % 10 == 0:
                progress((j + 1) / len(pairs))
    score, magnitude = _scores(dd)
    return {"score": score, "magnitude": magnitude, "accuracy": accuracy}


def run_tcav_many(
    model: nn.Module,
    layers: LayerSpec | Sequence[LayerSpec],
    concepts: Mapping[str, ExampleSet],
    randoms: Sequence[ExampleSet],
    inputs: ExampleSet,
    target: int,
    *,
    alpha: float = 0.05,
    correction: Correction = DEFAULT_CORRECTION,
    n_random: int | None = None,
    test: SignificanceTest = "ttest",
    null: NullDesign | None = None,
    seed: int = 0,
    classifier: ClassifierName = "sgd",
    test_fraction: float = 0.33,
    min_cav_accuracy: float = MIN_CAV_ACCURACY,
    batch_size: int = 64,
    tokenizer: Any = None,
    text_pooling: TextPooling = "cls",
    max_length: int = 128,
    progress: Progress | None = None,
) -> TCAVRunResult:
    """Test several concepts at several layers for one target class.

    With R = ``n_random`` random sets (default: all of ``randoms``), each concept gets R CAVs,
    concept vs ``randoms[i]``; the null distribution gets random-vs-random CAVs on the same sets
    (``null="cycle"``: ``randoms[i]`` vs ``randoms[i+1 mod R]``, R CAVs, each set once on each
    side so no single random set sets the null's level; ``"all_pairs"``: every ordered pair).

    ``test="ttest"`` (default, the original TCAV procedure): a two-sided Student t-test of the
    concept's R run scores against the null scores. It treats runs as independent although they
    share one concept set, so it is anti-conservative (random concept sets come out significant
    more often than ``alpha``). ``test="pseudo_concept"`` (needs ``null="all_pairs"``) compares
    the concept's mean score with the mean scores of the R random sets used as pseudo-concepts,
    which keeps the false-positive rate near ``alpha`` at the price of power.

    p-values are corrected (Holm by default, or Bonferroni) over all concepts x layers, and a
    result is significant only if the corrected p-value < ``alpha``.

    Work is shared: every set goes through one forward pass per batch capturing all layers; the
    class inputs go through one forward+backward per batch giving the gradients at all layers.
    Each CAV is a combination of its training activations (see :mod:`audit.concepts.cav`), so the
    directional derivatives of all CAVs come from one product of the gradients with the
    activations per layer, ``grads @ acts.T``, never from another backward pass.

    Image models take tensors. Text models (a Hugging Face sequence classifier) take lists of
    strings plus ``tokenizer``; the representation is the [CLS] vector (``text_pooling="cls"``) or
    the mean over non-pad tokens (``"mean"``) of each named layer's hidden states.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise TypeError(f"target must be a class index (int), got {type(target).__name__}")
    target = int(target)
    check_correction(correction)
    if not (isinstance(alpha, (int, float)) and 0.0 < float(alpha) < 1.0):
        raise ValueError(ERR_ALPHA.format(value=alpha))
    if classifier not in CLASSIFIERS:
        raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}")
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    if null is None:
        null = "all_pairs" if test == "pseudo_concept" else "cycle"
    if null not in NULL_DESIGNS:
        raise ValueError(ERR_NULL.format(value=null))
    if test == "pseudo_concept" and null != "all_pairs":
        raise ValueError("test='pseudo_concept' needs every random set as a pseudo-concept: use null='all_pairs'")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(concepts, Mapping) or len(concepts) == 0:
        raise ValueError("concepts must be a non-empty mapping {name: example set}")
    if not isinstance(randoms, Sequence) or isinstance(randoms, (str, torch.Tensor)) or len(randoms) < MIN_RUNS:
        raise ValueError(ERR_RANDOMS.format(min=MIN_RUNS, recommended=RECOMMENDED_RUNS))
    runs = len(randoms) if n_random is None else n_random
    if isinstance(runs, bool) or not isinstance(runs, int) or not MIN_RUNS <= runs <= len(randoms):
        raise ValueError(ERR_N_RANDOM.format(min=MIN_RUNS, max=len(randoms), value=n_random))
    if runs < RECOMMENDED_RUNS:
        log.warning("TCAV with %d random runs; %d or more give a more reliable null distribution", runs, RECOMMENDED_RUNS)

    text = _is_text(inputs)
    for name, examples in concepts.items():
        if not isinstance(name, str) or not name:
            raise ValueError("concept names must be non-empty strings")
        _check_set(f"concept {name!r}", examples, text)
    for i, examples in enumerate(randoms[:runs]):
        _check_set(f"randoms[{i}]", examples, text)
    _check_set("inputs", inputs, text)
    if not text:
        shape = tuple(inputs.shape[1:])
        for label, examples in [*((f"concept {n!r}", c) for n, c in concepts.items()),
                                *((f"randoms[{i}]", r) for i, r in enumerate(randoms[:runs]))]:
            if tuple(examples.shape[1:]) != shape:
                raise ValueError(f"{label} has examples of shape {tuple(examples.shape[1:])}, inputs have {shape}")

    resolved = resolve_layers(model, layers)
    names = [n for n, _ in resolved]
    modules = [m for _, m in resolved]
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    if text:
        if tokenizer is None:
            raise ValueError("text concepts need the model's tokenizer: pass tokenizer=...")
        rep: Representation = TextRepresentation(device, tokenizer, text_pooling, max_length)
    else:
        rep = Representation(device)

    def report(fraction: float, message: str) -> None:
        log.debug("tcav %.0f%%: %s", 100 * fraction, message)
        if progress is not None:
            progress(fraction, message)

    concept_names = list(concepts)
    n_concepts = len(concept_names)
    sets = [concepts[n] for n in concept_names] + list(randoms[:runs])
    sizes = [len(s) for s in sets]
    if any(s < 2 for s in sizes):
        raise ValueError("every concept and random set needs at least 2 examples (CAVs use a held-out split)")
    if text:
        stacked: Any = [s for group in sets for s in group]
    else:
        stacked = torch.cat([s.detach().to(sets[0].device, inputs.dtype) for s in sets])
    # every (pseudo-concept, counterpart) CAV of the call: concept runs first, then the null runs
    pairs = [(k, n_concepts + i) for k in range(n_concepts) for i in range(runs)]
    pairs += null_pairs(n_concepts, runs, null)
    n_null = len(pairs) - n_concepts * runs

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with eval_mode(model):
        report(0.0, "layer activations of concept and random sets")
        acts = collect_activations(model, modules, stacked, rep, batch_size=batch_size, layer_names=names)
        t1 = time.perf_counter()
        report(0.2, "target gradients of the class inputs")
        grads = target_gradients(model, modules, inputs, rep, target, batch_size=batch_size, layer_names=names)
        t2 = time.perf_counter()
    timings["activations_s"] = t1 - t0
    timings["gradients_s"] = t2 - t1

    per_layer: dict[str, dict[str, np.ndarray]] = {}
    for li, name in enumerate(names):
        per_layer[name] = _layer_scores(
            name,
            acts[li], grads[li], pairs, sizes, classifier=classifier, test_fraction=test_fraction, seed=seed,
            progress=lambda f, li=li, name=name: report(0.25 + 0.7 * (li + f) / len(names), f"CAVs at {name}"),
        )
    timings["cavs_and_scores_s"] = time.perf_counter() - t2

    def runs_of(values: np.ndarray, k: int) -> np.ndarray:
        return values[k * runs : (k + 1) * runs] if k < n_concepts else values[n_concepts * runs :]

    # t-tests, then one correction over the whole family of concept x layer tests
    raw: list[tuple[float, float]] = []
    for k in range(n_concepts):
        for name in names:
            m = per_layer[name]
            concept_scores, null_scores = runs_of(m["score"], k), runs_of(m["score"], n_concepts)
            if test == "ttest":
                raw.append(two_sided_ttest(concept_scores, null_scores))
            else:
                # all_pairs lists pseudo-concept i against its R - 1 counterparts contiguously
                raw.append(pseudo_concept_test(concept_scores, null_scores.reshape(runs, runs - 1).mean(1)))
    corrected, decisions = significance([p for _, p in raw], alpha=alpha, correction=correction)

    # what every concept's result and the run's result say about the run itself
    run_fields = dict(target=target, seed=seed, alpha=float(alpha), correction=correction, n_tests=len(raw),
                      n_random=runs, test=test, null=null, random_hashes=[set_sha256(s) for s in randoms[:runs]],
                      inputs_hash=set_sha256(inputs))
    results: dict[str, TCAVResult] = {}
    t = 0
    for k, cname in enumerate(concept_names):
        layer_results = {}
        for name in names:
            m = per_layer[name]
            t_stat, p = raw[t]
            acc = runs_of(m["accuracy"], k)
            layer_results[name] = LayerResult(
                layer=name,
                score=float(runs_of(m["score"], k).mean()),
                magnitude=float(runs_of(m["magnitude"], k).mean()),
                scores=[float(v) for v in runs_of(m["score"], k)],
                magnitudes=[float(v) for v in runs_of(m["magnitude"], k)],
                random_scores=[float(v) for v in runs_of(m["score"], n_concepts)],
                random_magnitudes=[float(v) for v in runs_of(m["magnitude"], n_concepts)],
                cav_accuracy=float(acc.mean()),
                cav_accuracies=[float(v) for v in acc],
                random_cav_accuracies=[float(v) for v in runs_of(m["accuracy"], n_concepts)],
                low_cav_accuracy=bool(acc.mean() < min_cav_accuracy),
                t_statistic=t_stat,
                p_value=p,
                p_value_corrected=float(corrected[t]),
                significant=bool(decisions[t]),
            )
            if layer_results[name].low_cav_accuracy:
                log.warning("concept %r at %s: held-out CAV accuracy %.2f < %.2f, the CAV may not capture it",
                            cname, name, acc.mean(), min_cav_accuracy)
            t += 1
        results[cname] = TCAVResult(
            concept=cname,
            layers=layer_results,
            **run_fields,
            n_null=n_null,
            concept_hash=set_sha256(concepts[cname]),
            n_concept=len(concepts[cname]),
            n_inputs=len(inputs),
            classifier=classifier,
            test_fraction=test_fraction,
            min_cav_accuracy=min_cav_accuracy,
            representation=rep.kind,
            device=str(device),
        )
    report(1.0, "done")
    return TCAVRunResult(concepts=results, layers=names, **run_fields, timings=timings)


def _with_options_of(source: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Show ``source``'s keyword-only options in the decorated function's signature in place of its
    ``**options`` (what ``help()`` and editors read), so the options and their defaults are written once."""
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(fn)
        params = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
        taken = {p.name for p in params}
        params += [p for p in inspect.signature(source).parameters.values()
                   if p.kind is p.KEYWORD_ONLY and p.name not in taken]
        fn.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
        return fn

    return decorate


@_with_options_of(run_tcav_many)
def run_tcav(
    model: nn.Module,
    layers: LayerSpec | Sequence[LayerSpec],
    concept: ExampleSet,
    randoms: Sequence[ExampleSet],
    inputs: ExampleSet,
    target: int,
    *,
    concept_name: str = "concept",
    **options: Any,
) -> TCAVResult:
    """Test one concept at the given layers (p-values corrected over the layers).

    ``options`` are those of :func:`run_tcav_many`, with its defaults (alpha, correction, n_random, test,
    null, seed, ...). ``result.layers[name]`` holds score, magnitude, random_scores, p_value,
    p_value_corrected, significant and cav_accuracy; see :func:`run_tcav_many` for the procedure.
    """
    run = run_tcav_many(model, layers, {concept_name: concept}, randoms, inputs, target, **options)
    return run.concepts[concept_name]
