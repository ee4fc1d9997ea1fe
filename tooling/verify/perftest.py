"""perftest's `ib_write_bw` report: the bandwidth one node wrote into another's memory over RDMA.

The report is a banner (test name, device, queue pairs, link type), the queue pairs' addresses, then a table
whose header names its unit: `BW average[Gb/sec]` with --report_gbits, `[MB/sec]` (older releases) or
`[MiB/sec]` (newer) without; both of the latter are 2^20 bytes (perftest's format_factor). A timed run (-D)
prints 0.00 as its peak. What perftest prints instead of a table when it fails ("Couldn't connect to
...:18515", "Unable to init the socket connection") is kept, line by line, to say why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tooling.verify.parsers import ParseError

TOOL = "ib_write_bw"
_HEADER = re.compile(r"#bytes\s+#iterations\s+BW peak\[([^\]]+)\]\s+BW average\[([^\]]+)\]")
_GBITS_PER_UNIT = {"Gb/sec": 1.0, "MB/sec": 2**20 * 8 / 1e9, "MiB/sec": 2**20 * 8 / 1e9}
# Lines of a normal report that are not results: rules, the banner's "key : value" settings, the queue
# pairs' addresses, the waiting banner, the timed run's note about the peak and libibverbs' warnings about
# drivers of other vendors. A line saying something failed is an error even when it has a colon
# ("ethernet_read_keys: Couldn't read remote address").
_REPORT_LINE = re.compile(
    r"^(-{10,}|\*+.*\*+|[\w .*/()-]+?\s*:\s*\S.*|(local|remote) address:.*|GID:.*"
    r"|WARNING: BW peak won't be measured.*|libibverbs: Warning:.*)$"
)
_FAILURE = re.compile(r"couldn't|unable|fail|error|invalid|unrecognized|refused|timed out|cannot", re.I)


@dataclass(frozen=True)
class WriteBwRow:
    size_bytes: int
    iterations: int
    peak_gbps: float
    average_gbps: float
    msg_rate_mpps: float


@dataclass(frozen=True)
class WriteBwReport:
    test: str | None  # "RDMA_Write BW Test", "RDMA_Write Post List BW Test", ...
    device: str | None
    queue_pairs: int | None
    link_type: str | None
    rows: tuple[WriteBwRow, ...]
    errors: tuple[str, ...]  # lines that are no part of a report: perftest's reasons for stopping

    @property
    def largest(self) -> WriteBwRow | None:
        """The largest message size's row (a run with -a prints one per size; the largest fills the link)."""
        return max(self.rows, key=lambda r: r.size_bytes, default=None)

    @property
    def setup(self) -> str:
        """What was measured, for a verdict's reason: device, queue pairs, link type."""
        parts = [
            f"device {self.device}" if self.device else "",
            f"{self.queue_pairs} QP" if self.queue_pairs else "",
            self.link_type or "",
        ]
        return ", ".join(p for p in parts if p)


def _setting(text: str, key: str) -> str | None:
    """A banner value: ' Device         : mlx5_5' (two settings may share a line, tab-separated)."""
    match = re.search(rf"(?:^|\s){re.escape(key)}\s*:\s*(\S+)", text, re.MULTILINE)
    return match.group(1) if match else None


def parse_ib_write_bw(text: str) -> WriteBwReport:
    if not text.strip():
        raise ParseError(TOOL, "empty output")
    rows: list[WriteBwRow] = []
    errors: list[str] = []
    factor: float | None = None
    test: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if header := _HEADER.search(stripped):
            unit = header.group(2)
            if unit not in _GBITS_PER_UNIT:
                raise ParseError(TOOL, f"unknown bandwidth unit {unit!r} in {stripped!r}")
            factor = _GBITS_PER_UNIT[unit]
            continue
        tokens = stripped.split()
        if factor is not None and len(tokens) >= 5 and tokens[0].isdigit() and tokens[1].isdigit():
            try:
                peak, average, rate = (float(t) for t in tokens[2:5])
            except ValueError:
                pass
            else:
                rows.append(WriteBwRow(int(tokens[0]), int(tokens[1]), peak * factor, average * factor, rate))
                continue
        if re.search(r"\b(BW|Lat)\w* Test$", stripped) and test is None:
            test = stripped
        elif not _REPORT_LINE.match(stripped) or (
            _FAILURE.search(stripped) and not stripped.startswith("libibverbs: Warning")
        ):
            errors.append(stripped)
    if not rows and not errors:
        raise ParseError(TOOL, "no result row and no error message")
    qps = _setting(text, "Number of qps")
    return WriteBwReport(
        test=test,
        device=_setting(text, "Device"),
        queue_pairs=int(qps) if qps and qps.isdigit() else None,
        link_type=_setting(text, "Link type"),
        rows=tuple(rows),
        errors=tuple(errors),
    )
