"""Verdicts on a parsed `dcgmi diag`: a summary row, then one row per DCGM test with its result on each GPU.

A test that failed on any GPU FAILs, naming the test, the GPUs and DCGM's own message; a warning WARNs; a test
DCGM skipped everywhere SKIPs with DCGM's reason. A status word DCGM has never used before is a FAIL (it could
not be read), never a pass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tooling.verdicts import Status
from tooling.verify.dcgm_diag import DcgmDiag, DiagResult
from tooling.verify.gpu_health import Verdict

_RANK: dict[str, int] = {"PASS": 0, "SKIP": 0, "WARN": 1, "FAIL": 2}
_SHOWN_MESSAGES = 3


def check_name(test: str) -> str:
    """'Page Retirement/Row Remap' -> 'dcgm.page_retirement_row_remap'."""
    return "dcgm." + (re.sub(r"[^a-z0-9]+", "_", test.lower()).strip("_") or "test")


def _where(result: DiagResult) -> str:
    if not result.gpus:
        return "the node"
    return ("GPU " if len(result.gpus) == 1 else "GPUs ") + ",".join(map(str, result.gpus))


def _status_of(results: Sequence[DiagResult]) -> Status:
    words = {r.status for r in results}
    if words - set(_RANK) or "FAIL" in words:
        return "FAIL"
    if "WARN" in words:
        return "WARN"
    if words == {"SKIP"}:
        return "SKIP"
    return "PASS"


def _test_row(test: str, results: Sequence[DiagResult]) -> Verdict:
    status = _status_of(results)
    by_word: dict[str, list[int]] = {}
    for r in results:
        by_word.setdefault(r.status, []).extend(r.gpus)
    measured = "; ".join(
        f"{word} on GPU {','.join(map(str, sorted(set(gpus))))}" if gpus else f"{word} on the node"
        for word, gpus in by_word.items()
    )
    expected = "Pass on every GPU"
    if status == "PASS":
        skipped = [_where(r) for r in results if r.status == "SKIP"]
        note = f" (skipped on {', '.join(skipped)})" if skipped else ""
        return check_name(test), status, measured, expected, f"DCGM test {test!r} passed{note}"
    worst = [r for r in results if r.status not in ("PASS", "SKIP")] or list(results)
    # DCGM's messages usually name their GPU already ("GPU 2: Unable to ..."); the prefix is added otherwise.
    said = [
        message if message.startswith(_where(r)) else f"{_where(r)}: {message}"
        for r in worst
        for message in r.messages
    ] or ["DCGM gave no message"]
    more = f" (+{len(said) - _SHOWN_MESSAGES} more)" if len(said) > _SHOWN_MESSAGES else ""
    words = {"FAIL": "failed", "WARN": "warned", "SKIP": "was skipped"}
    odd = sorted({r.status for r in results} - set(_RANK))
    verb = f"reported {', '.join(map(repr, odd))}" if odd else words[status]
    return (
        check_name(test),
        status,
        measured,
        expected,
        f"DCGM test {test!r} {verb}: " + " | ".join(said[:_SHOWN_MESSAGES]) + more,
    )


def verdicts(diag: DcgmDiag, level: int) -> list[Verdict]:
    expected = f"dcgmi diag -r {level}: every test passes"
    version = f"DCGM {diag.version}" if diag.version else "DCGM"
    if diag.runtime_error and not diag.results:
        return [("dcgm.diag", "FAIL", f"{version}, level {level}", expected, diag.runtime_error)]
    grouped: dict[str, list[DiagResult]] = {}
    for r in diag.results:
        grouped.setdefault(r.test, []).append(r)
    rows = [_test_row(test, results) for test, results in grouped.items()]
    statuses = [row[1] for row in rows]
    worst: Status = max(statuses, key=lambda s: _RANK[s], default="PASS")
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in ("PASS", "WARN", "FAIL", "SKIP") if s in statuses)
    bad = [row[0].removeprefix("dcgm.") for row in rows if row[1] == worst and worst in ("FAIL", "WARN")]
    reason = f"{'failed' if worst == 'FAIL' else 'warned'}: {', '.join(bad)}" if bad else "no test failed"
    if diag.runtime_error:
        worst, reason = "FAIL", f"{diag.runtime_error}; {reason}"
    summary: Verdict = (
        "dcgm.diag",
        worst,
        f"{version}, level {level}: {len(rows)} tests ({counts})",
        expected,
        reason,
    )
    return [summary, *rows]
