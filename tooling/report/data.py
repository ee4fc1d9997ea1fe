"""What a report shows, gathered once: the run, its gate evaluation, and the phases' decision records."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tooling.gates.display import fmt_value
from tooling.gates.records import latest_record
from tooling.plan.phases import PhasePlan


def when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t)) if t else "-"


def _row_of(record: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((r for r in record.get("criteria", []) if r["criterion"] == name), None)


# The comparison's columns and the criterion each one shows.
_COLUMNS = {
    "throughput": "throughput",
    "efficiency": "scaling_efficiency",
    "uptime": "uptime",
    "overhead": "comm_overhead",
}


def phase_rows(plan: PhasePlan, decisions: Path) -> list[dict[str, Any]]:
    """One line per phase from its latest decision record (None figures where it has not been gated)."""
    rows = []
    for name, phase in plan.ordered():
        record = latest_record(decisions, name)
        gate = phase.gate
        target = getattr(gate, "throughput", None)
        row: dict[str, Any] = {
            "phase": name,
            "size": f"{phase.nodes} x {phase.nproc_per_node}",
            "world_size": phase.world_size,
            "target": target.target.value if target else None,
            "decision": record.get("decision") if record else None,
            "decided": when(record.get("decided_at")) if record else "not run",
            "record": record.get("_path") if record else None,
            "throughput": None,
            "efficiency": None,
            "uptime": None,
            "overhead": None,
            "issues": [],
            # Each figure's own criterion verdict (None: not gated): its colour, whatever the decision.
            "verdicts": dict.fromkeys(_COLUMNS),
        }
        if record:
            for key, criterion in _COLUMNS.items():
                found = _row_of(record, criterion)
                row[key] = found["measured"] if found else None
                row["verdicts"][key] = found["verdict"] if found else None
            row["issues"] = [
                f"{r['label']}: {r['verdict']}" + (f" ({r['note']})" if r["note"] else "")
                for r in record.get("criteria", [])
                if r["verdict"] in ("FAIL", "WARN", "NO DATA")
            ]
        row["text"] = {
            **{key: fmt_value(criterion, row[key]) for key, criterion in _COLUMNS.items()},
            "target": fmt_value("throughput", row["target"]),
        }
        rows.append(row)
    return rows


def priorities(rows: list[dict[str, Any]]) -> list[str]:
    """What to do next, in roll-out order: the first phase without a GO, and what blocks it."""
    out: list[str] = []
    for row in rows:
        if row["decision"] == "GO":
            continue
        if row["decision"] is None:
            out.append(f"Deploy and gate phase {row['phase']} ({row['size']} processes).")
        else:
            blocking = [i.split(" (")[0] for i in row["issues"] if ": FAIL" in i or ": NO DATA" in i]
            out.append(f"Clear phase {row['phase']}'s NO-GO: " + "; ".join(blocking))
        break
    else:
        out.append("All phases have a GO: run the production soak and watch uptime.")
    missing = sorted({i.split(":")[0] for r in rows for i in r["issues"] if ": NO DATA" in i})
    if missing:
        out.append(
            "Collect the missing evidence: " + ", ".join(missing) + " (Prometheus + node_exporter, soak)."
        )
    return out
