"""docs/performance.md, written a section at a time.

Each benchmark owns the sections it writes: a section is the text between `<!-- bench:KEY -->` and
`<!-- /bench:KEY -->`, and writing it replaces that text only, so benchmarks run at different times
(the proxy and server benchmarks of `loadtests.bench`, the unet328 one of `loadtests.bench_engine`)
keep each other's results. A section that is not in the file yet is added at the end; a missing file
starts from `SKELETON`, which lists every section in reading order.

Pure functions over text, plus `write_section` for the file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

#: The sections of docs/performance.md in reading order, with their headings.
SECTIONS = (
    ("machine", "Machine"),
    ("targets", "SPEC §9 targets"),
    ("proxy", "Proxy"),
    ("idle", "Idle connections"),
    ("e2e", "End to end through nginx TLS"),
    ("viewers", "Viewers"),
    ("server", "Server: sprite engine and JPEG splicing"),
    ("unet328", "unet328 engine"),
)

SKELETON = (
    "# Performance\n\n"
    "Measured by the benchmarks in `loadtests/` (`make bench` writes every section but the unet328 one,\n"
    "which `loadtests/bench_engine.py` writes). Each section names the command that produced it and the\n"
    "load average while it ran: on a shared machine, compare the side-by-side ratios, not absolute figures.\n"
    + "".join(
        f"\n## {title}\n\n<!-- bench:{key} -->\nNot measured yet.\n<!-- /bench:{key} -->\n"
        for key, title in SECTIONS
    )
)


def _markers(key: str) -> tuple[str, str]:
    if not re.fullmatch(r"[a-z0-9_-]+", key):
        raise ValueError(f"section key {key!r} must be lowercase letters, digits, - or _")
    return f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"


def replace_section(text: str, key: str, body: str, title: str | None = None) -> str:
    """`text` with section `key`'s body replaced by `body`; a new section (under `## title`, default
    the key) is appended when the markers are not there."""
    begin, end = _markers(key)
    content = f"{begin}\n{body.strip()}\n{end}"
    start = text.find(begin)
    if start < 0:
        heading = title or dict(SECTIONS).get(key, key)
        return f"{text.rstrip()}\n\n## {heading}\n\n{content}\n"
    stop = text.find(end, start)
    if stop < 0:
        raise ValueError(f"section {key!r} has no closing marker {end!r}")
    return text[:start] + content + text[stop + len(end) :]


def write_section(path: Path, key: str, body: str, title: str | None = None) -> None:
    """Replace section `key` of the file at `path` (created from SKELETON when missing)."""
    text = path.read_text(encoding="utf-8") if path.exists() else SKELETON
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_section(text, key, body, title), encoding="utf-8")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; numbers right-aligned, None and NaN shown as a dash."""
    cells = [[_cell(value) for value in row] for row in rows]
    numeric = [all(_is_number(row[i]) for row in rows) if rows else False for i in range(len(headers))]
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" if right else "---" for right in numeric) + "|",
        *("| " + " | ".join(row) + " |" for row in cells),
    ]
    return "\n".join(lines)


def _is_number(value: object) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return fmt(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def fmt(value: float | None, digits: int = 3) -> str:
    """A measured number with `digits` significant digits and thousands separators; a dash for none."""
    if value is None or not math.isfinite(value):
        return "–"
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"
