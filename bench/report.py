"""bench/report.py: what the benchmark scripts' table-and-JSON steps share (imported by the
Python embedded in bench/dns.sh, bench/proxy.sh and bench/nat.sh): the goals record, the JSON result file, and
number formatting for the printed table."""

import json


def goals_record(goals):
    """{name: (value, goal text, test)} -> {name: {"value", "goal", "met"}}; met is None when
    the value could not be measured."""
    return {k: {"value": v, "goal": g, "met": (t(v) if v is not None else None)} for k, (v, g, t) in goals.items()}


def write_json(path, result):
    """Writes one run's result to bench/results/."""
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")


def num(x, digits=2):
    """A table cell: "-" when missing, thousands separators from 1,000 up."""
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"
