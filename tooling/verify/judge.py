"""Judge raw node outputs against a profile: every check -> PASS / WARN / FAIL / SKIP with a reason.

Pure functions over plain data (what verify.yml published), so every verdict is unit-testable without a
cluster. A command that failed, printed nothing or printed something unreadable is a FAIL row naming the
command and its error, never an exception; an unreachable host is one FAIL row and the others are still
judged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tooling.findings import CLUSTER
from tooling.findings import Finding as CheckResult  # verify-node's name for the shared finding row
from tooling.verdicts import Status
from tooling.verify import dcgm_health, gpu_health, gpu_skus
from tooling.verify import infiniband as ib
from tooling.verify import parsers as p
from tooling.verify.dcgm_diag import parse_dcgmi_diag
from tooling.verify.nvidia_xml import NvidiaSmiReport, parse_nvidia_smi_xml
from tooling.verify.perftest import WriteBwReport, parse_ib_write_bw
from tooling.verify.profiles import Band, Profile, VersionRule

_SEVERITY: dict[str, int] = {"PASS": 0, "SKIP": 0, "WARN": 1, "FAIL": 2}
# `--level quick` (before every launch) leaves out what takes minutes; its rows SKIP saying so.
QUICK = "quick"
T = TypeVar("T")


@dataclass(frozen=True)
class CommandOutput:
    """One registered command result, reduced to what the judge reads."""

    rc: int | None = None
    stdout: str = ""
    stderr: str = ""
    msg: str = ""
    skipped: bool = False
    skip_reason: str = ""
    cmd: str = ""

    @classmethod
    def from_result(cls, res: Mapping[str, Any] | None) -> CommandOutput | None:
        if not res:
            return None
        rc = res.get("rc")
        cmd = res.get("cmd") or ""
        return cls(
            rc=int(rc) if isinstance(rc, int | str) and str(rc).lstrip("-").isdigit() else None,
            stdout=str(res.get("stdout") or ""),
            stderr=str(res.get("stderr") or ""),
            msg=str(res.get("msg") or ""),
            skipped=bool(res.get("skipped")),
            skip_reason=str(res.get("skip_reason") or res.get("msg") or ""),
            cmd=str(cmd[0] if isinstance(cmd, list) and cmd else cmd).split(" ")[0],
        )

    def error(self) -> str:
        """Why the command failed, in one line (stderr's last line, else the module message, else rc)."""
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        if lines:
            return lines[-1]
        # ansible-core 2.19's command module reports a missing executable as rc 2, no stderr and this
        # message (older releases: "[Errno 2] No such file or directory: b'mpirun'").
        if self.rc == 2 and self.msg == "Error executing command.":
            what = self.cmd or "the command"
            return f"{what}: not found (not installed or not on PATH)"
        if self.msg:
            return self.msg
        return f"exit status {self.rc}"


@dataclass
class NodeFacts:
    host: str
    accelerator: str = "cpu"
    commands: dict[str, CommandOutput] = field(default_factory=dict)
    level: str = "full"

    @classmethod
    def from_raw(cls, host: str, raw: Mapping[str, Any]) -> NodeFacts:
        commands = {}
        for name, res in (raw.get("commands") or {}).items():
            out = CommandOutput.from_result(res if isinstance(res, Mapping) else None)
            if out is not None:
                commands[name] = out
        return cls(
            host=host,
            accelerator=str(raw.get("accelerator") or "cpu"),
            commands=commands,
            level=str(raw.get("level") or "full"),
        )


@dataclass(frozen=True)
class ProbePair:
    """One measurement between two nodes (iperf3, ib_write_bw): the client's result and, where collected,
    the server's."""

    client: str
    server: str
    output: CommandOutput | None
    server_output: CommandOutput | None = None


def _pairs(section: Any) -> list[ProbePair]:
    pairs = [
        ProbePair(
            str(item.get("client")),
            str(item.get("server")),
            CommandOutput.from_result(item.get("result")),
            CommandOutput.from_result(item.get("server_result")),
        )
        for item in (section or {}).values()
        if isinstance(item, Mapping)
    ]
    return sorted(pairs, key=lambda pair: (pair.client, pair.server))


@dataclass
class ClusterFacts:
    nodes: list[str] = field(default_factory=list)
    iperf: list[ProbePair] = field(default_factory=list)
    iperf_missing: dict[str, str] = field(default_factory=dict)
    gloo: dict[str, CommandOutput] = field(default_factory=dict)
    level: str = "full"
    ib_write_bw: list[ProbePair] = field(default_factory=list)
    ib_write_bw_missing: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> ClusterFacts:
        gloo = {
            str(host): out
            for host, res in (raw.get("gloo") or {}).items()
            if (out := CommandOutput.from_result(res)) is not None
        }
        return cls(
            nodes=[str(n) for n in raw.get("nodes") or []],
            iperf=_pairs(raw.get("iperf")),
            iperf_missing={str(k): str(v) for k, v in (raw.get("iperf_missing") or {}).items()},
            gloo=gloo,
            level=str(raw.get("level") or "full"),
            ib_write_bw=_pairs(raw.get("ib_write_bw")),
            ib_write_bw_missing={str(k): str(v) for k, v in (raw.get("ib_write_bw_missing") or {}).items()},
        )


# --- small verdict helpers -----------------------------------------------------------------------------


def judge_band(value: float, band: Band) -> tuple[Status, str]:
    if band.min is not None and value < band.min:
        return "FAIL", f"below the minimum {band.min:g}"
    if band.max is not None and value > band.max:
        return "FAIL", f"above the maximum {band.max:g}"
    if band.warn_below is not None and value < band.warn_below:
        return "WARN", f"below the target {band.warn_below:g}"
    if band.warn_above is not None and value > band.warn_above:
        return "WARN", f"above the planned {band.warn_above:g}"
    return "PASS", "within range"


def judge_version(found: str, rule: VersionRule) -> tuple[Status, str]:
    try:
        have = p.version_tuple(found)
    except ValueError:
        return "FAIL", f"cannot read version {found!r}"
    if rule.exact is not None:
        want = p.version_tuple(rule.exact)
        # A pin of 2.13.0 accepts 2.13.0+cpu / 2.13.0+cu121: the local tag is the build, not the release.
        if have != want:
            return "FAIL", f"pinned to {rule.exact}"
        return "PASS", "matches the pin"
    if rule.min is not None and have < p.version_tuple(rule.min):
        return "FAIL", f"older than the minimum {rule.min}"
    if rule.warn_below is not None and have < p.version_tuple(rule.warn_below):
        return "WARN", f"older than the target {rule.warn_below}"
    return "PASS", "new enough"


def _fmt(value: float, unit: str) -> str:
    return f"{value:,.2f} {unit}" if value < 100 else f"{value:,.0f} {unit}"


class _Checker:
    """Collects the rows for one host; `parsed` turns a missing/failed/unreadable command into a row."""

    def __init__(self, host: str, node: NodeFacts) -> None:
        self.host = host
        self.node = node
        self.rows: list[CheckResult] = []

    def add(self, check: str, status: Status, measured: str, expected: str, reason: str) -> None:
        self.rows.append(CheckResult(self.host, check, status, measured, expected, reason))

    def parsed(
        self, check: str, expected: str, sources: Iterable[tuple[str, Callable[[str], T]]]
    ) -> T | None:
        """The first source command that ran and parsed; otherwise one row saying why none did."""
        problems: list[str] = []
        skipped: str | None = None
        for command, parse in sources:
            out = self.node.commands.get(command)
            if out is None:
                problems.append(f"{command}: no output collected")
                continue
            if out.skipped:
                skipped = out.skip_reason or f"{command} was skipped"
                continue
            if out.rc not in (0, None):
                problems.append(f"{command} failed (rc {out.rc}): {out.error()}")
                continue
            try:
                return parse(out.stdout)
            except p.ParseError as exc:
                problems.append(str(exc))
        if skipped is not None and not problems:
            self.add(check, "SKIP", "-", expected, skipped)
        else:
            self.add(check, "FAIL", "-", expected, "; ".join(problems) or "no data")
        return None


def _quiet_parse(c: _Checker, sources: Iterable[tuple[str, Callable[[str], T]]]) -> T | None:
    """The first source that ran and parsed, adding no row: for details a better source lacks."""
    for command, parse in sources:
        out = c.node.commands.get(command)
        if out is None or out.skipped or out.rc not in (0, None):
            continue
        try:
            return parse(out.stdout)
        except p.ParseError:
            continue
    return None


def _cpu_checks(c: _Checker, profile: Profile) -> p.CpuInfo | None:
    """Cores from the best source that answered: `lscpu -p` (per-CPU rows from the kernel's topology, right
    on any architecture), then `lscpu -J`, then plain lscpu. Returns the summary form (JSON or text) when
    there is one, for NUMA: only it lists memory-only nodes."""
    expected = profile.cpu_cores.describe("cores")
    summary_sources = [("lscpu_json", p.parse_lscpu_json), ("lscpu", p.parse_lscpu)]
    cpu = c.parsed("cpu.cores", expected, [("lscpu_parse", p.parse_lscpu_parsable), *summary_sources])
    if cpu is None:
        return None
    summary = _quiet_parse(c, summary_sources)
    model = cpu.model_name or (summary.model_name if summary else None)
    per_type = ""
    if summary is not None and summary.core_types > 1 and summary.physical_cores != cpu.physical_cores:
        # `lscpu -p` numbers cores within each core type (util-linux keeps one topology per type), so on a
        # hybrid CPU the (socket, core) pairs of different types collide; the summary counts each type.
        per_type = f"{cpu.physical_cores} by lscpu -p, whose core numbers restart for each core type"
        cpu = summary
    status, reason = judge_band(cpu.physical_cores, profile.cpu_cores)
    measured = f"{cpu.physical_cores} cores ({cpu.layout}, {cpu.threads_per_core} thr/core)"
    notes = [reason, model or "unknown model", *([per_type] if per_type else [])]
    if cpu.offline_cpus:
        notes.append(f"{cpu.offline_cpus} CPUs offline, not counted")
    c.add("cpu.cores", status, measured, expected, "; ".join(notes))
    return summary or cpu


def _cpu_throttle_check(c: _Checker, profile: Profile) -> None:
    """Intel's per-CPU thermal throttle counters; kernels without them (AMD, ARM, most VMs) SKIP."""
    check, expected = "cpu.thermal_throttle", profile.thermal_throttle_events.describe("events")
    out = c.node.commands.get("cpu_throttle")
    if out is None or out.skipped:
        c.add(check, "SKIP", "-", expected, "thermal_throttle counters not collected by this run")
        return
    try:
        throttle = p.parse_cpu_throttle(out.stdout)
    except p.ParseError as exc:
        c.add(check, "FAIL", "-", expected, str(exc))
        return
    if throttle is None:
        c.add(
            check, "SKIP", "-", expected, "no thermal_throttle counters on this kernel (not Intel, or a VM)"
        )
        return
    status, reason = judge_band(throttle.worst, profile.thermal_throttle_events)
    hot = throttle.throttled_cpus
    where = f"throttled CPUs: {', '.join(map(str, hot[:16]))}" if hot else "no CPU throttled since boot"
    c.add(check, status, f"{throttle.worst} (largest counter since boot)", expected, f"{reason}; {where}")


def _memory_check(c: _Checker, profile: Profile) -> None:
    expected = profile.memory_gb.describe("GB")
    mem = c.parsed("memory.total", expected, [("meminfo", p.parse_meminfo), ("free", p.parse_free_bytes)])
    if mem is not None:
        gb = mem.total_bytes / 1e9
        status, reason = judge_band(gb, profile.memory_gb)
        c.add(
            "memory.total", status, f"{_fmt(gb, 'GB')} ({mem.total_bytes / 2**30:,.1f} GiB)", expected, reason
        )


def _numa_check(c: _Checker, profile: Profile, cpu: p.CpuInfo | None) -> None:
    expected = profile.numa_nodes.describe("nodes")
    out = c.node.commands.get("numactl")
    if out is not None and not out.skipped and out.rc in (0, None):
        try:
            numa = p.parse_numactl_hardware(out.stdout)
        except p.ParseError as exc:
            c.add("numa.nodes", "FAIL", "-", expected, str(exc))
            return
        # Ranks are pinned to nodes with CPUs; memory-only nodes (HBM, CXL) are named, not counted.
        with_cpus = [n for n in numa.nodes if n.cpus]
        status, reason = judge_band(len(with_cpus), profile.numa_nodes)
        sizes = ", ".join(
            f"node{n.node}: {len(n.cpus)} cpus {n.size_mb / 1024:.0f} GiB"
            if n.cpus
            else f"node{n.node}: memory only {n.size_mb / 1024:.0f} GiB"
            for n in numa.nodes
        )
        c.add("numa.nodes", status, str(len(with_cpus)), expected, f"{reason}; {sizes}")
        return
    why = "numactl: no output collected" if out is None else f"numactl failed (rc {out.rc}): {out.error()}"
    if cpu is not None and cpu.cpu_numa_nodes:
        # lscpu still knows the topology; the missing numactl (needed for pinning) is the finding.
        status, reason = judge_band(len(cpu.cpu_numa_nodes), profile.numa_nodes)
        memory_only = cpu.memory_only_numa_nodes
        extra = f"; memory-only nodes {', '.join(map(str, memory_only))}" if memory_only else ""
        c.add(
            "numa.nodes",
            "WARN" if status == "PASS" else status,
            str(len(cpu.cpu_numa_nodes)),
            expected,
            f"{why} (count from lscpu){extra}",
        )
    else:
        c.add("numa.nodes", "FAIL", "-", expected, why)


def _disk_check(c: _Checker, profile: Profile) -> None:
    expected = profile.disk_free_gb.describe("GB free")
    disk = c.parsed("disk.free", expected, [("df", p.parse_df)])
    if disk is not None:
        gb = disk.avail_bytes / 1e9
        status, reason = judge_band(gb, profile.disk_free_gb)
        c.add("disk.free", status, _fmt(gb, "GB"), expected, f"{reason}; {disk.mount} ({disk.filesystem})")


def _mpi_check(c: _Checker, profile: Profile) -> None:
    expected = f"Open MPI {profile.openmpi.describe()}"
    mpi = c.parsed("mpi.version", expected, [("mpirun", p.parse_mpirun_version)])
    if mpi is None:
        return
    if mpi.implementation != "Open MPI":
        c.add("mpi.version", "FAIL", f"{mpi.implementation} {mpi.version}", expected, "not Open MPI")
        return
    status, reason = judge_version(mpi.version, profile.openmpi)
    c.add("mpi.version", status, f"Open MPI {mpi.version}", expected, reason)


def _torch_checks(c: _Checker, profile: Profile) -> None:
    expected = profile.torch.describe()
    torch = c.parsed("torch.version", expected, [("torch", p.parse_torch_json)])
    if torch is None:
        # One row is enough: backends cannot be judged without the interpreter answering.
        return
    status, reason = judge_version(torch.version, profile.torch)
    c.add("torch.version", status, torch.version, expected, reason)
    if profile.gloo_required:
        ok = torch.gloo
        c.add(
            "torch.gloo",
            "PASS" if ok else "FAIL",
            "available" if ok else "missing",
            "available",
            "Gloo backend built in" if ok else "torch.distributed.is_gloo_available() is False",
        )
    if c.node.accelerator != "cuda":
        c.add(
            "torch.nccl",
            "SKIP",
            "available" if torch.nccl else "missing",
            "cuda hosts only",
            f"accelerator is {c.node.accelerator}",
        )
    elif profile.nccl_required_on_cuda:
        ok = torch.nccl and torch.cuda_available
        detail = f"cuda {torch.cuda or 'none'}, {torch.device_count} devices visible"
        c.add(
            "torch.nccl",
            "PASS" if ok else "FAIL",
            "available" if torch.nccl else "missing",
            "available",
            detail if ok else f"NCCL or CUDA unusable from torch ({detail})",
        )


# Read from `nvidia-smi -q -x` only; without it they WARN as "not checked" (the count has a CSV fallback).
XML_CHECKS = ("cuda.driver", "gpu.memory_errors", "gpu.pcie_link", "gpu.thermal_throttle", "gpu.modes")
GPU_CHECKS = (
    "gpu.count",
    "gpu.sku",
    *XML_CHECKS,
    "cuda.version",
    "nccl.busbw",
    "nccl.alltoall_busbw",
    "dcgm.diag",
)


def _xml_report(c: _Checker) -> tuple[NvidiaSmiReport | None, str]:
    """The parsed `nvidia-smi -q -x`, or None and why not."""
    out = c.node.commands.get("nvidia_smi_xml")
    if out is None:
        return None, "nvidia-smi -q -x: no output collected"
    if out.skipped:
        return None, out.skip_reason or "nvidia-smi -q -x was skipped"
    if out.rc not in (0, None):
        return None, f"nvidia-smi -q -x failed (rc {out.rc}): {out.error()}"
    try:
        return parse_nvidia_smi_xml(out.stdout), ""
    except p.ParseError as exc:
        return None, str(exc)


def _gpu_count(c: _Checker, profile: Profile, report: NvidiaSmiReport | None) -> p.GpuInventory | None:
    """The count from `nvidia-smi -q -x`, else from the CSV query (a failed row names both sources)."""
    expected = profile.gpus_per_node.describe("GPUs")
    inv = (
        report.inventory()
        if report is not None
        else c.parsed(
            "gpu.count",
            expected,
            [
                ("nvidia_smi_xml", lambda text: parse_nvidia_smi_xml(text).inventory()),
                ("nvidia_smi", p.parse_nvidia_smi_csv),
            ],
        )
    )
    if inv is not None:
        status, reason = judge_band(inv.count, profile.gpus_per_node)
        models = ", ".join(inv.models) or "none"
        drivers = ", ".join(inv.drivers) or "-"
        if inv.errors:
            status, reason = "FAIL", f"nvidia-smi cannot read every GPU: {'; '.join(inv.errors)}"
        elif len(inv.drivers) > 1:
            status, reason = "WARN", f"mixed driver versions {drivers}"
        memory = sorted({g.memory_mib for g in inv.gpus if g.memory_mib})
        sizes = f", {'/'.join(f'{m} MiB' for m in memory)}" if memory else ""
        c.add("gpu.count", status, f"{inv.count} x {models}{sizes}", expected, f"{reason}; driver {drivers}")
    return inv


def _gpu_health(c: _Checker, profile: Profile, report: NvidiaSmiReport | None, why_not: str) -> None:
    if report is None:
        for check in XML_CHECKS:
            c.add(check, "WARN", "-", "read from nvidia-smi -q -x", f"not checked: {why_not}")
        return
    expected = f"CUDA {profile.cuda.describe()}"
    if report.cuda is None:
        c.add(
            "cuda.driver",
            "WARN",
            "-",
            expected,
            f"driver {report.driver or '?'} did not report its CUDA version",
        )
    else:
        status, reason = judge_version(report.cuda, profile.cuda)
        c.add("cuda.driver", status, f"CUDA {report.cuda} (driver {report.driver or '?'})", expected, reason)
    for verdict in (gpu_health.memory_errors(report), gpu_health.pcie_links(report)):
        c.add(*verdict)
    hot, details = gpu_health.thermal_events(report)
    expected = profile.thermal_throttle_events.describe("GPUs held down by heat")
    status, reason = judge_band(hot, profile.thermal_throttle_events)
    c.add(
        "gpu.thermal_throttle",
        status,
        f"{hot} of {len(report.gpus)} GPUs",
        expected,
        f"{reason}; {details}" if details else f"{reason}; no clock held down by heat or power",
    )
    c.add(*gpu_health.modes(report))


@dataclass(frozen=True)
class NcclTest:
    """One nccl-tests binary as verify.yml runs it and the judge reads it."""

    check: str
    command: str  # the name verify.yml publishes its result under
    tool: str
    parse: Callable[[str], p.NcclResult]
    # alltoall_perf does not validate its in-place run (N/A, or a meaningless max error in old releases).
    in_place_validated: bool = True


ALL_REDUCE = NcclTest("nccl.busbw", "nccl_allreduce", "all_reduce_perf", p.parse_all_reduce_perf)
ALL_TO_ALL = NcclTest(
    "nccl.alltoall_busbw", "nccl_alltoall", "alltoall_perf", p.parse_alltoall_perf, in_place_validated=False
)
# verify.yml's exit status when the binary is not under the nccl-tests prefix.
NOT_INSTALLED = 127


def _nccl_failure(out: CommandOutput, test: NcclTest) -> str:
    """Why a run that exited non-zero stopped: nccl-tests prints it on stdout ("Test NCCL failure
    common.cu:..."), not stderr."""
    try:
        parts = test.parse(out.stdout).reasons[:3]
    except p.ParseError:
        parts = []
    if out.stderr.strip() or not parts:
        parts.append(out.error())
    return f"{test.tool} failed (rc {out.rc}): {'; '.join(parts)}"


def _nccl_run_check(c: _Checker, test: NcclTest, band: Band | None, origin: str) -> None:
    """One nccl-tests table: a failed, cut-off or wrong run FAILs; a complete one is judged at its largest
    size against `band`, or reported unjudged (SKIP, the figure shown) where no band applies."""
    expected = band.describe("GB/s") if band else "measured only (no threshold)"
    if c.node.level == QUICK:
        c.add(test.check, "SKIP", "-", expected, "level quick: nccl-tests run at --level full")
        return
    out = c.node.commands.get(test.command)
    if out is not None and not out.skipped and out.rc not in (0, None):
        c.add(test.check, "FAIL", "-", expected, _nccl_failure(out, test))
        return
    nccl = c.parsed(test.check, expected, [(test.command, test.parse)])
    if nccl is None:
        return
    run = f", {nccl.ranks} ranks on {', '.join(nccl.hosts)}" if nccl.ranks else ""
    if not nccl.rows:
        reason = (
            f"{test.tool} failed: " + "; ".join(nccl.reasons[:2])
            if nccl.errors
            else f"incomplete: stopped before its first result{run}"
        )
        c.add(test.check, "FAIL", "-", expected, reason)
        return
    largest = nccl.largest
    assert largest is not None
    busbw = largest.oop_busbw
    if not nccl.complete:
        printed = f"; it printed: {'; '.join(nccl.reasons[:2])}" if nccl.errors else ""
        c.add(
            test.check,
            "FAIL",
            f"stopped after {largest.size_bytes / 2**20:g} MiB ({len(nccl.rows)} sizes{run})",
            expected,
            "incomplete: no 'Avg bus bandwidth' line, the run was cut off or a rank died" + printed,
        )
        return
    measured = (
        f"{busbw:,.1f} GB/s @ {largest.size_bytes / 2**20:g} MiB (avg {nccl.avg_busbw_gbs or 0:,.1f}{run})"
    )
    wrong = nccl.wrong(in_place=test.in_place_validated)
    if nccl.out_of_bounds_ok is False or wrong:
        sizes = ", ".join(f"{r.size_bytes}" for r in wrong[:4])
        c.add(
            test.check,
            "FAIL",
            measured,
            expected,
            f"wrong results: {nccl.out_of_bounds or 0} out-of-bounds values (sizes {sizes or '?'})",
        )
        return
    if band is None:
        c.add(test.check, "SKIP", measured, expected, origin)
        return
    status, reason = judge_band(busbw, band)
    c.add(test.check, status, measured, expected, f"{reason}; {origin}")


def _nccl_checks(c: _Checker, profile: Profile, choice: gpu_skus.SkuChoice) -> None:
    _nccl_run_check(c, ALL_REDUCE, *choice.nccl_band(profile))
    band, origin = choice.alltoall_band(profile)
    out = c.node.commands.get(ALL_TO_ALL.command)
    expected = band.describe("GB/s") if band else "measured only (no threshold)"
    # Missing beside a readable all_reduce_perf row: a build without alltoall_perf, or a record from before
    # verify.yml ran it; nccl.busbw already says whether nccl-tests is installed at all.
    if c.node.level != QUICK and (out is None or out.rc == NOT_INSTALLED):
        why = "alltoall_perf not collected by this run" if out is None else out.error()
        c.add(ALL_TO_ALL.check, "SKIP", "-", expected, f"{why} (see nccl.busbw for nccl-tests itself)")
        return
    _nccl_run_check(c, ALL_TO_ALL, band, origin)


def _gpu_sku_check(
    c: _Checker, choice: gpu_skus.SkuChoice, report: NvidiaSmiReport | None, inv: p.GpuInventory | None
) -> None:
    """Each GPU's memory against its model's (FAIL: a smaller board, or memory gone missing) and its maximum
    PCIe link against the one the model is built for (WARN: a slower slot or riser)."""
    check, models = "gpu.sku", ", ".join(choice.names) or "none"
    sku = choice.sku
    if inv is None or sku is None:
        why = "no GPU list to match" if inv is None else choice.why_generic
        # Mixed models on one node is a finding of its own; a model the table lacks is not.
        status: Status = "WARN" if len(choice.names) > 1 else "SKIP"
        c.add(
            check, status, models, "a GPU model of gpu_skus.yml", f"{why}: generic profile thresholds apply"
        )
        return
    expected = [f"{sku.gpu_memory_gib.describe('GiB')} per GPU"] if sku.gpu_memory_gib else []
    if sku.pcie_gen or sku.pcie_width:
        expected.append(f"PCIe gen {sku.pcie_gen or 'any'} x{sku.pcie_width or 'any'}")
    # A GPU in MIG mode reports less than its whole memory; gpu.modes already warns about MIG.
    mig = [g.label for g in report.gpus if (g.mig or "").lower() == "enabled"] if report else []
    gpus = (
        [(g.label, g.memory_mib) for g in report.gpus if g.label not in mig]
        if report
        else [(f"GPU {g.index}", g.memory_mib) for g in inv.gpus]
    )
    found: dict[Status, list[str]] = {"FAIL": [], "WARN": []}
    memory = sku.gpu_memory_gib
    for label, mib in gpus if memory else []:
        verdict, reason = judge_band(mib / 1024, memory) if mib and memory else ("WARN", "no size reported")
        if verdict in found:
            found[verdict].append(f"{label}: {(mib or 0) / 1024:.1f} GiB, {reason}")
    for g in report.gpus if report else []:
        if sku.pcie_gen and g.pcie_gen and g.pcie_gen[1] < sku.pcie_gen:
            found["WARN"].append(
                f"{g.label}: link at most gen {g.pcie_gen[1]}, the board is built for gen {sku.pcie_gen}"
            )
        if sku.pcie_width and g.pcie_width and g.pcie_width[1] < sku.pcie_width:
            found["WARN"].append(
                f"{g.label}: link at most x{g.pcie_width[1]}, the board is built for x{sku.pcie_width}"
            )
    notes = found["FAIL"] + found["WARN"] or [f"as a {sku.label} should"]
    if report is None and (sku.pcie_gen or sku.pcie_width):
        notes.append("PCIe link not checked (no nvidia-smi -q -x)")
    if mig:
        notes.append(f"memory not checked on {', '.join(mig)} (MIG enabled)")
    sizes = "/".join(f"{m / 1024:.1f} GiB" for m in sorted({m for _, m in gpus if m})) or "memory unknown"
    status = "FAIL" if found["FAIL"] else "WARN" if found["WARN"] else "PASS"
    c.add(
        check,
        status,
        f"{models}: {sizes}",
        ", ".join(expected) or "-",
        f"{'; '.join(notes)} ({choice.origin})",
    )


def _dcgm_check(c: _Checker, profile: Profile) -> None:
    """DCGM's own diagnostic where dcgmi is installed; without it (or at --level quick) one SKIP row."""
    expected = f"dcgmi diag -r {profile.dcgm_diag_level}: every test passes"
    out = c.node.commands.get("dcgm_diag")
    if c.node.level == QUICK or out is None or out.skipped:
        why = (
            "level quick: the DCGM diagnostic runs at --level full"
            if c.node.level == QUICK
            else "dcgmi diag not collected by this run"
            if out is None
            else out.skip_reason or "dcgmi diag was skipped"
        )
        c.add("dcgm.diag", "SKIP", "-", expected, why)
        return
    if out.rc == 127:  # verify.yml's exit status when dcgmi is not on PATH
        c.add("dcgm.diag", "SKIP", "-", expected, f"DCGM is not installed: {out.error()}")
        return
    try:
        # dcgmi exits non-zero when a test fails, and still prints the document that says which.
        diag = parse_dcgmi_diag(out.stdout)
    except p.ParseError as exc:
        # dcgmi prints its own errors ("Error: unable to establish a connection ...") on stdout.
        printed = out.stdout.strip().splitlines()
        said = out.error() if out.stderr.strip() or not printed else printed[-1].strip()
        if out.rc not in (0, None):
            why = f"dcgmi diag failed (rc {out.rc}): {said}"
        else:  # a document that does not read, or no output at all (Ansible's timeout gives a message)
            why = str(exc) if printed else f"{exc}: {out.error()}"
        c.add("dcgm.diag", "FAIL", "-", expected, why)
        return
    for verdict in dcgm_health.verdicts(diag, profile.dcgm_diag_level):
        c.add(*verdict)


def _gpu_checks(c: _Checker, profile: Profile) -> gpu_skus.SkuChoice | None:
    """The GPU rows; the model the GPUs matched (None off CUDA hosts), which the fabric check reads too."""
    if c.node.accelerator != "cuda":
        for check in GPU_CHECKS:
            c.add(check, "SKIP", "-", "cuda hosts only", f"accelerator is {c.node.accelerator}")
        return None
    report, why_not = _xml_report(c)
    inv = _gpu_count(c, profile, report)
    choice = gpu_skus.choose(profile, [g.name for g in inv.gpus] if inv else [])
    _gpu_sku_check(c, choice, report, inv)
    _gpu_health(c, profile, report, why_not)
    expected = f"CUDA {profile.cuda.describe()}"
    release = c.parsed("cuda.version", expected, [("nvcc", p.parse_nvcc_version)])
    if release is not None:
        status, reason = judge_version(release, profile.cuda)
        c.add("cuda.version", status, release, expected, reason)
    _nccl_checks(c, profile, choice)
    _dcgm_check(c, profile)
    return choice


# Best source first: /sys needs no package; ibstat and plain ibv_devinfo (no rate) where it is unreadable.
IB_SOURCES: tuple[tuple[str, Callable[[str], list[ib.IbPort]]], ...] = (
    ("ib_sysfs", ib.parse_sys_ports),
    ("ibstat", ib.parse_ibstat),
    ("ibv_devinfo", ib.parse_ibv_devinfo),
)


def _ib_ports(c: _Checker) -> tuple[list[ib.IbPort] | None, str, list[str]]:
    """The ports of the first source that lists any (and its name); [] when the sources that ran list
    none; None when no source could be read. The problems of the sources tried on the way come along."""
    problems: list[str] = []
    empty_from = ""
    for command, parse in IB_SOURCES:
        out = c.node.commands.get(command)
        if out is None or out.skipped:
            problems.append(f"{command}: {'no output collected' if out is None else out.skip_reason}")
            continue
        if out.rc not in (0, None):
            problems.append(f"{command} failed (rc {out.rc}): {out.error()}")
            continue
        try:
            ports = parse(out.stdout)
        except p.ParseError as exc:
            problems.append(str(exc))
            continue
        if ports:
            return ports, command, problems
        empty_from = empty_from or command
    return ([] if empty_from else None), empty_from, problems


def _ib_check(c: _Checker, profile: Profile, choice: gpu_skus.SkuChoice | None) -> None:
    ports, source, problems = _ib_ports(c)
    want = profile.infiniband
    if want is None:
        measured = ib.summary(ports) if ports else "none"
        c.add("ib.ports", "SKIP", measured, "no RDMA fabric", "the profile expects no InfiniBand/RoCE ports")
        return
    # Off GPU nodes (no model to match) the profile's rate, with nothing to say about it.
    rate, rate_origin = choice.ib_rate(want.port_rate_gbps) if choice else (want.port_rate_gbps, "")
    scope = f" of {', '.join(want.devices)}" if want.devices else ""
    expected = (
        f"{want.ports_per_node.describe('ports')}{scope}, each Active/LinkUp "
        f">= {rate:g} Gb/s {want.link_layer}"
    )
    if not ports:
        why = f"no InfiniBand/RoCE ports ({source} lists none)" if ports == [] else "no port source readable"
        c.add("ib.ports", "FAIL", "0 ports", expected, "; ".join([why, *problems]))
        return
    judged, others = ib.of_fabric(ports, want.devices)
    left_out = f"; not judged (not in infiniband.devices): {ib.summary(others)}" if others else ""
    if not judged:
        found = ", ".join(p.label for p in ports)
        c.add(
            "ib.ports",
            "FAIL",
            f"0 ports{scope} (from {source})",
            expected,
            f"no port matches infiniband.devices {want.devices}; the node has {found}",
        )
        return
    fails: list[str] = []
    warns: list[str] = []
    count_status, count_reason = judge_band(len(judged), want.ports_per_node)
    if count_status != "PASS":
        (fails if count_status == "FAIL" else warns).append(f"{len(judged)} ports: {count_reason}")
    for port in judged:
        port_fails, port_warns = ib.port_problems(port, rate, want.link_layer)
        fails += port_fails
        warns += port_warns
    status: Status = "FAIL" if fails else "WARN" if warns else "PASS"
    reason = "; ".join(fails + warns) or "every port up at the fabric's rate"
    reason += left_out + (f" ({rate_origin})" if rate_origin else "")
    c.add("ib.ports", status, f"{ib.summary(judged)} (from {source})", expected, reason)


def judge_node(node: NodeFacts, profile: Profile) -> list[CheckResult]:
    return _judge_node(node, profile)[0]


def _judge_node(node: NodeFacts, profile: Profile) -> tuple[list[CheckResult], gpu_skus.SkuChoice | None]:
    """The node's rows and the GPU model its GPUs matched (None off CUDA hosts)."""
    c = _Checker(node.host, node)
    c.add("ssh", "PASS", "reached", "reachable", f"accelerator {node.accelerator}")
    cpu = _cpu_checks(c, profile)
    _memory_check(c, profile)
    _numa_check(c, profile, cpu)
    _cpu_throttle_check(c, profile)
    _disk_check(c, profile)
    _mpi_check(c, profile)
    _torch_checks(c, profile)
    choice = _gpu_checks(c, profile)
    _ib_check(c, profile, choice)
    return c.rows, choice


# Each node's fabric port rate (its GPU model's, else the profile's) and where that figure came from.
PortRates = Mapping[str, tuple[float, str]]


def _peer_said(out: CommandOutput | None) -> list[str]:
    """What an ib_write_bw server printed that explains a failed pair: stderr first, where perftest and getopt
    write their errors (a usage text may follow on stdout)."""
    if out is None or out.skipped:
        return []
    try:
        return list(parse_ib_write_bw(f"{out.stderr}\n{out.stdout}").errors[:2])
    except p.ParseError:
        return [out.error()] if out.rc not in (0, None) else []


def _ib_write_bw_row(pair: ProbePair, band: Band, expected: str, origin: str) -> CheckResult:
    """One pair: the client's average (largest message size) against the band; a failed run FAILs with
    what both ends printed."""
    check = f"ib.write_bw -> {pair.server}"
    who = f"{pair.client} writing into {pair.server}"
    out = pair.output
    if out is None or out.skipped:
        status: Status = "SKIP" if out is not None else "FAIL"
        why = out.skip_reason if out is not None else "no output collected"
        return CheckResult(pair.client, check, status, "-", expected, f"{who}: {why}")
    unreadable = ""
    try:
        report: WriteBwReport | None = parse_ib_write_bw(f"{out.stderr}\n{out.stdout}")
    except p.ParseError as exc:
        report, unreadable = None, str(exc)
    largest = report.largest if report else None
    if report is None or largest is None or out.rc not in (0, None):
        said = list(report.errors[:2]) if report and report.errors else [unreadable or out.error()]
        server = _peer_said(pair.server_output)
        said += [f"server {pair.server} said: {'; '.join(server)}"] if server else []
        return CheckResult(
            pair.client,
            check,
            "FAIL",
            "-",
            expected,
            f"{who}: ib_write_bw failed (rc {out.rc}): {'; '.join(said)}",
        )
    status, reason = judge_band(largest.average_gbps, band)
    measured = f"{_fmt(largest.average_gbps, 'Gb/s')} average ({largest.size_bytes} B messages)"
    setup = f" ({report.setup})" if report.setup else ""
    return CheckResult(pair.client, check, status, measured, expected, f"{who}{setup}: {reason}; {origin}")


def _ib_write_bw_rows(cluster: ClusterFacts, profile: Profile, port_rates: PortRates) -> list[CheckResult]:
    """ib_write_bw between the ring's pairs, each against the fraction of the slower end's port rate; nodes
    without perftest SKIP saying so (the port check still reads their fabric)."""
    want = profile.infiniband
    generic = f"{want.write_bw_fraction.describe()} x the port rate" if want else "no RDMA fabric"
    skip = (
        "the profile expects no InfiniBand/RoCE fabric"
        if want is None
        else "fewer than 2 nodes to pair"
        if len(cluster.nodes) < 2
        else "level quick: ib_write_bw runs at --level full"
        if cluster.level == QUICK
        else "ib_write_bw not collected by this run"
        if not cluster.ib_write_bw and not cluster.ib_write_bw_missing
        else ""
    )
    if skip or want is None:
        return [CheckResult(CLUSTER, "ib.write_bw", "SKIP", "-", generic, skip)]
    rows = [
        CheckResult(
            host, "ib.write_bw", "SKIP", "-", generic, f"{why}: RDMA bandwidth to its peers not measured"
        )
        for host, why in sorted(cluster.ib_write_bw_missing.items())
    ]
    fraction = want.write_bw_fraction
    for pair in cluster.ib_write_bw:
        ends = [
            port_rates.get(h, (want.port_rate_gbps, "the profile's rate")) for h in (pair.server, pair.client)
        ]
        rate, origin = min(ends)
        band = Band(**{k: v * rate for k, v in fraction.model_dump(exclude_none=True).items()})
        expected = f"{band.describe('Gb/s')}: {fraction.describe()} x {rate:g} Gb/s"
        rows.append(_ib_write_bw_row(pair, band, expected, origin))
    return rows


def judge_network(
    cluster: ClusterFacts, profile: Profile, port_rates: PortRates | None = None
) -> list[CheckResult]:
    rows: list[CheckResult] = _ib_write_bw_rows(cluster, profile, port_rates or {})
    expected = profile.inter_node_gbps.describe("Gbps")
    if len(cluster.nodes) < 2:
        rows.append(CheckResult(CLUSTER, "net.iperf3", "SKIP", "-", expected, "fewer than 2 nodes to pair"))
    elif cluster.level == QUICK:
        rows.append(
            CheckResult(
                CLUSTER, "net.iperf3", "SKIP", "-", expected, "level quick: iperf3 runs at --level full"
            )
        )
    for host, why in sorted(cluster.iperf_missing.items()):
        rows.append(CheckResult(host, "net.iperf3", "FAIL", "-", expected, why))
    for pair in cluster.iperf:
        check = f"net.iperf3 -> {pair.server}"
        out = pair.output
        if out is None:
            rows.append(CheckResult(pair.client, check, "FAIL", "-", expected, "no output collected"))
            continue
        if out.skipped:
            rows.append(CheckResult(pair.client, check, "SKIP", "-", expected, out.skip_reason or "skipped"))
            continue
        try:
            result = p.parse_iperf3(out.stdout)
        except p.ParseError as exc:
            detail = str(exc) if out.stdout.strip() else f"iperf3 failed (rc {out.rc}): {out.error()}"
            rows.append(CheckResult(pair.client, check, "FAIL", "-", expected, detail))
            continue
        status, reason = judge_band(result.received_gbps, profile.inter_node_gbps)
        if result.retransmits is not None:
            reason += f"; {result.retransmits} TCP retransmits"
        rows.append(
            CheckResult(pair.client, check, status, _fmt(result.received_gbps, "Gbps"), expected, reason)
        )

    expected = profile.gloo_busbw_gbs.describe("GB/s")
    if len(cluster.nodes) < 2:
        rows.append(CheckResult(CLUSTER, "net.gloo_allreduce", "SKIP", "-", expected, "fewer than 2 nodes"))
        return rows
    answers: list[p.GlooResult] = []
    problems: list[str] = []
    for host, out in sorted(cluster.gloo.items()):
        if out.skipped:
            continue
        if out.rc not in (0, None):
            problems.append(f"{host}: torchrun failed (rc {out.rc}): {out.error()}")
            continue
        if out.stdout.strip():
            try:
                answers.append(p.parse_gloo_probe(out.stdout))
            except p.ParseError as exc:
                problems.append(f"{host}: {exc}")
    nodes = ", ".join(cluster.nodes)
    if problems or not answers:
        reason = "; ".join(problems) or "no rank printed a result"
        rows.append(
            CheckResult(CLUSTER, "net.gloo_allreduce", "FAIL", "-", expected, f"across {nodes}: {reason}")
        )
        return rows
    gloo = answers[0]
    status, reason = judge_band(gloo.busbw_gbs, profile.gloo_busbw_gbs)
    measured = f"{gloo.busbw_gbs:,.3f} GB/s busbw ({gloo.world_size} ranks, {gloo.size_bytes / 2**20:g} MiB)"
    rows.append(
        CheckResult(CLUSTER, "net.gloo_allreduce", status, measured, expected, f"{reason}; across {nodes}")
    )
    rows.extend(_gloo_alltoall_rows(cluster, profile, nodes))
    return rows


def _gloo_alltoall_rows(cluster: ClusterFacts, profile: Profile, nodes: str) -> list[CheckResult]:
    """The 2c "all-to-all" figure on CPU, from the same probe run. GPU nodes: nccl.alltoall_busbw."""
    band = profile.gloo_alltoall_busbw_gbs
    expected = band.describe("GB/s") if band else "measured (no band in the profile)"
    for out in cluster.gloo.values():
        if out.skipped or out.rc not in (0, None) or not out.stdout.strip():
            continue
        try:
            found = p.parse_gloo_all_to_all(out.stdout)
        except p.ParseError as exc:
            return [CheckResult(CLUSTER, "net.gloo_alltoall", "FAIL", "-", expected, str(exc))]
        if found is None:
            continue
        status, reason = judge_band(found.busbw_gbs, band) if band else ("PASS", "no band to judge by")
        measured = (
            f"{found.busbw_gbs:,.3f} GB/s busbw ({found.world_size} ranks, {found.size_bytes / 2**20:g} MiB)"
        )
        return [
            CheckResult(CLUSTER, "net.gloo_alltoall", status, measured, expected, f"{reason}; across {nodes}")
        ]
    return []


def judge_all(
    profile: Profile,
    hosts: list[str],
    raw_nodes: Mapping[str, Mapping[str, Any]],
    raw_cluster: Mapping[str, Any] | None,
    unreachable: Mapping[str, str],
    failures: Mapping[str, list[str]] | None = None,
) -> list[CheckResult]:
    """Rows for every host asked for (in order), then the cluster-wide network rows."""
    rows: list[CheckResult] = []
    failures = failures or {}
    port_rates: dict[str, tuple[float, str]] = {}
    for host in hosts:
        if host in unreachable:
            rows.append(CheckResult(host, "ssh", "FAIL", "unreachable", "reachable", unreachable[host]))
            continue
        raw = raw_nodes.get(host)
        if raw is None:
            why = "; ".join(failures.get(host, [])) or "the play published no data for this host"
            rows.append(CheckResult(host, "verify", "FAIL", "-", "raw outputs", why))
            continue
        node_rows, choice = _judge_node(NodeFacts.from_raw(host, raw), profile)
        rows.extend(node_rows)
        if choice is not None and profile.infiniband is not None:
            port_rates[host] = choice.ib_rate(profile.infiniband.port_rate_gbps)
        # A task that broke after the node's data was published (e.g. the network play) still counts.
        rows.extend(
            CheckResult(host, "playbook", "FAIL", "-", "no task errors", why)
            for why in failures.get(host, [])
        )
    if raw_cluster is not None:
        rows.extend(judge_network(ClusterFacts.from_raw(raw_cluster), profile, port_rates))
    return rows


def overall(rows: Iterable[CheckResult]) -> Status:
    worst = max((_SEVERITY[r.status] for r in rows), default=0)
    return "FAIL" if worst == 2 else "WARN" if worst == 1 else "PASS"
