"""What every `seedcore` command shares: exit codes, JSON and table output, progress on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence

# Exit codes, documented in `seedcore --help`.
OK = 0
OUR_FAULT = 1  # something failed on our side (a store, Ray, a bug)
CALLER_ERROR = 2  # a bad option, request or id: the message names the field
PROMOTION_REJECTED = 3  # the champion gate kept the current production version
INTERRUPTED = 130  # Ctrl-C (the running job is cancelled, its runs KILLED)
READER_GONE = 141  # what a shell tool ended by SIGPIPE returns (128 + 13): stdout's reader left (`| head`)
EXIT_CODES = {OK: "success", OUR_FAULT: "failed on our side (store, Ray, bug): see the message",
              CALLER_ERROR: "bad option, request or id: the JSON error names the field",
              PROMOTION_REJECTED: "the champion gate kept the current production version",
              INTERRUPTED: "interrupted (Ctrl-C): the running job was cancelled, its runs KILLED",
              READER_GONE: "the output's reader closed the pipe (`| head`); what the command did stands"}


def print_json(value: Any) -> None:
    """The command's result on stdout, and nothing else there."""
    print(json.dumps(value, indent=2, default=str), flush=True)


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Rows as aligned columns on stdout."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    for line in ([*headers], *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


class Progress:
    """Progress of a long command on stderr: a tqdm bar at a terminal, one plain line per change otherwise
    (logs and pipes stay readable: `[running] trials 3/5  best AUC 0.9312`)."""

    def __init__(self, unit: str):
        self.unit, self.bar, self.last = unit, None, None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=0, unit=unit, file=sys.stderr, dynamic_ncols=True)

    def show(self, state: str, done: int, total: int, note: str = "") -> None:
        if self.bar is not None:
            self.bar.total, self.bar.n = total, done
            self.bar.set_description_str(state)
            self.bar.set_postfix_str(note, refresh=False)
            self.bar.refresh()
            return
        line = f"[{state}] {self.unit} {done}/{total}" + (f"  {note}" if note else "")
        if line != self.last:
            print(line, file=sys.stderr, flush=True)
            self.last = line

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
