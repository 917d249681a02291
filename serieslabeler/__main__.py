"""``python -m serieslabeler``: the same command line as the ``serieslabeler`` console command."""
from serieslabeler.cli.main import run

run()
