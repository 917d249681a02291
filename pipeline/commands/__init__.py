"""Command-line commands: each module registers its subcommands with ``register(subparsers)``."""
