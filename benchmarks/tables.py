"""Small formatting helpers shared by the benchmark scripts that write CSV result files."""

from __future__ import annotations

import csv
import io
import statistics


def csv_text(rows: list[dict[str, object]], fields: list[str]) -> str:
    """``rows`` as CSV with the columns ``fields`` (missing values empty)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in fields})
    return buf.getvalue()


def mean_sd(values: list[float]) -> str:
    """``mean +/- sample sd`` to two decimals (the mean alone for one value, ``n/a`` for none)."""
    if not values:
        return "n/a"
    mean = statistics.mean(values)
    return f"{mean:.2f} +/- {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"
