"""How gate figures read: units, percentages with enough digits, bounds as the plan writes them."""

from __future__ import annotations

from typing import Any

from tooling.plan.criteria import KINDS

VERDICT_STYLE = {
    "PASS": "green",
    "WARN": "yellow",
    "FAIL": "bold red",
    "NO DATA": "bold magenta",
    "SKIP": "dim",
}
DECISION_STYLE = {"GO": "bold green", "NO-GO": "bold red"}


def fmt_percent(ratio: float) -> str:
    """A ratio as the gate table, the notes and the report's figures all print it: 0.9995 -> "99.95 %"."""
    # Three decimals keep 99.99 % apart from 99.9 % and 0.05 % from 0 %.
    text = f"{ratio * 100:.3f}".rstrip("0").rstrip(".")
    return f"{'0' if text == '-0' else text} %"


def fmt_value(name: str, value: float | None, *, unit: bool = True) -> str:
    if value is None:
        return "-"
    kind_unit = KINDS[name].unit
    if kind_unit == "ratio":
        return fmt_percent(value)
    if kind_unit == "samples/s":
        return f"{value:,.1f} samples/s" if unit else f"{value:,.1f}"
    return f"{value:g}"


def fmt_bound(name: str, bound: dict[str, Any] | Any, *, unit: bool = True) -> str:
    op, value = (bound["op"], bound["value"]) if isinstance(bound, dict) else (bound.op, bound.value)
    symbol = {">=": "≥", "<=": "≤", "==": "=", ">": ">", "<": "<"}[op]
    return f"{symbol} {fmt_value(name, value, unit=unit)}"


def label_with_unit(name: str) -> str:
    kind = KINDS[name]
    return f"{kind.label} ({kind.unit})" if kind.unit == "samples/s" else kind.label


def verdict_text(row: dict[str, Any]) -> str:
    text = str(row["verdict"])
    if row.get("waived") and row["verdict"] == "NO DATA":
        text += " (waived)"
    if row.get("suspect"):
        text += " (suspect)"
    return text
