"""`nvidia-smi -q -x`: what verify-node reads of each GPU beyond its name and memory.

The XML changes between drivers, and each variant seen in real outputs is read:
- ECC counters are per memory kind on Ampere and later (`sram_uncorrectable_parity`, `dram_correctable`,
  ...) and per bit class on older boards (`single_bit/total` corrected, `double_bit/total` uncorrected);
- the throttle block is `<clocks_throttle_reasons>` with `clocks_throttle_reason_*` tags up to the 530
  drivers and `<clocks_event_reasons>` with `clocks_event_reason_*` tags from 535 on;
- `<remapped_rows>` is a bare "N/A" on boards without row remapping;
- a value may be wrapped onto the next line inside its tag.
A reading the board does not support ("N/A") is None, never 0, so "not reported" is not "healthy".
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from tooling.verify.parsers import Gpu, GpuInventory, ParseError, reject_nvidia_smi_table

TOOL = "nvidia-smi -q -x"
COMMAND = "nvidia-smi -q -x"

# Clock-limiting reasons that mean heat. HW slowdown is engaged by over-temperature as well as by the
# power brake; like `tooling check` (which reads the same reasons as a bitmask), it is counted as thermal.
THERMAL_REASONS = ("hw_thermal_slowdown", "sw_thermal_slowdown", "hw_slowdown")
POWER_REASONS = ("sw_power_cap", "hw_power_brake_slowdown")


@dataclass(frozen=True)
class GpuDetail:
    index: int  # position in the XML: nvidia-smi lists GPUs in the order of their indices
    bus_id: str
    name: str
    memory_mib: int | None
    persistence: str | None
    mig: str | None
    ecc_volatile_uncorrected: int | None
    ecc_aggregate_uncorrected: int | None
    ecc_aggregate_corrected: int | None
    retired_pages: int | None
    retirement_pending: bool | None
    remap_pending: bool | None
    remap_failure: bool | None
    clock_reasons: tuple[str, ...]  # the active ones, without the clocks_*_reason_ prefix
    pcie_gen: tuple[int, int] | None  # (current, max)
    pcie_width: tuple[int, int] | None  # (current, max) lanes

    @property
    def label(self) -> str:
        return f"GPU {self.index} ({self.bus_id})"

    @property
    def thermal_reasons(self) -> list[str]:
        return [r for r in self.clock_reasons if r in THERMAL_REASONS]

    @property
    def power_reasons(self) -> list[str]:
        return [r for r in self.clock_reasons if r in POWER_REASONS]


@dataclass(frozen=True)
class NvidiaSmiReport:
    driver: str | None
    cuda: str | None  # the newest CUDA the driver supports (12.x, 13.x)
    gpus: list[GpuDetail]
    attached: int | None = None  # <attached_gpus>: the driver's own count

    def inventory(self) -> GpuInventory:
        """The same inventory the CSV fallback gives, so the count row reads either source alike. A
        driver that counts more GPUs than it describes could not query the others: that is an error."""
        driver = self.driver or "unknown"
        errors = []
        if self.attached is not None and self.attached != len(self.gpus):
            errors.append(f"nvidia-smi counts {self.attached} attached GPUs but describes {len(self.gpus)}")
        return GpuInventory([Gpu(g.index, g.name, driver, g.memory_mib) for g in self.gpus], errors=errors)


_UNSUPPORTED = {"", "N/A", "[N/A]", "Requested functionality has been deprecated"}


def _text(element: ET.Element | None, path: str) -> str | None:
    found = element.find(path) if element is not None else None
    if found is None or found.text is None:
        return None
    value = " ".join(found.text.split())
    return None if value in _UNSUPPORTED else value


def _int(element: ET.Element | None, path: str) -> int | None:
    value = _text(element, path)
    match = re.match(r"(\d+)", value or "")
    return int(match.group(1)) if match else None


def _yes(element: ET.Element | None, path: str) -> bool | None:
    value = _text(element, path)
    return None if value is None else value.lower() == "yes"


def _pair(element: ET.Element | None, current: str, maximum: str) -> tuple[int, int] | None:
    now, top = _int(element, current), _int(element, maximum)
    return (now, top) if now is not None and top is not None else None


def _ecc(block: ET.Element | None) -> tuple[int | None, int | None]:
    """(uncorrected, corrected) error counts of a <volatile> or <aggregate> block."""
    if block is None:
        return None, None
    if block.find("double_bit") is not None or block.find("single_bit") is not None:
        return _int(block, "double_bit/total"), _int(block, "single_bit/total")
    uncorrected: list[int] = []
    corrected: list[int] = []
    for leaf in block:
        value = _int(block, leaf.tag)
        if value is None:
            continue
        if "uncorrectable" in leaf.tag:
            uncorrected.append(value)
        elif "correctable" in leaf.tag:
            corrected.append(value)
    return (sum(uncorrected) if uncorrected else None, sum(corrected) if corrected else None)


def _retired(gpu: ET.Element) -> tuple[int | None, bool | None]:
    block = gpu.find("retired_pages")
    counts = [
        _int(block, f"{kind}/retired_count")
        for kind in ("multiple_single_bit_retirement", "double_bit_retirement")
    ]
    known = [c for c in counts if c is not None]
    pending = [_yes(block, tag) for tag in ("pending_retirement", "pending_blacklist")]
    flags = [p for p in pending if p is not None]
    return (sum(known) if known else None, any(flags) if flags else None)


def _clock_reasons(gpu: ET.Element) -> tuple[str, ...]:
    for block_tag, prefix in (
        ("clocks_event_reasons", "clocks_event_reason_"),
        ("clocks_throttle_reasons", "clocks_throttle_reason_"),
    ):
        block = gpu.find(block_tag)
        if block is not None:
            return tuple(
                leaf.tag.removeprefix(prefix)
                for leaf in block
                if leaf.tag.startswith(prefix) and (_text(block, leaf.tag) or "").lower() == "active"
            )
    return ()


def _gpu(index: int, gpu: ET.Element) -> GpuDetail:
    volatile_unc, _ = _ecc(gpu.find("ecc_errors/volatile"))
    aggregate_unc, aggregate_cor = _ecc(gpu.find("ecc_errors/aggregate"))
    retired, pending = _retired(gpu)
    remap = gpu.find("remapped_rows")
    link = gpu.find("pci/pci_gpu_link_info")
    return GpuDetail(
        index=index,
        bus_id=gpu.get("id") or _text(gpu, "pci/pci_bus_id") or "?",
        name=_text(gpu, "product_name") or "unknown GPU",
        memory_mib=_int(gpu, "fb_memory_usage/total"),
        persistence=_text(gpu, "persistence_mode"),
        mig=_text(gpu, "mig_mode/current_mig"),
        ecc_volatile_uncorrected=volatile_unc,
        ecc_aggregate_uncorrected=aggregate_unc,
        ecc_aggregate_corrected=aggregate_cor,
        retired_pages=retired,
        retirement_pending=pending,
        remap_pending=_yes(remap, "remapped_row_pending"),
        remap_failure=_yes(remap, "remapped_row_failure"),
        clock_reasons=_clock_reasons(gpu),
        pcie_gen=_pair(link, "pcie_gen/current_link_gen", "pcie_gen/max_link_gen"),
        pcie_width=_pair(link, "link_widths/current_link_width", "link_widths/max_link_width"),
    )


def parse_nvidia_smi_xml(text: str) -> NvidiaSmiReport:
    body = text.strip()
    if not body:
        raise ParseError(TOOL, "no output")
    if "NVIDIA-SMI has failed" in body or "couldn't communicate with the NVIDIA driver" in body:
        raise ParseError(TOOL, body.splitlines()[0])
    reject_nvidia_smi_table(body, TOOL, f"the XML of `{COMMAND}`")
    if "<!ENTITY" in body:
        # nvidia-smi declares no entities; refusing them keeps a hostile node from expanding any.
        raise ParseError(TOOL, "the XML declares entities, which nvidia-smi never does")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ParseError(TOOL, f"not XML ({exc})") from None
    if root.tag != "nvidia_smi_log":
        raise ParseError(TOOL, f"expected an <nvidia_smi_log> document, got <{root.tag}>")
    gpus = [_gpu(i, element) for i, element in enumerate(root.findall("gpu"))]
    if not gpus:
        attached = _text(root, "attached_gpus") or "?"
        raise ParseError(TOOL, f"no <gpu> element (attached_gpus: {attached})")
    return NvidiaSmiReport(
        _text(root, "driver_version"), _text(root, "cuda_version"), gpus, _int(root, "attached_gpus")
    )
