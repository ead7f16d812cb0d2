"""The README's settings table, generated from `Settings.variables()` so it cannot drift from config.py.

`scripts/readme-settings` rewrites the table in README.md; `--check` only says whether it is current.
"""

from __future__ import annotations

import sys
from pathlib import Path

from seedcore.config import Settings

BEGIN = "<!-- settings table: generated from platform/seedcore/config.py by scripts/readme-settings -->"
END = "<!-- end of settings table -->"


def render() -> str:
    """Markdown table: variable, default, meaning; one row per setting, in declaration order."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for row in Settings.variables():
        rows.append(f"| `{row['variable']}` | {_default(row['default'])} | {_cell(row['description'])} |")
    return "\n".join(rows)


def replace_in(text: str) -> str:
    """`text` with the part between BEGIN and END replaced by the current table."""
    try:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise SystemExit(f"README has no settings table markers ({BEGIN} ... {END})") from None
    return f"{head}{BEGIN}\n{render()}\n{END}{tail}"


def _default(value) -> str:
    if value is None:
        return "unset"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [a for a in argv if not a.startswith("--")]
    path = Path(paths[0] if paths else "README.md")
    text = path.read_text(encoding="utf-8")
    updated = replace_in(text)
    if check:
        if updated != text:
            print(f"{path}: the settings table is out of date; run scripts/readme-settings", file=sys.stderr)
            return 1
        return 0
    if updated != text:
        path.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
