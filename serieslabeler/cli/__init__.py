"""The command line: ``serieslabeler`` / ``python -m serieslabeler``."""
