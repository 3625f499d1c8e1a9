"""``python -m audit.bench fairness``: group metrics and bootstrap intervals against fairlearn."""

from audit.fairness.bench import main

__all__ = ["main"]
