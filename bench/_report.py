"""Results: rows of (metric, ours, peer, ratio, target), medians over repeats, the markdown file."""

from __future__ import annotations

import importlib.util
import math
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

VERSIONED = ("ray", "mlflow", "xgboost", "optuna", "numpy", "pandas", "pyarrow", "gunicorn", "uvicorn")


def median(values) -> float:
    values = [float(v) for v in values if v is not None]
    return statistics.median(values) if values else math.nan


def percentile(values, q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN for no values."""
    data = sorted(float(v) for v in values)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q / 100.0
    low, high = math.floor(pos), math.ceil(pos)
    return data[low] + (data[high] - data[low]) * (pos - low)


@dataclass
class Row:
    """One line of a table. `ratio` is ours / peer; `target` is a bound on it ("<= 0.2" or ">= 2")."""

    metric: str
    ours: float | None
    peer: float | None = None
    peer_name: str = ""
    target: str = ""
    unit: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.peer is None or not self.peer or not math.isfinite(self.peer):
            return None
        return self.ours / self.peer

    @property
    def met(self) -> bool | None:
        """Whether the ratio meets the target; None when the row has no target."""
        if not self.target:
            return None
        op, bound = self.target.split()
        value = self.ratio if self.peer is not None else self.ours
        if value is None or not math.isfinite(value):
            return False
        return value <= float(bound) if op == "<=" else value >= float(bound)

    def numbers(self) -> list[float]:
        return [v for v in (self.ours, self.peer, self.ratio) if v is not None]


@dataclass
class Section:
    """One benchmark's table plus what was compared and how."""

    name: str
    title: str
    setup: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    failed: bool = False

    def add(self, *args, **kwargs) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    text = (f"{value:,.0f}" if magnitude >= 1000 else f"{value:.1f}" if magnitude >= 100 else
            f"{value:.2f}" if magnitude >= 1 else f"{value:.3f}" if magnitude >= 0.01 else f"{value:.2g}")
    return f"{text} {unit}".strip()


def _target(row: Row) -> str:
    if not row.target:
        return "reported"
    op, bound = row.target.split()
    sign = "≤" if op == "<=" else "≥"
    return f"{sign} {bound}×" if row.peer is not None else f"{sign} {bound}"


def _met(row: Row) -> str:
    return {None: "", True: "yes", False: "**no**"}[row.met]


def section_markdown(section: Section) -> str:
    lines = [f"## {section.title}", "", section.setup, "",
             "| metric | ours | peer | ratio (ours / peer) | target | met? |",
             "|---|---:|---|---:|---|---|"]
    for row in section.rows:
        metric = f"{row.metric} ({row.unit})" if row.unit else row.metric
        if row.note:
            metric += f" — {row.note}"
        peer = f"{row.peer_name}: {_fmt(row.peer)}" if row.peer is not None else (row.peer_name or "—")
        ratio = f"{row.ratio:.2f}×" if row.ratio is not None else "—"
        lines.append(f"| {metric} | {_fmt(row.ours)} | {peer} | {ratio} | {_target(row)} | {_met(row)} |")
    lines += [""] + [f"- {note}" for note in section.notes]
    lines.append(f"- this benchmark took {section.seconds:.0f} s")
    return "\n".join(lines) + "\n"


def machine() -> dict:
    versions = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # e.g. xgboost installed as xgboost-cpu
            try:
                versions[name] = metadata.version(f"{name}-cpu")
            except metadata.PackageNotFoundError:
                versions[name] = "not installed"
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "machine": platform.machine(),
            "processor": _cpu_model(), "memory_gb": _memory_gb(), "versions": versions, "commit": _commit(),
            "seedcore": str(Path(importlib.util.find_spec("seedcore").origin).parent)}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float:
    import psutil

    return round(psutil.virtual_memory().total / 2**30, 1)


def _commit() -> str:
    """The code under test: BENCH_CODE_VERSION if set (a snapshot without .git), else git's HEAD here."""
    if os.environ.get("BENCH_CODE_VERSION"):
        return os.environ["BENCH_CODE_VERSION"]
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{' + uncommitted changes' if dirty else ''}" if head else "unknown"


KEEP_MARKER = "<!-- kept across runs: the bench carries everything below this line into the next RESULTS.md -->"


def kept_notes(previous: str) -> str:
    """The hand-written tail of an earlier RESULTS.md (from KEEP_MARKER on), or ""."""
    at = previous.find(KEEP_MARKER)
    return previous[at:] if at >= 0 else ""


def document(sections: list[Section], command: str, info: dict, small: bool) -> str:
    """The whole RESULTS.md: header (machine, versions, command, date), then one table per benchmark."""
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    met = [row.met for s in sections for row in s.rows if row.met is not None]
    lines = [
        "# Benchmarks: SeedCore Flywheel vs its peers",
        "",
        f"Generated on {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by `{command}`"
        f"{' (small mode: tiny sizes, the numbers mean nothing)' if small else ''}. Re-run all with"
        " `python -m bench`, or one with `python -m bench NAME` (sweep, scaling, predict, batch, quality, cold, warmstart).",
        "",
        f"- machine: {info['cpus']} CPUs ({info['processor']}), {info['memory_gb']} GiB RAM, {info['platform']}",
        f"- versions: {versions}",
        f"- code: commit {info['commit']} (seedcore imported from `{info['seedcore']}`)",
        f"- targets met: {sum(met)} of {len(met)}",
        "",
        "Each number is the median over the repeats named under its table. Ratio = ours / peer: below 1 is",
        "faster for times and latencies; above 1 is better for throughput and AUC.",
        "",
    ]
    return "\n".join(lines) + "\n" + "\n".join(section_markdown(s) for s in sections)


def command_line(argv: list[str]) -> str:
    return " ".join(["python -m bench", *argv])


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
