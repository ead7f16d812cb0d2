"""`python -m seedcore.cli`: the same as the `seedcore` command."""

from seedcore.cli import run

run()
