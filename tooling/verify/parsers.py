"""Parsers for the raw outputs verify.yml collects on a node.

Each takes the text a tool printed and returns a small frozen dataclass, or raises ParseError naming the
tool and what was missing: an empty or garbled output is a finding about the node, never a crash.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any


class ParseError(ValueError):
    def __init__(self, tool: str, reason: str) -> None:
        super().__init__(f"{tool}: {reason}")
        self.tool = tool
        self.reason = reason


def version_tuple(text: str) -> tuple[int, ...]:
    """'2.13.0+cpu' -> (2, 13, 0); '12.4' -> (12, 4). Raises ValueError without a leading number."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", text)
    if not match:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(part) for part in match.group(1).split("."))


def expand_cpu_list(text: str) -> list[int]:
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11] (the kernel's cpulist format)."""
    cpus: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if "-" in part:
            low, high = part.split("-", 1)
            cpus.extend(range(int(low), int(high) + 1))
        else:
            cpus.append(int(part))
    return cpus


def _require(text: str, tool: str) -> str:
    if not text or not text.strip():
        raise ParseError(tool, "no output")
    return text


# --- CPU -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuInfo:
    logical_cpus: int
    sockets: int
    cores_per_socket: int
    threads_per_core: int
    model_name: str | None
    numa_cpus: dict[int, list[int]] = field(default_factory=dict)

    @property
    def physical_cores(self) -> int:
        return self.sockets * self.cores_per_socket

    @property
    def numa_nodes(self) -> int:
        return len(self.numa_cpus)


def _cpu_info_from_fields(fields: dict[str, str], tool: str) -> CpuInfo:
    def number(key: str) -> int:
        value = fields.get(key)
        if value is None:
            raise ParseError(tool, f"no {key!r} line")
        try:
            return int(value)
        except ValueError:
            raise ParseError(tool, f"{key!r} is {value!r}, expected a number") from None

    numa: dict[int, list[int]] = {}
    for key, value in fields.items():
        match = re.fullmatch(r"NUMA node(\d+) CPU\(s\)", key)
        if match:
            numa[int(match.group(1))] = expand_cpu_list(value) if value.strip() else []
    return CpuInfo(
        logical_cpus=number("CPU(s)"),
        sockets=number("Socket(s)"),
        cores_per_socket=number("Core(s) per socket"),
        threads_per_core=number("Thread(s) per core"),
        model_name=fields.get("Model name") or None,
        numa_cpus=dict(sorted(numa.items())),
    )


def parse_lscpu(text: str) -> CpuInfo:
    """Plain `lscpu` (flat when piped, indented on a terminal: both are accepted)."""
    tool = "lscpu"
    fields: dict[str, str] = {}
    for line in _require(text, tool).splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key:
            fields.setdefault(key.strip(), value.strip())
    return _cpu_info_from_fields(fields, tool)


def parse_lscpu_json(text: str) -> CpuInfo:
    """`lscpu -J`: util-linux 2.38 prints a flat list, later releases nest sections under `children`."""
    tool = "lscpu -J"
    try:
        data = json.loads(_require(text, tool))
    except json.JSONDecodeError as exc:
        raise ParseError(tool, f"not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("lscpu"), list):
        raise ParseError(tool, "expected an object with an 'lscpu' list")
    fields: dict[str, str] = {}

    def walk(entries: list[Any]) -> None:
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            name = str(entry.get("field", "")).strip().rstrip(":")
            if name and entry.get("data") is not None:
                fields.setdefault(name, str(entry["data"]).strip())
            walk(entry.get("children") or [])

    walk(data["lscpu"])
    return _cpu_info_from_fields(fields, tool)


# --- NUMA ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NumaNode:
    node: int
    cpus: list[int]
    size_mb: int
    free_mb: int


@dataclass(frozen=True)
class NumaInfo:
    nodes: list[NumaNode]
    distances: list[list[int]]

    @property
    def count(self) -> int:
        return len(self.nodes)


def parse_numactl_hardware(text: str) -> NumaInfo:
    tool = "numactl --hardware"
    body = _require(text, tool)
    if "No NUMA available" in body:
        raise ParseError(tool, "no NUMA available on this system (kernel without NUMA support?)")
    available = re.search(r"^available:\s*(\d+) nodes", body, re.MULTILINE)
    if not available:
        raise ParseError(tool, "no 'available: N nodes' line")
    cpus: dict[int, list[int]] = {}
    size: dict[int, int] = {}
    free: dict[int, int] = {}
    for match in re.finditer(r"^node (\d+) cpus:(.*)$", body, re.MULTILINE):
        cpus[int(match.group(1))] = [int(c) for c in match.group(2).split()]
    for match in re.finditer(r"^node (\d+) (size|free): (\d+) MB", body, re.MULTILINE):
        (size if match.group(2) == "size" else free)[int(match.group(1))] = int(match.group(3))
    expected = int(available.group(1))
    if len(cpus) != expected or set(size) != set(cpus):
        raise ParseError(
            tool, f"says {expected} nodes but lists {len(cpus)} with cpus and {len(size)} with size"
        )
    distances: list[list[int]] = []
    lines = body.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("node distances:"):
            for row in lines[i + 2 : i + 2 + expected]:
                _, _, values = row.partition(":")
                distances.append([int(v) for v in values.split()])
    nodes = [NumaNode(n, cpus[n], size[n], free.get(n, 0)) for n in sorted(cpus)]
    return NumaInfo(nodes=nodes, distances=distances)


# --- memory and disk -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemInfo:
    total_bytes: int
    available_bytes: int | None


def parse_meminfo(text: str) -> MemInfo:
    tool = "/proc/meminfo"
    values: dict[str, int] = {}
    for line in _require(text, tool).splitlines():
        match = re.match(r"^(\w+):\s+(\d+)(?:\s+kB)?\s*$", line)
        if match:
            values[match.group(1)] = int(match.group(2)) * 1024
    if "MemTotal" not in values:
        raise ParseError(tool, "no MemTotal line")
    return MemInfo(total_bytes=values["MemTotal"], available_bytes=values.get("MemAvailable"))


def parse_free_bytes(text: str) -> MemInfo:
    """`free -b`: the Mem: row, columns total used free shared buff/cache available."""
    tool = "free -b"
    for line in _require(text, tool).splitlines():
        if line.startswith("Mem:"):
            parts = line.split()
            try:
                total = int(parts[1])
                available = int(parts[6]) if len(parts) > 6 else None
            except (IndexError, ValueError):
                raise ParseError(tool, f"cannot read the Mem: row {line.strip()!r}") from None
            return MemInfo(total_bytes=total, available_bytes=available)
    raise ParseError(tool, "no 'Mem:' row")


@dataclass(frozen=True)
class DiskUsage:
    path: str  # the directory df was pointed at, when the command names it ("" otherwise)
    filesystem: str
    size_bytes: int
    used_bytes: int
    avail_bytes: int
    mount: str

    @property
    def free_ratio(self) -> float:
        # df's Available excludes root's reserve: what the trainer can really still write.
        return self.avail_bytes / self.size_bytes if self.size_bytes else 0.0


def parse_df(text: str) -> DiskUsage:
    """`df -B1 PATH` or `df -P -B1 PATH`, after an optional `path DIR` line (`tooling check` names the
    directory it measured): the filesystem row after the header, which coreutils may wrap after a long
    device name. The one df reader of `verify-node` and `check`."""
    tool = "df"
    path = ""
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("path "):
            path = line[5:].strip()
        elif line.strip():
            lines.append(line)
    header = next((i for i, line in enumerate(lines) if line.startswith("Filesystem")), None)
    if header is None:
        raise ParseError(tool, "no filesystem line in the output" if lines else "no output")
    tokens = " ".join(lines[header + 1 :]).split()
    if len(tokens) < 6:
        raise ParseError(tool, "no filesystem line in the output")
    try:
        size, used, available = (int(t) for t in tokens[1:4])
    except ValueError:
        raise ParseError(tool, f"expected byte counts, got {tokens[1:4]}") from None
    return DiskUsage(path, tokens[0], size, used, available, " ".join(tokens[5:]))


# --- MPI and torch -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MpiInfo:
    implementation: str
    version: str


def parse_mpirun_version(text: str) -> MpiInfo:
    tool = "mpirun --version"
    body = _require(text, tool)
    match = re.search(r"\(Open MPI\)\s+(\d+(?:\.\d+)+\S*)", body)
    if match:
        return MpiInfo("Open MPI", match.group(1))
    match = re.search(r"HYDRA build details:.*?Version:\s+(\S+)", body, re.DOTALL)
    if match:
        return MpiInfo("MPICH", match.group(1))
    match = re.search(r"Intel\(R\) MPI Library.*?Version (\S+)", body)
    if match:
        return MpiInfo("Intel MPI", match.group(1))
    raise ParseError(tool, f"unrecognised output {body.strip().splitlines()[0][:80]!r}")


@dataclass(frozen=True)
class TorchInfo:
    version: str
    cuda: str | None
    cuda_available: bool
    device_count: int
    gloo: bool
    nccl: bool


def _last_json_object(text: str, tool: str) -> dict[str, Any]:
    # Libraries may print warnings first; the probe's answer is the last line that is a JSON object.
    for line in reversed(_require(text, tool).strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ParseError(tool, f"not JSON ({exc.msg})") from None
            if isinstance(data, dict):
                return data
    raise ParseError(tool, "no JSON object in the output")


def parse_torch_json(text: str) -> TorchInfo:
    tool = "torch probe"
    data = _last_json_object(text, tool)
    if "torch" not in data:
        raise ParseError(tool, "no 'torch' version key")
    return TorchInfo(
        version=str(data["torch"]),
        cuda=str(data["cuda"]) if data.get("cuda") else None,
        cuda_available=bool(data.get("cuda_available")),
        device_count=int(data.get("device_count") or 0),
        gloo=bool(data.get("gloo")),
        nccl=bool(data.get("nccl")),
    )


# --- GPUs ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    driver: str
    memory_mib: int | None


@dataclass(frozen=True)
class GpuInventory:
    gpus: list[Gpu]
    errors: list[str]

    @property
    def count(self) -> int:
        return len(self.gpus)

    @property
    def models(self) -> list[str]:
        return sorted({g.name for g in self.gpus})

    @property
    def drivers(self) -> list[str]:
        return sorted({g.driver for g in self.gpus})


def parse_nvidia_smi_csv(text: str) -> GpuInventory:
    """`nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader`.

    A GPU nvidia-smi cannot talk to shows up as a free-text line in place of its row ("Unable to determine
    the device handle for GPU...") or as "[Unknown Error]" / "[GPU requires reset]" fields.
    """
    tool = "nvidia-smi"
    body = _require(text, tool)
    if "NVIDIA-SMI has failed" in body or "couldn't communicate with the NVIDIA driver" in body:
        raise ParseError(tool, body.strip().splitlines()[0])
    gpus: list[Gpu] = []
    errors: list[str] = []
    for line in body.splitlines():
        if not line.strip():
            continue
        row = next(csv.reader(io.StringIO(line), skipinitialspace=True), [])
        if len(row) != 4 or not row[0].strip().isdigit():
            errors.append(", ".join(row).strip())
            continue
        index, name, driver, memory = (cell.strip() for cell in row)
        broken = [cell for cell in (name, driver, memory) if cell.startswith("[")]
        if broken:
            errors.append(f"GPU {index}: {broken[0]}")
            continue
        mem = re.match(r"(\d+)\s*MiB", memory)
        gpus.append(Gpu(int(index), name, driver, int(mem.group(1)) if mem else None))
    if not gpus and not errors:
        raise ParseError(tool, "no GPU rows")
    return GpuInventory(gpus=gpus, errors=errors)


def parse_nvcc_version(text: str) -> str:
    tool = "nvcc --version"
    match = re.search(r"release (\d+\.\d+)", _require(text, tool))
    if not match:
        raise ParseError(tool, "no 'release X.Y' in the output")
    return match.group(1)


@dataclass(frozen=True)
class NcclRow:
    size_bytes: int
    count: int
    oop_time_us: float
    oop_algbw: float
    oop_busbw: float
    oop_wrong: int | None
    ip_time_us: float
    ip_algbw: float
    ip_busbw: float
    ip_wrong: int | None


@dataclass(frozen=True)
class NcclResult:
    rows: list[NcclRow]
    avg_busbw_gbs: float | None
    out_of_bounds: int | None
    out_of_bounds_ok: bool | None
    gpus: int | None
    errors: list[str]

    @property
    def peak_busbw_gbs(self) -> float:
        return max((max(r.oop_busbw, r.ip_busbw) for r in self.rows), default=0.0)

    @property
    def largest(self) -> NcclRow | None:
        return max(self.rows, key=lambda r: r.size_bytes, default=None)

    @property
    def wrong_rows(self) -> list[NcclRow]:
        return [r for r in self.rows if (r.oop_wrong or 0) > 0 or (r.ip_wrong or 0) > 0]


def _wrong(token: str) -> int | None:
    # "N/A" when validation is off (-c 0); otherwise printed with %g, e.g. 4.1943e+06.
    return None if token == "N/A" else int(float(token))


def parse_all_reduce_perf(text: str) -> NcclResult:
    """nccl-tests `all_reduce_perf` (2.x): header, one row per size, footer with the verdict lines."""
    tool = "all_reduce_perf"
    body = _require(text, tool)
    rows: list[NcclRow] = []
    errors: list[str] = []
    gpus: int | None = None
    avg: float | None = None
    oob: int | None = None
    oob_ok: bool | None = None
    for line in body.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if match := re.search(r"nGpus (\d+)", stripped):
                gpus = int(match.group(1))
            elif match := re.match(r"#\s*Avg bus bandwidth\s*:\s*([\d.eE+-]+)", stripped):
                avg = float(match.group(1))
            elif match := re.match(r"#\s*Out of bounds values\s*:\s*(\d+)\s+(OK|FAILED)", stripped):
                oob, oob_ok = int(match.group(1)), match.group(2) == "OK"
            continue
        tokens = stripped.split()
        # Rows end with 8 numeric columns (out-of-place and in-place time/algbw/busbw/#wrong); counting
        # from the right copes with releases that print a `root` column and those that do not.
        if len(tokens) >= 10 and tokens[0].isdigit() and tokens[1].isdigit():
            try:
                tail = tokens[-8:]
                rows.append(
                    NcclRow(
                        size_bytes=int(tokens[0]),
                        count=int(tokens[1]),
                        oop_time_us=float(tail[0]),
                        oop_algbw=float(tail[1]),
                        oop_busbw=float(tail[2]),
                        oop_wrong=_wrong(tail[3]),
                        ip_time_us=float(tail[4]),
                        ip_algbw=float(tail[5]),
                        ip_busbw=float(tail[6]),
                        ip_wrong=_wrong(tail[7]),
                    )
                )
                continue
            except ValueError:
                pass
        errors.append(stripped)
    if not rows and not errors:
        raise ParseError(tool, "no result rows and no error lines")
    if not rows and avg is None:
        # A run that died (CUDA/NCCL failure) prints its reason instead of the table: keep it as data.
        return NcclResult(
            rows=[], avg_busbw_gbs=None, out_of_bounds=None, out_of_bounds_ok=None, gpus=gpus, errors=errors
        )
    return NcclResult(
        rows=rows, avg_busbw_gbs=avg, out_of_bounds=oob, out_of_bounds_ok=oob_ok, gpus=gpus, errors=errors
    )


# --- network -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IperfResult:
    received_bps: float
    sent_bps: float | None
    streams: int | None

    @property
    def received_gbps(self) -> float:
        return self.received_bps / 1e9


def parse_iperf3_json(text: str) -> IperfResult:
    """`iperf3 -c ... -J`: end.sum_received.bits_per_second; iperf3 reports failures in an `error` key."""
    tool = "iperf3"
    try:
        data = json.loads(_require(text, tool))
    except json.JSONDecodeError as exc:
        raise ParseError(tool, f"not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ParseError(tool, "expected a JSON object")
    if data.get("error"):
        raise ParseError(tool, str(data["error"]))
    end = data.get("end") or {}
    received = (end.get("sum_received") or {}).get("bits_per_second")
    if received is None:
        raise ParseError(tool, "no end.sum_received.bits_per_second")
    sent = (end.get("sum_sent") or {}).get("bits_per_second")
    streams = (data.get("start") or {}).get("test_start", {}).get("num_streams")
    return IperfResult(float(received), float(sent) if sent is not None else None, streams)


@dataclass(frozen=True)
class GlooResult:
    world_size: int
    busbw_gbs: float
    algbw_gbs: float
    size_bytes: int
    nnodes: int | None


def parse_gloo_probe(text: str) -> GlooResult:
    tool = "gloo all_reduce probe"
    data = _last_json_object(text, tool)
    results = data.get("results")
    if not isinstance(results, list) or not results:
        raise ParseError(tool, "no 'results' list")
    last = results[-1]
    try:
        return GlooResult(
            world_size=int(data["world_size"]),
            busbw_gbs=float(last["busbw_gbs"]),
            algbw_gbs=float(last["algbw_gbs"]),
            size_bytes=int(last["size_bytes"]),
            nnodes=int(data["nnodes"]) if data.get("nnodes") else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ParseError(tool, f"missing or bad field {exc}") from None
