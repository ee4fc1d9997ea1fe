"""A gate bound such as ">= 270", "< 10" or ">= 99.9%": a comparison and a number, as the plan says it.

Strict and non-strict comparisons differ in the plan ("sigma < 10" but "overhead <= 10 %"), so the
operator is part of the bound instead of being implied by the criterion.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Op = Literal[">=", ">", "<=", "<", "=="]
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}
_PATTERN = re.compile(r"^\s*(>=|<=|==|>|<)?\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*(%?)\s*$")


@dataclass(frozen=True)
class Bound:
    op: Op
    value: float

    def met_by(self, measured: float) -> bool:
        return _COMPARE[self.op](measured, self.value)

    def at_least_as_strict_as(self, other: Bound) -> bool:
        """True when every value meeting `self` also meets `other` (a target must imply its minimum)."""
        if self.op in (">", ">=") and other.op in (">", ">="):
            return self.value > other.value or (
                self.value == other.value and not (self.op == ">=" and other.op == ">")
            )
        if self.op in ("<", "<=") and other.op in ("<", "<="):
            return self.value < other.value or (
                self.value == other.value and not (self.op == "<=" and other.op == "<")
            )
        if self.op == "==":
            return other.met_by(self.value)
        return False

    def as_dict(self) -> dict[str, object]:
        return {"op": self.op, "value": self.value}


def parse_bound(raw: object, *, default_op: Op, percent_allowed: bool) -> Bound:
    """A number (compared with `default_op`) or "OP NUMBER[%]". Raises ValueError with what was expected."""
    if isinstance(raw, bool):
        raise ValueError(f"expected a number or a comparison like '>= 250' (got {raw!r})")
    if isinstance(raw, int | float):
        return Bound(default_op, float(raw))
    if not isinstance(raw, str):
        raise ValueError(f"expected a number or a comparison like '>= 250' (got {raw!r})")
    match = _PATTERN.match(raw)
    if match is None:
        raise ValueError(f"expected a comparison like '>= 250', '< 10' or '>= 99.9%' (got {raw!r})")
    op, number, percent = match.groups()
    value = float(number)
    if percent:
        if not percent_allowed:
            raise ValueError(
                f"a percentage is only meaningful for ratios; write a plain number (got {raw!r})"
            )
        value = round(value / 100.0, 12)  # 99.9% is 0.999, not 0.9990000000000001
    return Bound((op or default_op), value)  # type: ignore[arg-type]
