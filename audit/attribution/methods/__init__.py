"""One module per attribution method; each class declares itself and registers on import.

``audit.attribution.registry.discover`` imports every module here, so a new method is a new file.
"""
