"""Command-line commands contributed by feature areas; each module defines ``add_commands(subparsers)``."""
