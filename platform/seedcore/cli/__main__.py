"""`python -m seedcore.cli`: the same as the `seedcore` command."""

from seedcore.cli import run

if __name__ == "__main__":
    run()
