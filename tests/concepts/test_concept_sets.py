"""Demo concept generators and reproducible random counterpart sets."""

from __future__ import annotations

import hashlib

import pytest
import torch

from audit.concepts import random_pool_sets, set_sha256, stripes_concept, texture_concept, watermark_concept
from audit.demo.watermark import watermark_box, watermark_pattern

GENERATORS = [
    lambda **kw: watermark_concept(12, **kw),
    lambda **kw: stripes_concept(12, **kw),
    lambda **kw: texture_concept(12, texture="gravel", **kw),
    lambda **kw: texture_concept(12, texture="brick", **kw),
    lambda **kw: texture_concept(12, texture="noise", **kw),
]


@pytest.mark.parametrize("make", GENERATORS)
def test_generators_shape_range_and_determinism(make):
    a = make(seed=0, size=32, channels=1)
    assert a.shape == (12, 1, 32, 32) and a.dtype == torch.float32
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert float(a.std()) > 0.05  # not blank
    assert torch.equal(a, make(seed=0, size=32, channels=1))
    assert not torch.equal(a, make(seed=1, size=32, channels=1))
    rgb = make(seed=0, size=24, channels=3)
    assert rgb.shape == (12, 3, 24, 24)
    assert torch.equal(rgb[:, 0], rgb[:, 2])


def test_watermark_concept_carries_the_demo_patch():
    top, left, bottom, right = watermark_box(32, 32)
    pattern = watermark_pattern(bottom - top)
    for images in (watermark_concept(8, seed=3), watermark_concept(8, seed=3, backgrounds=torch.rand(20, 1, 32, 32))):
        assert torch.equal(images[:, 0, top:bottom, left:right], pattern.expand(8, -1, -1))
    # the backgrounds outside the patch vary from image to image
    images = watermark_concept(8, seed=3)
    outside = images.clone()
    outside[..., top:bottom, left:right] = 0
    assert float(outside.flatten(1).std(0).mean()) > 0.02


def test_watermark_on_pool_backgrounds_only_changes_the_patch():
    pool = torch.rand(5, 1, 32, 32)
    images = watermark_concept(30, seed=0, backgrounds=pool)
    mask = torch.ones(32, 32, dtype=torch.bool)
    top, left, bottom, right = watermark_box(32, 32)
    mask[top:bottom, left:right] = False
    for img in images:
        assert any(torch.equal(img[:, mask], p[:, mask]) for p in pool)


def test_random_pool_sets_disjoint_and_reproducible():
    pool = torch.arange(100.0).reshape(100, 1)
    sets = random_pool_sets(pool, 4, 20, seed=5)
    assert [s.shape for s in sets] == [(20, 1)] * 4
    values = torch.cat(sets).flatten().tolist()
    assert len(set(values)) == 80
    again = random_pool_sets(pool, 4, 20, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(sets, again))
    other = random_pool_sets(pool, 4, 20, seed=6)
    assert not all(torch.equal(a, b) for a, b in zip(sets, other))


def test_random_pool_sets_small_pool_draws_each_set_without_replacement():
    pool = torch.arange(30.0).reshape(30, 1)
    sets = random_pool_sets(pool, 5, 20, seed=0)
    assert len(sets) == 5
    for s in sets:
        assert len(set(s.flatten().tolist())) == 20


@pytest.mark.parametrize(("n_sets", "set_size"), [(4, 20), (5, 20)])  # disjoint, and drawn set by set
def test_random_pool_sets_of_sentences_draw_what_an_image_pool_draws(n_sets, set_size):
    """A text model's pool is a list of sentences: the same seed picks the same examples as from a tensor."""
    n = 80 if n_sets * set_size <= 80 else 30
    texts = [f"note {i}" for i in range(n)]
    tensor_sets = random_pool_sets(torch.arange(float(n)).reshape(n, 1), n_sets, set_size, seed=3)
    text_sets = random_pool_sets(texts, n_sets, set_size, seed=3)
    assert text_sets == [[f"note {int(v)}" for v in s.flatten().tolist()] for s in tensor_sets]


@pytest.mark.parametrize(
    ("args", "match"),
    [((torch.zeros(10, 1), 2, 11), "larger than the pool"), ((["a", "b"], 1, 3), "larger than the pool"),
     (([1, 2, 3], 1, 2), "list of sentences"), ((torch.zeros(10), 2, 3), "pool"), ((torch.zeros(10, 1), 0, 3), "n_sets")],
)
def test_random_pool_sets_errors(args, match):
    with pytest.raises(ValueError, match=match):
        random_pool_sets(*args)


def test_generator_errors():
    with pytest.raises(ValueError, match="texture"):
        texture_concept(3, texture="marble")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be"):
        stripes_concept(0)
    with pytest.raises(ValueError, match="backgrounds"):
        watermark_concept(3, backgrounds=torch.zeros(3, 32, 32))


def test_set_hash_is_sha256_of_the_bytes():
    t = torch.rand(3, 1, 4, 4)
    assert set_sha256(t) == hashlib.sha256(t.numpy().tobytes()).hexdigest()
    assert set_sha256(["a", "b"]) != set_sha256(["ab"])
    assert len(set_sha256(t.to(torch.bfloat16))) == 64
