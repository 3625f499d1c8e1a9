"""Concept tests (TCAV) on registered image and text models: concept sets, random counterparts from the
reference data, significance over random runs, stored results and version comparisons.

A text model's concepts are stored text datasets (example sentences of the concept) or the
``random-reference`` control; its layers are the blocks of its encoder stack, read through the [CLS]
vector of each block's hidden states."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Optional, Sequence

import torch

from audit.concepts.tcav import MIN_RUNS  # noqa: F401 - the page offers this minimum
from audit.images import image_to_tensor
from audit.models.tasks import input_kind
from audit.multiple_testing import CORRECTIONS, DEFAULT_CORRECTION, check_correction  # noqa: F401 - the page offers these
from audit.results import AnalysisSpec, ConceptCell, ConceptTest
from audit.services.auth import SYSTEM, Principal, require
from audit.services.core import analysis_key, find_analysis, store_analysis, stored_analyses, tracked_run
from audit.services.datasets import load_image_samples, load_text_samples
from audit.services.handles import handle_for
from audit.services.predict import require_finite, text_predict_proba
from storage.db import database_url

GENERATED_CONCEPTS = ("watermark", "stripes", "texture", "random-reference")
TEXT_GENERATED_CONCEPTS = ("random-reference",)  # drawn from the text reference set, like the counterparts
TEXT = "text-classification"
Progress = Optional[Callable[[float, str], None]]
TCAV_SPEC = AnalysisSpec(
    kind="tcav",
    result_options=("concepts", "target", "layers", "dataset", "n_random", "set_size", "n_inputs", "alpha",
                    "correction", "test", "seed"),
    other_arguments=("actor", "progress"),
)


class ConceptError(ValueError):
    """A concept test that cannot run; the message says why."""


def _encoder_blocks(module: torch.nn.Module) -> list[str]:
    """The blocks of a transformer's main stack: the children of its longest ``nn.ModuleList``."""
    lists = [(name, m) for name, m in module.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m)]
    if not lists:
        return []
    name, stack = max(lists, key=lambda nm: len(nm[1]))
    return [f"{name}.{i}" for i in range(len(stack))]


def layer_choices(family: str, version: str) -> list[str]:
    """Named blocks a concept test can probe: top-level children and their direct children with parameters;
    for a text model, the blocks of its encoder stack (their hidden states carry the [CLS] vector)."""
    handle = handle_for(family, version)
    if handle.task == TEXT:
        blocks = _encoder_blocks(handle.module)
        if not blocks:
            raise ConceptError("no encoder stack (a list of transformer blocks) was found in this text model")
        return blocks
    names = []
    for name, module in handle.module.named_modules():
        depth = name.count(".")
        if name and depth <= 1 and any(True for _ in module.parameters()):
            names.append(name)
    try:  # the default layers may sit deeper (a block inside the last stage, a transformer's blocks)
        return names + [n for n in default_layers(family, version) if n not in names]
    except ConceptError:
        return names


def default_layers(family: str, version: str) -> list[str]:
    """The engine's choice (``audit.concepts.layers.choose_tcav_layers``): the last two blocks of the model's main
    stack whose class gradient changes with the input, on any architecture; probed once per model version."""
    handle = handle_for(family, version)
    shape = tuple(handle.input_spec.shape) if handle.input_spec is not None else None
    return list(_probed_layers(database_url(), family, version, handle.sha256, shape))


PROBE_TEXTS = ("A short first sentence.", "Another text, with other words and a number: 42!",
               "Is this the third probe, longer than both of the others?")


@lru_cache(maxsize=32)
def _probed_layers(database: str, family: str, version: str, sha256: str, shape: Optional[tuple]) -> tuple[str, ...]:
    from audit.concepts.layers import choose_tcav_layers

    handle = handle_for(family, version)
    if handle.task == TEXT:
        probe: Any = list(PROBE_TEXTS)
    elif shape is not None:
        probe = torch.randn(3, *shape, generator=torch.Generator().manual_seed(0)).to(handle.device)
    else:
        raise ConceptError("this model declares no input shape, so its layers cannot be probed; name the layers")
    with handle.lock:
        try:
            return tuple(choose_tcav_layers(handle.module, probe, tokenizer=handle.tokenizer).layers)
        except ValueError as exc:
            raise ConceptError(str(exc)) from exc


def concept_examples(name: str, *, n: int, seed: int, dataset: str,
                     pool: Optional[torch.Tensor] = None, model: Any = None) -> torch.Tensor:
    """A concept set in the model's view of the reference images (pixel values in [0, 1]); without
    ``model``, at the stored reference images' size (which must be one).

    Generated concepts are drawn with ``seed``; a stored image dataset is resampled with it (n of its
    images without replacement), so every run of a test sees a fresh sample either way.
    ``random-reference`` is a control: a set drawn like the random counterparts (from ``pool``, default
    the whole reference set), which should never come out significant."""
    from audit.concepts import stripes_concept, texture_concept, watermark_concept

    ref = load_image_samples(dataset, model=model)
    size, channels = ref.images.shape[-1], ref.images.shape[1]
    if name == "watermark":
        backgrounds = ref.images[torch.tensor([not g.get("watermark", False) for g in ref.groups])]
        return watermark_concept(n, size=size, channels=channels, seed=seed, backgrounds=backgrounds)
    if name == "stripes":
        return stripes_concept(n, size=size, channels=channels, seed=seed)
    if name == "texture":
        return texture_concept(n, size=size, channels=channels, seed=seed)
    if name == "random-reference":
        source = ref.images if pool is None else pool
        return _resample(source, n, seed + 991)
    return _resample(stored_concept_images(name, model=model), n, seed)


def _resample(examples: Any, n: int, seed: int) -> Any:
    """``n`` of the examples (a tensor of images or a list of texts) without replacement, drawn with ``seed``."""
    g = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(examples), generator=g)[:n]
    return examples[order] if isinstance(examples, torch.Tensor) else [examples[i] for i in order.tolist()]


def text_concept_examples(name: str, *, n: int, seed: int, dataset: str,
                          pool: Optional[Sequence[str]] = None) -> list[str]:
    """A text concept set: ``n`` texts of a stored text dataset, resampled with ``seed`` (so every run sees
    a fresh sample), or the ``random-reference`` control drawn from ``pool`` (default: the reference set),
    as :func:`concept_examples` does for images."""
    if name == "random-reference":
        return _resample(list(load_text_samples(dataset).texts if pool is None else pool), n, seed + 991)
    try:
        return _resample(load_text_samples(name).texts, n, seed)
    except ValueError:
        raise ConceptError(f"unknown concept {name!r}: use random-reference or the name of a stored text "
                           "dataset") from None


def stored_concept_images(name: str, *, model: Any = None) -> torch.Tensor:
    """A stored concept set's images, prepared as ``model`` declares (its resize and crop)."""
    try:
        return load_image_samples(name, model=model).images
    except ValueError:
        raise ConceptError(f"unknown concept {name!r}: use one of {', '.join(GENERATED_CONCEPTS)} "
                           "or the name of a stored image dataset") from None


def concept_hashes(concepts: Sequence[str], task: str = "image-classification") -> dict[str, str]:
    """Content hashes of the concepts that are stored datasets (they enter the result key); a name that is
    neither a generated concept of the model's kind nor a stored dataset of that kind raises ConceptError.
    The job queue and the full audit check a request with it before anything runs."""
    from audit.services.datasets import DatasetError, dataset_sha256

    kind = input_kind(task)
    generated = TEXT_GENERATED_CONCEPTS if kind == "text" else GENERATED_CONCEPTS
    out = {}
    for c in concepts:
        if c in generated:
            continue
        unknown = ConceptError(f"unknown concept {c!r}: use one of {', '.join(generated)} "
                               f"or the name of a stored {kind} dataset")
        if c in GENERATED_CONCEPTS:  # an image generator named for a text model
            raise unknown
        try:
            out[c] = dataset_sha256(c, task)
        except DatasetError:
            raise unknown from None
    return out


def run_concept_test(
    family: str, version: str, *, concepts: Sequence[str], target: int, layers: Optional[Sequence[str]] = None,
    dataset: str = "digits-reference", n_random: int = 10, set_size: int = 40, n_inputs: int = 60,
    alpha: float = 0.05, correction: str = DEFAULT_CORRECTION, test: str = "ttest", seed: int = 0,
    actor: Principal = SYSTEM,
    progress: Progress = None,
) -> ConceptTest:
    """Run (or return the stored) TCAV test of each concept for one class."""
    from audit.concepts import random_pool_sets, run_tcav_many, significance, two_sided_ttest
    from audit.concepts.stats import pseudo_concept_test
    from audit.concepts.tcav import ERR_N_RANDOM, MIN_CAV_ACCURACY

    require(actor, "run")
    if not concepts:
        raise ConceptError("choose at least one concept")
    if n_random < MIN_RUNS:
        raise ConceptError(ERR_N_RANDOM.format(min=MIN_RUNS, max="n_random + 1", value=n_random))
    if test not in ("ttest", "pseudo_concept"):
        raise ConceptError(f"test must be 'ttest' or 'pseudo_concept', got {test!r}")
    try:
        check_correction(correction)
    except ValueError as exc:
        raise ConceptError(str(exc)) from None
    handle = handle_for(family, version)
    if not 0 <= target < len(handle.labels):
        raise ConceptError(f"target {target} is not a class of this model")
    layers = list(layers or default_layers(family, version))
    given = dict(locals())
    params = {name: given[name] for name in TCAV_SPEC.result_options}
    params["concepts"] = sorted(concepts)
    ref_hash = _dataset_hash(dataset, handle)
    key = analysis_key(TCAV_SPEC, model_sha256=handle.sha256, dataset_sha256=ref_hash, options=params,
                       inputs=sorted(concept_hashes(concepts, handle.task).items()))
    cached = find_analysis("tcav", family, version, key)
    if cached is not None:
        return ConceptTest.from_stored(cached)
    text = handle.task == TEXT
    try:
        ref = load_text_samples(dataset, model=handle) if text else load_image_samples(dataset, model=handle)
    except ValueError as exc:
        raise ConceptError(str(exc)) from None
    class_idx = [i for i, y in enumerate(ref.labels) if y == target]
    if len(class_idx) < 5:
        raise ConceptError(f"dataset {dataset} has only {len(class_idx)} samples of class {handle.labels[target]}")
    with tracked_run("tcav", family=family, version=version, parameters=params, actor=actor, seed=seed,
                     device=str(handle.device)) as run:
        # Random counterparts come from the reference data, minus samples annotated as carrying a tested
        # concept (e.g. group "watermark"): a random set half made of the concept cannot separate from it.
        # A group value counts as a flag as imports store it: True, or "yes"/"true"/"1" from a CSV.
        from audit.datasets.tables import flag_value

        keep = [i for i, g in enumerate(ref.groups) if not any(flag_value(g.get(c)) is True for c in concepts)]
        null = "all_pairs" if test == "pseudo_concept" else "cycle"
        # Each run draws a fresh concept sample as well as a fresh random counterpart, so the spread of the
        # concept's scores includes concept sampling: with one fixed concept set the t-test against the
        # random-vs-random null rejects far more often than alpha (docs/DECISIONS.md).
        run_seeds = [seed + 7919 * (r + 1) for r in range(n_random)]
        input_keys = [ref.keys[i] for i in class_idx[:n_inputs]]
        if text:
            pool: Any = [ref.texts[i] for i in keep]
            inputs: Any = [ref.texts[i] for i in class_idx[:n_inputs]]
            text_predict_proba(family, version)(inputs, keys=input_keys)  # raises NonFiniteOutputs naming them
            randoms: Any = random_pool_sets(pool, n_random + 1, set_size, seed=seed)
            concept_sets: Any = {f"{c}#{r}": text_concept_examples(c, n=set_size, seed=s, dataset=dataset, pool=pool)
                                 for c in concepts for r, s in enumerate(run_seeds)}
        else:
            to_model = lambda x: handle.input_spec.normalize(image_to_tensor(x, handle.input_spec))  # noqa: E731
            inputs = to_model(ref.images[class_idx[:n_inputs]])
            # class-input outputs that are NaN would make every directional derivative meaningless
            require_finite(handle.predict_proba(inputs.to(handle.device)), input_keys)
            pool = ref.images[keep]
            randoms = [to_model(r) for r in random_pool_sets(pool, n_random + 1, set_size, seed=seed)]
            concept_sets = {f"{c}#{r}": to_model(concept_examples(c, n=set_size, seed=s, dataset=dataset, pool=pool,
                                                                 model=handle))
                            for c in concepts for r, s in enumerate(run_seeds)}
        with run.phase("tcav"), handle.lock:
            try:
                res = run_tcav_many(handle.module, layers, concept_sets, randoms, inputs, target, alpha=alpha,
                                    correction=correction, test="ttest", null=null, n_random=n_random, seed=seed,
                                    progress=progress, tokenizer=handle.tokenizer if text else None)
            except ValueError as exc:
                raise ConceptError(str(exc)) from exc
        raw = []
        for c in concepts:
            for layer in layers:
                runs = [res.concepts[f"{c}#{r}"].layers[layer] for r in range(n_random)]
                # Run r pairs concept sample r with random set r.
                scores = [lr.scores[r] for r, lr in enumerate(runs)]
                mags = [lr.magnitudes[r] for r, lr in enumerate(runs)]
                accs = [lr.cav_accuracies[r] for r, lr in enumerate(runs)]
                null_scores = list(runs[0].random_scores)
                if test == "ttest":
                    _, p = two_sided_ttest(scores, null_scores)
                else:
                    # every run's concept score against the random sets used as pseudo-concepts
                    means = torch.tensor(null_scores, dtype=torch.float64).reshape(n_random, n_random - 1).mean(1)
                    _, p = pseudo_concept_test(scores, means.tolist())
                raw.append((c, layer, scores, mags, accs, null_scores, p))
        corrected, decisions = significance([r[-1] for r in raw], alpha=alpha, correction=correction)
        cells = []
        for (c, layer, scores, mags, accs, null_scores, p), pc, sig in zip(raw, corrected, decisions):
            rs = torch.tensor(null_scores, dtype=torch.float64)
            acc = float(sum(accs) / len(accs))
            cells.append(ConceptCell(
                concept=c, layer=layer, score=float(sum(scores) / len(scores)),
                magnitude=float(sum(mags) / len(mags)), p_value=float(p), p_value_corrected=float(pc),
                significant=bool(sig), cav_accuracy=acc, random_mean=float(rs.mean()),
                random_std=float(rs.std()) if len(rs) > 1 else 0.0, low_cav_accuracy=acc < MIN_CAV_ACCURACY,
                scores=tuple(float(v) for v in scores), random_scores=tuple(float(v) for v in null_scores)))
        result = ConceptTest(
            target=target, target_label=handle.labels[target], alpha=alpha, correction=correction, test=test,
            n_random=res.n_random, layers=tuple(layers), cells=tuple(cells),
            concept_hashes={c: [res.concepts[f"{c}#{r}"].concept_hash for r in range(n_random)] for c in concepts},
            random_hashes=tuple(res.random_hashes), inputs_hash=res.inputs_hash, random_pool_size=len(keep),
            concept_resampled_per_run=True)
        stored = store_analysis("tcav", family, version, key=key, parameters=params, summary=result.to_summary(),
                                actor=actor, dataset=dataset, seed=seed, device=str(handle.device),
                                duration_s=run.elapsed, run_id=run.run_id)
    return ConceptTest.from_stored(stored)


def stored_concept_tests(family: str, version: str) -> list[ConceptTest]:
    """Every stored concept test of a version, oldest first."""
    return [ConceptTest.from_stored(r) for r in stored_analyses(family, version, "tcav")]


def _dataset_hash(name: str, handle: Any) -> str:
    from audit.services.datasets import DatasetError, dataset_key, dataset_sha256

    try:
        dataset_sha256(name, handle.task)  # the set must hold the model's kind
        return dataset_key(name, handle)
    except DatasetError as exc:
        raise ConceptError(str(exc)) from None


def concept_examples_preview(concept: str, *, dataset: str = "digits-reference", n: int = 8,
                             seed: int = 0, family: Optional[str] = None, version: Optional[str] = None) -> list[Any]:
    """A few examples of a concept set, for the page: [H, W] or [H, W, 3] arrays in [0, 1] for an image
    reference set (in the model's view when ``family`` and ``version`` are given), the texts themselves for
    a text one."""
    from audit.services.datasets import list_datasets

    if {d["name"]: d["kind"] for d in list_datasets()}.get(dataset) == "text":
        return text_concept_examples(concept, n=n, seed=seed, dataset=dataset)
    model = handle_for(family, version) if family and version else None
    x = concept_examples(concept, n=n, seed=seed, dataset=dataset, model=model)
    return [img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy() for img in x]
