"""`python -m seedcore`: the same as the `seedcore` command (as `python -m mlflow` is `mlflow`)."""

from seedcore.cli import run

if __name__ == "__main__":
    run()
