"""Concept activation vectors: a scikit-learn linear classifier separating a concept's activations
from a random set's, trained on a stratified split with its accuracy measured on the held-out part.

The classifiers used here (L2-regularised SGD hinge / logistic regression) depend on the training
activations only through inner products, and their weight vector lies in the span of the training
rows. So each CAV is fitted in coordinates of that span (an isometric embedding built from the Gram
matrix of the activations): the same sklearn estimator, the same iterates and the same solution as
in the full D-dimensional space, but the cost no longer grows with D and all CAVs of a layer share
one Gram matrix (A @ A.T) and one product of the class-input gradients with the activations.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np

ClassifierName = Literal["sgd", "logistic"]
CLASSIFIERS: tuple[str, ...] = ("sgd", "logistic")

# eigen-directions of the training Gram matrix below this fraction of the largest one are
# rounding noise (duplicated or collinear examples), not part of the span
_RANK_TOL = 1e-10


@dataclass(frozen=True)
class CAV:
    """A unit vector in a layer's (pooled) activation space pointing TOWARDS the concept.

    ``accuracy`` is the classifier's accuracy on the held-out split (never the training split).
    """

    vector: np.ndarray
    accuracy: float
    n_train: int
    n_test: int


@dataclass(frozen=True)
class SpanCAV:
    """A CAV expressed over its training examples: ``vector = X_train.T @ coef / norm``.

    ``train_index`` indexes the rows of the activation matrix the Gram matrix was built from.
    """

    train_index: np.ndarray
    coef: np.ndarray
    norm: float
    accuracy: float
    n_test: int


def stratified_split(n_pos: int, n_neg: int, test_fraction: float, rng: np.random.Generator):
    """Index arrays (train_pos, test_pos, train_neg, test_neg); each class keeps >= 1 example per side."""
    out = []
    for n in (n_pos, n_neg):
        order = rng.permutation(n)
        n_test = min(n - 1, max(1, int(round(n * test_fraction))))
        out.extend([order[n_test:], order[:n_test]])
    return out[0], out[1], out[2], out[3]


def make_classifier(name: str, seed: int):
    """The sklearn estimator behind a CAV (also used by the benchmark to configure the peer)."""
    if name == "sgd":
        from sklearn.linear_model import SGDClassifier

        # the settings of the original TCAV implementation (hinge loss, alpha=0.01)
        return SGDClassifier(loss="hinge", alpha=0.01, max_iter=1000, tol=1e-3, random_state=seed)
    if name == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1.0, max_iter=1000)
    raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {name!r}")


def fit_in_span(
    gram: np.ndarray,
    train_index: np.ndarray,
    test_index: np.ndarray,
    y_train: np.ndarray,
    y_test: np.ndarray,
    *,
    classifier: ClassifierName,
    seed: int,
) -> SpanCAV:
    """Fit the classifier on span coordinates of the training rows, from the Gram matrix only.

    With K = X_tr X_tr^T = V diag(lam) V^T, the rows of Z = V sqrt(lam) are the training examples
    in an orthonormal basis of their span, and Z_test = X_te X_tr^T V / sqrt(lam) are the test
    examples projected on it. A weight c in that basis is w = X_tr^T V c / sqrt(lam) in the full
    space, with |w| = |c| (sklearn's ``coef_`` points towards label 1, the concept).
    """
    k_train = gram[np.ix_(train_index, train_index)]
    lam, vecs = np.linalg.eigh(k_train)
    keep = lam > _RANK_TOL * max(float(lam[-1]), 1e-300)
    lam, vecs = lam[keep], vecs[:, keep]
    if lam.size == 0:
        raise ValueError("the layer's activations of this concept/random pair are all zero; no CAV exists")
    to_coords = vecs / np.sqrt(lam)
    z_train = vecs * np.sqrt(lam)
    z_test = gram[np.ix_(test_index, train_index)] @ to_coords

    model = make_classifier(classifier, seed)
    with warnings.catch_warnings():
        # a CAV that did not converge is still reported; its held-out accuracy tells the story
        warnings.filterwarnings("ignore", message=".*converge.*")
        model.fit(z_train, y_train)
    if list(model.classes_) != [0, 1]:
        raise RuntimeError(f"unexpected classifier classes {model.classes_!r}")
    c = np.asarray(model.coef_, dtype=np.float64).reshape(-1)
    accuracy = float(np.mean(model.predict(z_test) == y_test))
    return SpanCAV(
        train_index=train_index,
        coef=to_coords @ c,
        norm=float(np.linalg.norm(c)),
        accuracy=accuracy,
        n_test=len(test_index),
    )


def pair_split(n_concept: int, n_random: int, test_fraction: float, seed: int):
    """Stratified split of a (concept, random) pair into local train/test indices and labels.

    Indices refer to the concatenation [concept examples, random examples]; the concept is label 1.
    """
    rng = np.random.default_rng(seed)
    tr_c, te_c, tr_r, te_r = stratified_split(n_concept, n_random, test_fraction, rng)
    train = np.concatenate([tr_c, n_concept + tr_r])
    test = np.concatenate([te_c, n_concept + te_r])
    y_train = np.concatenate([np.ones(len(tr_c)), np.zeros(len(tr_r))]).astype(np.int64)
    y_test = np.concatenate([np.ones(len(te_c)), np.zeros(len(te_r))]).astype(np.int64)
    return train, test, y_train, y_test


def train_cav(
    concept_acts: np.ndarray,
    random_acts: np.ndarray,
    *,
    classifier: ClassifierName = "sgd",
    test_fraction: float = 0.33,
    seed: int = 0,
) -> CAV:
    """Fit concept (label 1) vs random (label 0) on flattened activations [N, D]; return the unit
    CAV towards the concept and the held-out accuracy. Same procedure as the TCAV engine uses."""
    concept_acts = np.asarray(concept_acts, dtype=np.float64).reshape(len(concept_acts), -1)
    random_acts = np.asarray(random_acts, dtype=np.float64).reshape(len(random_acts), -1)
    if len(concept_acts) < 2 or len(random_acts) < 2:
        raise ValueError("a CAV needs at least 2 concept and 2 random examples (one per split side)")
    if concept_acts.shape[1] != random_acts.shape[1]:
        raise ValueError("concept and random activations must have the same feature size")
    x = np.concatenate([concept_acts, random_acts])
    train, test, y_train, y_test = pair_split(len(concept_acts), len(random_acts), test_fraction, seed)
    fit = fit_in_span(x @ x.T, train, test, y_train, y_test, classifier=classifier, seed=seed)
    vector = x[train].T @ fit.coef
    norm = float(np.linalg.norm(vector))
    if norm > 0:
        vector = vector / norm
    return CAV(vector=vector.astype(np.float32), accuracy=fit.accuracy, n_train=len(train), n_test=len(test))
