"""Command-line subcommands: each module registers its own with ``register(subparsers)``."""
