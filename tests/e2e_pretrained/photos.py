"""The sixty photographs these tests audit: built by ``audit.bench.photos`` (moved there so that
``python -m audit.bench audit --case pretrained`` audits the same ones); re-exported under the names the
tests use."""

from __future__ import annotations

from audit.bench.photos import CLASSES, CROPS, SEED, SOURCES, Photo, PhotoSet, build_photos, original

__all__ = ["CLASSES", "CROPS", "SEED", "SOURCES", "Photo", "PhotoSet", "build_photos", "original"]
