"""`python -m bench [NAME ...] [--small] [--repeats N | --seeds N] [--out PATH]`: run benchmarks, print and write the tables.

`python -m bench fuzz [--requests N] ...` (a run of its own, not a comparison: see bench/fuzz.py)."""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench._report import Section, command_line, document, kept_notes, log, machine, section_markdown

# Run order: the Ray benchmarks first, then Ray is shut down so it cannot disturb the serving ones.
BENCHMARKS = {"sweep": "bench.sweep", "scaling": "bench.scaling", "quality": "bench.quality",
              "warmstart": "bench.warmstart", "cold": "bench.cold", "scale": "bench.scale", "predict": "bench.predict",
              "batch": "bench.batch",
              "predlog": "bench.predlog", "feedback": "bench.feedback", "promotion_crash": "bench.promotion_crash",
              "front": "bench.front", "organism": "bench.organism"}
ALIASES = {"overhead": "sweep"}
# Runs that compare with no peer and write no table: `python -m bench NAME ARGS...` is the module's main(ARGS).
RUNS = {"fuzz": "bench.fuzz"}
NEEDS_RAY = {"sweep", "scaling", "quality", "warmstart", "organism"}
ISSUE_ORDER = ("sweep", "scaling", "predict", "batch", "quality", "cold", "warmstart", "predlog", "feedback",
               "promotion_crash", "scale", "organism", "front")  # how RESULTS.md lists them
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def run_benchmarks(names: list[str] | None = None, *, small: bool = False, repeats: int | None = None,
                   workdir: Path | None = None, keep: bool = False, wait_idle: float = 0.0,
                   on_section=None) -> list[Section]:
    """Run the named benchmarks (all by default) in a scratch workspace; one Section each, failures included."""
    from bench._workspace import Workspace

    wanted = {ALIASES.get(n, n) for n in (names or BENCHMARKS)}
    ordered = [n for n in BENCHMARKS if n in wanted]
    if workdir:  # a fresh run directory inside it, so earlier runs' files never mix in
        Path(workdir).mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix=time.strftime("run-%Y%m%d-%H%M%S-"), dir=workdir))
    else:
        root = Path(tempfile.mkdtemp(prefix="seedcore-bench-"))
    remove = workdir is None and not keep  # a directory the caller named is never deleted
    ws = Workspace(root)
    ray_was_up = _ray_is_up()
    sections = []
    try:
        for name in ordered:
            if name not in NEEDS_RAY and not ray_was_up and _ray_is_up():
                from seedcore.tuning.cluster import shutdown_ray

                shutdown_ray()  # started by us for the Ray benchmarks; the rest run on a quiet machine
            _wait_for_idle(wait_idle)
            sections.append(_run_one(name, ws, small, repeats))
            if on_section:
                on_section(sections[-1])
    finally:
        if remove:
            shutil.rmtree(root, ignore_errors=True)
        else:
            log(f"scratch directory kept: {root}")
    return sections


def _run_one(name: str, ws, small: bool, repeats: int | None) -> Section:
    module = importlib.import_module(BENCHMARKS[name])
    log(f"{name}: starting ({'small' if small else 'full'} mode)")
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    try:
        section = module.run(ws, small=small, repeats=repeats)
    except Exception as exc:  # one broken benchmark must not lose the others' results
        traceback.print_exc()
        section = Section(name, module.TITLE, "", notes=[f"**FAILED**: {type(exc).__name__}: {exc}"], failed=True)
    section.seconds = time.perf_counter() - started
    section.notes.append(f"1-minute load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
                         f"({os.cpu_count()} CPUs; anything else running on the machine shows here)")
    log(f"{name}: done in {section.seconds:.0f} s")
    return section


def _wait_for_idle(at_most: float, below: float = 1.0) -> None:
    """Wait (up to `at_most` s) until the 1-minute load average is under `below`: other work skews timings."""
    deadline = time.monotonic() + at_most
    while os.getloadavg()[0] >= below and time.monotonic() < deadline:
        time.sleep(min(15.0, max(0.0, deadline - time.monotonic())))
    if at_most:
        log(f"1-minute load average now {os.getloadavg()[0]:.1f}")


def _ray_is_up() -> bool:
    if "ray" not in sys.modules:
        return False
    import ray

    return ray.is_initialized()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)} ('overhead' = sweep); "
                             f"or, alone and with its own options, one of: {', '.join(RUNS)}")
    parser.add_argument("--small", action="store_true", help="tiny sizes, seconds each (what the tests run)")
    parser.add_argument("--repeats", type=int, help="repeats per measurement (default: per benchmark)")
    parser.add_argument("--seeds", type=int, dest="repeats",
                        help="the same as --repeats: the seeds of the quality and scale benchmarks (default 3)")
    parser.add_argument("--out", type=Path,
                        help=f"write the markdown here (default: {RESULTS.relative_to(RESULTS.parent.parent)} "
                             "when running all benchmarks in full mode; otherwise print only)")
    parser.add_argument("--workdir", type=Path, help="scratch directory, kept afterwards (default: a new temporary "
                                                      "one, removed at the end)")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                        help="before each benchmark, wait up to SECONDS for the 1-minute load average to drop below 1")
    parser.add_argument("--keep", action="store_true", help="keep the temporary scratch directory (stores, data, logs)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in RUNS:
        return importlib.import_module(RUNS[argv[0]]).main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS and n not in ALIASES]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join([*BENCHMARKS, *ALIASES])}")
    out = args.out or (RESULTS if not args.names and not args.small else None)
    info = machine()
    log(f"{info['cpus']} CPUs, {info['platform']}; " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    sections = run_benchmarks(args.names, small=args.small, repeats=args.repeats, workdir=args.workdir,
                              keep=args.keep, wait_idle=args.wait_idle, on_section=lambda s: print(section_markdown(s), flush=True))
    if out is not None:
        listed = sorted(sections, key=lambda s: ISSUE_ORDER.index(s.name))
        kept = kept_notes(out.read_text()) if out.exists() else ""
        out.write_text(document(listed, command_line(argv), info, args.small) + ("\n" + kept if kept else ""))
        log(f"wrote {out}")
    return 1 if any(s.failed for s in sections) else 0
