"""PASS / WARN / FAIL / SKIP, the verdicts of `tooling verify-node` and `tooling check`: their type, tally
and colours in one place (each command keeps its own rule for the overall verdict)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

Status = Literal["PASS", "WARN", "FAIL", "SKIP"]
STATUSES: tuple[Status, ...] = ("PASS", "WARN", "FAIL", "SKIP")
STATUS_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "SKIP": "dim"}


def styled(status: str) -> str:
    """The status as rich markup in its colour."""
    return f"[{STATUS_STYLE[status]}]{status}[/]"


def tally(statuses: Iterable[str]) -> dict[str, int]:
    """How many of each verdict, every verdict listed (zero included)."""
    out: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for status in statuses:
        out[status] += 1
    return out
