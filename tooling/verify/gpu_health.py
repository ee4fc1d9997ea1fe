"""Verdicts on what `nvidia-smi -q -x` says about each GPU: memory errors, PCIe links, heat, modes.

Pure functions from a parsed report to (check, status, measured, expected, reason), one row per check for
the whole node, naming every GPU that is off (index and PCI bus id) so the operator knows which board.
"""

from __future__ import annotations

from collections.abc import Iterable

from tooling.verdicts import Status
from tooling.verify.nvidia_xml import GpuDetail, NvidiaSmiReport

Verdict = tuple[str, Status, str, str, str]  # check, status, measured, expected, reason


def _names(gpus: Iterable[GpuDetail]) -> str:
    return ", ".join(g.label for g in gpus)


def _total(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def memory_errors(report: NvidiaSmiReport) -> Verdict:
    """Uncorrected ECC errors since boot FAIL (data was lost); a row-remap failure FAILs (the board is out
    of spare rows: replace it). Past uncorrected errors and a pending page retirement or row remap WARN:
    the board works but needs a GPU reset to take the repair."""
    check, expected = "gpu.memory_errors", "0 uncorrected ECC errors, no pending or failed repair"
    gpus = report.gpus
    volatile = _total(g.ecc_volatile_uncorrected for g in gpus)
    aggregate = _total(g.ecc_aggregate_uncorrected for g in gpus)
    corrected = _total(g.ecc_aggregate_corrected for g in gpus)
    retired = _total(g.retired_pages for g in gpus)
    shown = {
        "uncorrected since boot": volatile,
        "uncorrected lifetime": aggregate,
        "corrected lifetime": corrected,
        "retired pages": retired,
    }
    measured = ", ".join(f"{v} {k}" for k, v in shown.items() if v is not None) or "no ECC counters"
    fails = [
        f"{g.label}: {g.ecc_volatile_uncorrected} uncorrected ECC errors since boot"
        for g in gpus
        if g.ecc_volatile_uncorrected
    ]
    fails += [
        f"{g.label}: row remapping failed (no spare rows left; replace the board)"
        for g in gpus
        if g.remap_failure
    ]
    warns = [
        f"{g.label}: {g.ecc_aggregate_uncorrected} uncorrected ECC errors in its lifetime"
        for g in gpus
        if g.ecc_aggregate_uncorrected
    ]
    warns += [f"{g.label}: page retirement pending (reset the GPU)" for g in gpus if g.retirement_pending]
    warns += [f"{g.label}: row remap pending (reset the GPU)" for g in gpus if g.remap_pending]
    if fails:
        return check, "FAIL", measured, expected, "; ".join(fails + warns)
    if warns:
        return check, "WARN", measured, expected, "; ".join(warns)
    if all(v is None for v in shown.values()):
        return check, "WARN", measured, expected, "no GPU reports ECC counters (ECC off or not supported)"
    return check, "PASS", measured, expected, "no uncorrected errors and nothing waiting for a reset"


def pcie_links(report: NvidiaSmiReport) -> Verdict:
    """A link trained below its maximum generation or width WARNs: the board, riser or slot lost lanes or
    speed. An idle GPU may lower its link generation to save power, so a generation-only drop is worth a
    second look under load before anyone reseats a card."""
    check, expected = "gpu.pcie_link", "every GPU at its maximum PCIe generation and width"
    reported = [g for g in report.gpus if g.pcie_gen is not None and g.pcie_width is not None]
    if not reported:
        return check, "WARN", "-", expected, "nvidia-smi reports no PCIe link state"
    slow: list[str] = []
    width_lost = False
    for g in reported:
        assert g.pcie_gen is not None and g.pcie_width is not None
        (gen, max_gen), (width, max_width) = g.pcie_gen, g.pcie_width
        parts = []
        if gen < max_gen:
            parts.append(f"gen {gen} of {max_gen}")
        if width < max_width:
            parts.append(f"x{width} of x{max_width}")
            width_lost = True
        if parts:
            slow.append(f"{g.label}: {', '.join(parts)}")
    first = reported[0]
    assert first.pcie_gen is not None and first.pcie_width is not None
    measured = (
        f"{len(reported) - len(slow)} of {len(reported)} at maximum"
        if slow
        else f"{len(reported)} x gen {first.pcie_gen[0]} x{first.pcie_width[0]}"
    )
    if not slow:
        return check, "PASS", measured, expected, "links at their maximum"
    hint = "" if width_lost else " (an idle GPU may lower its generation to save power: re-check under load)"
    return check, "WARN", measured, expected, "; ".join(slow) + hint


def thermal_events(report: NvidiaSmiReport) -> tuple[int, str]:
    """How many GPUs have clocks held down by heat now, and the details (power caps are named too)."""
    hot = [g for g in report.gpus if g.thermal_reasons]
    capped = [g for g in report.gpus if g.power_reasons]
    details = [f"{g.label}: {', '.join(g.thermal_reasons)}" for g in hot]
    details += [f"{g.label} power-limited: {', '.join(g.power_reasons)}" for g in capped]
    return len(hot), "; ".join(details)


def modes(report: NvidiaSmiReport) -> Verdict:
    """Persistence mode off WARNs (the driver tears down between jobs: slow starts, lost settings); MIG on
    WARNs (the trainer would see MIG slices, not the whole GPUs the plan counts)."""
    check, expected = "gpu.modes", "persistence on, MIG off"
    off = [g for g in report.gpus if g.persistence is not None and g.persistence.lower() != "enabled"]
    mig = [g for g in report.gpus if g.mig is not None and g.mig.lower() == "enabled"]
    persistence = sorted({g.persistence or "N/A" for g in report.gpus})
    mig_modes = sorted({g.mig or "N/A" for g in report.gpus})
    measured = f"persistence {'/'.join(persistence)}, MIG {'/'.join(mig_modes)}"
    problems = []
    if off:
        problems.append(f"persistence mode off on {_names(off)} (run nvidia-persistenced)")
    if mig:
        problems.append(f"MIG enabled on {_names(mig)}: the job would get MIG slices, not whole GPUs")
    if problems:
        return check, "WARN", measured, expected, "; ".join(problems)
    return check, "PASS", measured, expected, "as planned"
