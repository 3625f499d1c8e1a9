"""Importing reference and concept sets from the user's own files: validation and conversion only
(no database); ``audit.services.core.datasets`` stores what this returns."""

from audit.datasets.prepare import (
           PreparedImages,
           PreparedTexts,
           Target,
           prepare_images,
           prepare_texts,
           scale_box,
)
from audit.datasets.problems import ImportLimits, InvalidDataset

__all__ = ["ImportLimits", "InvalidDataset", "PreparedImages", "PreparedTexts", "Target", "prepare_images",
           "prepare_texts", "scale_box"]
