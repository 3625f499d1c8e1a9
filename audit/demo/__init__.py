"""Builds the embedded demo registry (image and text families) from data that packages ship."""
