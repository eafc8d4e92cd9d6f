"""Read `kubectl get` output back into cells, by the header's column positions."""

from __future__ import annotations

import re


def parse(output: str) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of kubectl's aligned table output; empty cells come back as ""."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    if not lines:
        return [], []
    header = lines[0]
    # header names contain single spaces ("NOMINATED NODE"); columns are 3+ spaces apart
    spans = [(m.start(), m.group()) for m in re.finditer(r"\S+(?: \S+)*", header)]
    starts = [s for s, _ in spans] + [None]
    rows = []
    for ln in lines[1:]:
        rows.append([ln[starts[i]:starts[i + 1]].strip() if starts[i] < len(ln) else ""
                     for i in range(len(spans))])
    return [h for _, h in spans], rows


def without(headers: list[str], rows: list[list[str]], *drop: str) -> list[list[str]]:
    """Rows with some columns (e.g. AGE) taken out."""
    keep = [i for i, h in enumerate(headers) if h not in drop]
    return [[r[i] for i in keep] for r in rows]
