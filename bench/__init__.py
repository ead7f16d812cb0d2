"""Benchmarks run side by side with the peers a user would pick instead, on the same data, budget and machine.

`python -m bench` runs every benchmark and writes bench/RESULTS.md; `python -m bench NAME ...` runs
some (sweep, scaling, quality, warmstart, cold, scale, predict, batch, predlog, feedback, promotion_crash,
front); `--small` runs each in seconds (what the tests run). `python -m bench fuzz --requests N` fuzzes the REST
API with Schemathesis (every phase and check) and reports its 5xx answers and failed checks.
"""

from bench.cli import BENCHMARKS, main, run_benchmarks

__all__ = ["BENCHMARKS", "main", "run_benchmarks"]
