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
    """What the judge needs of a node's CPUs, whichever lscpu form it came from.

    `layout` says how the cores were counted ("2 x 16", "4 clusters x 12", "2 drawers x 1 books x ..."), so a
    reader sees the arithmetic behind `physical_cores`. `numa_cpus` keeps memory-only nodes (no CPUs: HBM,
    CXL, POWER's empty nodes) with an empty list.
    """

    logical_cpus: int
    physical_cores: int
    threads_per_core: int
    layout: str
    model_name: str | None
    sockets: int | None = None
    numa_cpus: dict[int, list[int]] = field(default_factory=dict)
    offline_cpus: int = 0
    core_types: int = 1  # sections of the summary (big.LITTLE, P/E cores); `lscpu -p` cannot tell

    @property
    def numa_nodes(self) -> int:
        return len(self.numa_cpus)

    @property
    def cpu_numa_nodes(self) -> list[int]:
        return [node for node, cpus in self.numa_cpus.items() if cpus]

    @property
    def memory_only_numa_nodes(self) -> list[int]:
        return [node for node, cpus in self.numa_cpus.items() if not cpus]


def _count(value: str | None) -> int | None:
    """A topology count, or None for lscpu's "-" (ARM firmware that does not say) and missing fields."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


# One lscpu summary may describe several core types (big.LITTLE, Grace + Hopper hosts): each starts a
# section at its own "Thread(s) per core"; cores are the sum over sections. Within a section the cores
# hang off the deepest container lscpu names: sockets (x86, POWER), clusters (ARM without socket ids,
# where lscpu prints "Socket(s): -"), or drawers > books > sockets (s390x).
_SECTION_KEYS = (
    "Thread(s) per core",
    "Core(s) per socket",
    "Core(s) per cluster",
    "Socket(s)",
    "Cluster(s)",
    "Socket(s) per book",
    "Book(s) per drawer",
    "Book(s)",
    "Drawer(s)",
)


def _section_cores(section: dict[str, str]) -> tuple[int, str, int | None] | None:
    per_socket = _count(section.get("Core(s) per socket"))
    per_cluster = _count(section.get("Core(s) per cluster"))
    drawers = _count(section.get("Drawer(s)"))
    books = _count(section.get("Book(s)"))
    sockets = _count(section.get("Socket(s)"))
    clusters = _count(section.get("Cluster(s)"))
    if per_socket is not None:
        per_book = _count(section.get("Socket(s) per book"))
        per_drawer = _count(section.get("Book(s) per drawer"))
        if drawers is not None and per_drawer is not None and per_book is not None:
            sockets_total = drawers * per_drawer * per_book
            layout = f"{drawers} drawers x {per_drawer} books x {per_book} sockets x {per_socket}"
            return sockets_total * per_socket, layout, sockets_total
        if books is not None and per_book is not None:
            return (
                books * per_book * per_socket,
                f"{books} books x {per_book} sockets x {per_socket}",
                books * per_book,
            )
        if sockets is not None:
            return sockets * per_socket, f"{sockets} x {per_socket}", sockets
    if per_cluster is not None and clusters is not None:
        return clusters * per_cluster, f"{clusters} clusters x {per_cluster}", None
    return None


def _cpu_info_from_entries(entries: list[tuple[str, str]], tool: str) -> CpuInfo:
    fields: dict[str, str] = {}
    sections: list[dict[str, str]] = []
    models: list[str] = []
    for key, value in entries:
        fields.setdefault(key, value)
        if key == "Model name" and value and value != "-":
            models.append(value)
        if key == "Thread(s) per core":
            sections.append({})
        if key in _SECTION_KEYS and sections:
            sections[-1].setdefault(key, value)
    logical = _count(fields.get("CPU(s)"))
    if logical is None:
        raise ParseError(tool, f"'CPU(s)' is {fields.get('CPU(s)')!r}, expected a number of CPUs")
    threads = [_count(s.get("Thread(s) per core")) for s in sections]
    if not sections or None in threads:
        raise ParseError(
            tool, "no 'Thread(s) per core' number (is lscpu's output translated? run it with LC_ALL=C)"
        )
    counted = [_section_cores(s) for s in sections]
    offline = len(expand_cpu_list(fields.get("Off-line CPU(s) list", "")))
    online = logical - offline
    tpc = max(t for t in threads if t is not None)
    known = [c for c in counted if c is not None]
    cores = sum(c[0] for c in known)
    layout = " + ".join(c[1] for c in known)
    socket_counts = [c[2] for c in known if c[2] is not None]
    sockets = max(socket_counts) if known and len(socket_counts) == len(known) else None
    if None in counted or cores > online:
        # No container count at all (neither sockets, clusters nor books), or counts that give more cores
        # than the node has CPUs: an s390 LPAR or z/VM guest prints its machine's drawers, books and sockets,
        # of which the partition runs a few CPUs. The kernel still knows how many CPUs it runs and how many
        # threads share a core, which is all the judge needs.
        machine = f", not the machine's {layout}" if None not in counted else ""
        cores = online // max(tpc, 1)
        layout = f"{online} online CPUs / {tpc} thr per core{machine}"
        sockets = None
    numa: dict[int, list[int]] = {}
    for key, value in fields.items():
        match = re.fullmatch(r"NUMA node(\d+) CPU\(s\)", key)
        if match:
            numa[int(match.group(1))] = expand_cpu_list(value) if value.strip() else []
    return CpuInfo(
        logical_cpus=logical,
        physical_cores=cores,
        threads_per_core=tpc,
        layout=layout,
        model_name=" + ".join(dict.fromkeys(models)) or None,
        sockets=sockets,
        numa_cpus=dict(sorted(numa.items())),
        offline_cpus=offline,
        core_types=len(sections),
    )


def parse_lscpu(text: str) -> CpuInfo:
    """Plain `lscpu` (flat when piped, indented on a terminal: both are accepted)."""
    tool = "lscpu"
    entries: list[tuple[str, str]] = []
    for line in _require(text, tool).splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key:
            entries.append((key.strip(), value.strip()))
    return _cpu_info_from_entries(entries, tool)


def parse_lscpu_json(text: str) -> CpuInfo:
    """`lscpu -J`: util-linux 2.38 prints a flat list, later releases nest sections under `children`."""
    tool = "lscpu -J"
    try:
        data = json.loads(_require(text, tool))
    except json.JSONDecodeError as exc:
        raise ParseError(tool, f"not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("lscpu"), list):
        raise ParseError(tool, "expected an object with an 'lscpu' list")
    entries: list[tuple[str, str]] = []

    def walk(items: list[Any]) -> None:
        for entry in items:
            if not isinstance(entry, dict):
                continue
            name = str(entry.get("field", "")).strip().rstrip(":")
            if name:
                # `"data": null` is a heading ("Caches (sum of all)") or, as for Grace's memory-only NUMA
                # nodes, a node without CPUs: the same as the text form's empty value.
                data = entry.get("data")
                entries.append((name, "" if data is None else str(data).strip()))
            walk(entry.get("children") or [])

    walk(data["lscpu"])
    return _cpu_info_from_entries(entries, tool)


def parse_lscpu_parsable(text: str) -> CpuInfo:
    """`lscpu -p=CPU,CORE,SOCKET,NODE`: one row per online CPU, read straight from the kernel's topology.

    The best source: a core is a distinct (socket, core) pair whatever the architecture calls its
    containers, so ARM servers without socket ids, s390x books and mixed core types all count right. The
    header names the columns (older releases add cache columns after an empty one).
    """
    tool = "lscpu -p"
    header: list[str] | None = None
    rows: list[list[str]] = []
    for line in _require(text, tool).splitlines():
        line = line.strip()
        if line.startswith("#"):
            names = line.lstrip("#").strip()
            if "," in names and names.split(",")[0].strip().upper() == "CPU":
                header = [n.strip().upper() for n in names.split(",")]
        elif line:
            rows.append([cell.strip() for cell in line.split(",")])
    if header is None or "CORE" not in header:
        raise ParseError(tool, "no '# CPU,Core,...' column header")
    if not rows:
        raise ParseError(tool, "no CPU rows")
    column = {name: i for i, name in enumerate(header) if name}
    cores: dict[tuple[str, str], int] = {}
    sockets: set[str] = set()
    numa: dict[int, list[int]] = {}
    for row in rows:
        if len(row) < len(column) or not row[0].isdigit():
            raise ParseError(tool, f"unreadable row {','.join(row)!r}")
        socket = row[column["SOCKET"]] if "SOCKET" in column else ""
        key = (socket, row[column["CORE"]])
        cores[key] = cores.get(key, 0) + 1
        if socket:
            sockets.add(socket)
        node = row[column["NODE"]] if "NODE" in column else ""
        if node.isdigit():
            numa.setdefault(int(node), []).append(int(row[0]))
    per_socket: dict[str, int] = {}
    for socket, _core in cores:
        per_socket[socket] = per_socket.get(socket, 0) + 1
    counts = sorted(set(per_socket.values()))
    layout = (
        f"{len(sockets)} x {counts[0]}"
        if sockets and len(counts) == 1
        else f"{len(cores)} distinct cores over {len(sockets) or 'unnumbered'} sockets"
    )
    return CpuInfo(
        logical_cpus=len(rows),
        physical_cores=len(cores),
        threads_per_core=max(cores.values()),
        layout=layout,
        model_name=None,
        sockets=len(sockets) or None,
        numa_cpus=dict(sorted(numa.items())),
    )


@dataclass(frozen=True)
class CpuThrottle:
    """Intel's per-CPU thermal throttle counters (events since boot), from /sys/devices/system/cpu."""

    core_counts: dict[int, int]
    package_counts: dict[int, int]

    @property
    def worst(self) -> int:
        # A core's counter repeats on its sibling threads and a package's on all its CPUs: the largest
        # single counter is how often the hottest core or package was throttled, without double counting.
        return max([*self.core_counts.values(), *self.package_counts.values()], default=0)

    @property
    def throttled_cpus(self) -> list[int]:
        return sorted(
            cpu
            for cpu in {*self.core_counts, *self.package_counts}
            if self.core_counts.get(cpu, 0) or self.package_counts.get(cpu, 0)
        )


def parse_cpu_throttle(text: str) -> CpuThrottle | None:
    """`grep -H . /sys/devices/system/cpu/cpu*/thermal_throttle/*_throttle_count` (or `grep -r .`, whose
    extra *_time_ms lines are skipped). None when the kernel has no such counters (AMD, ARM, most VMs)."""
    tool = "cpu thermal_throttle"
    core: dict[int, int] = {}
    package: dict[int, int] = {}
    for line in text.splitlines():
        match = re.fullmatch(
            r"\s*/sys/devices/system/cpu/cpu(\d+)/thermal_throttle/(core|package)_throttle_count:\s*(\S*)\s*",
            line,
        )
        if not match:
            continue
        if not match.group(3).isdigit():
            raise ParseError(
                tool, f"cpu{match.group(1)} {match.group(2)}_throttle_count is {match.group(3)!r}"
            )
        (core if match.group(2) == "core" else package)[int(match.group(1))] = int(match.group(3))
    if not core and not package:
        if text.strip():
            raise ParseError(tool, f"no *_throttle_count lines in {text.strip().splitlines()[0][:80]!r}")
        return None
    return CpuThrottle(core, package)


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


# nvidia-smi's default (human) table opens with a boxed "| NVIDIA-SMI <version> ... |" line (drivers up to
# 5xx say "Driver Version: ... CUDA Version:", 610+ "KMD Version: ... CUDA UMD Version:"); a GPU row carries
# its PCI bus id. Fed by mistake to the CSV or XML reader it would read as "0 GPUs" plus one error per box
# line, so it is recognised and explained instead.
_TABLE_BANNER = re.compile(r"^\|\s*NVIDIA-SMI\s+(\S+)", re.MULTILINE)
_TABLE_GPU_ROW = re.compile(
    r"^\|\s+(\d+)\s+\S.*\|\s+[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d", re.MULTILINE
)
# The playbook's query. With its header row (`--format=csv`) the columns are read by name, so any query that
# includes them reads alike (nvidia_gpu_exporter's 200-column captures do); a record made with `noheader`
# is read in this order.
NVIDIA_SMI_CSV_COLUMNS = ("index", "name", "driver_version", "memory.total")
NVIDIA_SMI_CSV_COMMAND = f"nvidia-smi --query-gpu={','.join(NVIDIA_SMI_CSV_COLUMNS)} --format=csv"


def reject_nvidia_smi_table(text: str, tool: str, wanted: str) -> None:
    """Raise one clear ParseError when `text` is nvidia-smi's default table instead of `wanted`."""
    banner = _TABLE_BANNER.search(text)
    if banner:
        gpus = len(set(_TABLE_GPU_ROW.findall(text)))
        raise ParseError(
            tool,
            f"got nvidia-smi's default table (version {banner.group(1)}, {gpus} GPU row(s)), not {wanted}; "
            "the collecting command lost its options",
        )


def _csv_row(line: str) -> list[str]:
    return [cell.strip() for cell in next(csv.reader(io.StringIO(line), skipinitialspace=True), [])]


def parse_nvidia_smi_csv(text: str) -> GpuInventory:
    """`nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv` (or `noheader`, and with
    `nounits`: the memory is MiB either way).

    A GPU nvidia-smi cannot talk to shows up as a free-text line in place of its row ("Unable to determine
    the device handle for GPU...") or as "[Unknown Error]" / "[GPU requires reset]" fields; "[N/A]" is a
    reading the board does not support, not an error.
    """
    tool = "nvidia-smi"
    body = _require(text, tool)
    if "NVIDIA-SMI has failed" in body or "couldn't communicate with the NVIDIA driver" in body:
        raise ParseError(tool, body.strip().splitlines()[0])
    reject_nvidia_smi_table(body, tool, f"the CSV of `{NVIDIA_SMI_CSV_COMMAND}`")
    lines = [line for line in body.splitlines() if line.strip()]
    # The header names each column with its unit: "memory.total [MiB]".
    names = [cell.split(" [")[0] for cell in _csv_row(lines[0])]
    if "name" in names and not names[0].isdigit():
        missing = [c for c in NVIDIA_SMI_CSV_COLUMNS[1:] if c not in names]
        if missing:
            raise ParseError(tool, f"the CSV header has no {', '.join(map(repr, missing))} column")
        lines, width = lines[1:], len(names)
    else:
        names, width = list(NVIDIA_SMI_CSV_COLUMNS), len(NVIDIA_SMI_CSV_COLUMNS)
    column = {name: names.index(name) for name in NVIDIA_SMI_CSV_COLUMNS if name in names}
    gpus: list[Gpu] = []
    errors: list[str] = []
    for position, line in enumerate(lines):
        row = _csv_row(line)
        index = row[column["index"]] if "index" in column and len(row) == width else str(position)
        if len(row) != width or not index.isdigit():
            errors.append(", ".join(row))
            continue
        name, driver, memory = (row[column[c]] for c in NVIDIA_SMI_CSV_COLUMNS[1:])
        broken = [cell for cell in (name, driver, memory) if cell.startswith("[") and cell != "[N/A]"]
        if broken:
            errors.append(f"GPU {index}: {broken[0]}")
            continue
        mem = re.fullmatch(r"(\d+)(?:\s*MiB)?", memory)
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
    ranks: int = 0  # "#  Rank  N ... on HOST device ..." lines of the header
    hosts: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """nccl-tests prints "# Avg bus bandwidth" only after the last size: without it the run stopped
        (a rank crashed, the job timed out, the output was cut) and the rows it did print prove nothing."""
        return self.avg_busbw_gbs is not None

    @property
    def peak_busbw_gbs(self) -> float:
        return max((max(r.oop_busbw, r.ip_busbw) for r in self.rows), default=0.0)

    @property
    def largest(self) -> NcclRow | None:
        return max(self.rows, key=lambda r: r.size_bytes, default=None)

    @property
    def wrong_rows(self) -> list[NcclRow]:
        return self.wrong(in_place=True)

    @property
    def reasons(self) -> list[str]:
        """Why the run stopped, as it printed it: the failure lines among the lines outside the table
        ("Test NCCL failure common.cu:...", NCCL WARN lines), else every such line (banners, NCCL INFO)."""
        return [e for e in self.errors if _FAILURE_WORDS.search(e)] or self.errors

    def wrong(self, in_place: bool) -> list[NcclRow]:
        """Rows with wrong values; `in_place=False` reads the out-of-place column only (alltoall_perf does not
        validate its in-place run: N/A in 2.x, a meaningless max error in the older `error` column)."""
        return [r for r in self.rows if (r.oop_wrong or 0) > 0 or (in_place and (r.ip_wrong or 0) > 0)]


_FAILURE_WORDS = re.compile(r"fail|error|abort|warn", re.IGNORECASE)
# The run's settings: "# nThread 1 nGpus 8 ..." in 2.x, without the "#" in the NCCL 1.x era.
_NCCL_SETTINGS = re.compile(r"#?\s*nThread\s+\d+\s+nGpus\s+(\d+)")


def _wrong(token: str) -> int | None:
    # "N/A" when validation is off (-c 0); otherwise printed with %g, e.g. 4.1943e+06.
    return None if token == "N/A" else int(float(token))


def parse_all_reduce_perf(text: str) -> NcclResult:
    """nccl-tests `all_reduce_perf` (2.x): header, one row per size, footer with the verdict lines."""
    return parse_nccl_perf(text, "all_reduce_perf")


def parse_alltoall_perf(text: str) -> NcclResult:
    """nccl-tests `alltoall_perf`: the same table (busbw = algbw x (n-1)/n, `redop` none, root -1, the
    in-place #wrong N/A); releases before 2.x printed neither redop nor root and an `error` column."""
    return parse_nccl_perf(text, "alltoall_perf")


def parse_nccl_perf(text: str, tool: str) -> NcclResult:
    """Any nccl-tests `*_perf` table; `tool` names the binary in errors."""
    body = _require(text, tool)
    rows: list[NcclRow] = []
    errors: list[str] = []
    gpus: int | None = None
    avg: float | None = None
    oob: int | None = None
    oob_ok: bool | None = None
    ranks = 0
    hosts: dict[str, None] = {}
    for line in body.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if match := _NCCL_SETTINGS.match(stripped):
            gpus = int(match.group(1))
            continue
        if stripped.startswith("#"):
            if match := re.match(r"#\s*Rank\s+\d+\s.*?\bon\s+(\S+)\s+device\b", stripped):
                ranks += 1
                hosts.setdefault(match.group(1))
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
    if not rows and not errors and not ranks:
        raise ParseError(tool, "no result rows and no error lines")
    # A run that died (CUDA/NCCL failure, a crashed rank) prints its reason instead of, or after part of,
    # the table: the reason is kept in `errors` and the missing footer marks the result incomplete.
    return NcclResult(
        rows=rows,
        avg_busbw_gbs=avg,
        out_of_bounds=oob,
        out_of_bounds_ok=oob_ok,
        gpus=gpus,
        errors=errors,
        ranks=ranks,
        hosts=tuple(hosts),
    )


# --- network -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IperfResult:
    received_bps: float
    sent_bps: float | None
    streams: int | None
    retransmits: int | None = None  # TCP segments the sender sent again (iperf3's Retr column)

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
    retransmits = (end.get("sum_sent") or {}).get("retransmits")
    streams = (data.get("start") or {}).get("test_start", {}).get("num_streams")
    return IperfResult(
        float(received),
        float(sent) if sent is not None else None,
        streams,
        int(retransmits) if isinstance(retransmits, int) else None,
    )


# A summary line of iperf3's text report: "[  5]   0.00-10.00  sec  42.8 GBytes  36.7 Gbits/sec  3148
# sender" (Retr only on the sender's line; iperf3 3.0 glued "sec" to the interval); [SUM] with -P > 1.
_IPERF_SUMMARY = re.compile(
    r"\[\s*(?P<id>SUM|\d+)\]\s+[\d.]+-[\d.]+\s*sec\s+[\d.]+\s+\w*Bytes\s+"
    r"(?P<rate>[\d.]+)\s+(?P<unit>[KMGT]?)bits/sec(?:\s+(?P<retr>\d+))?\s+(?P<side>sender|receiver)\s*"
)
_BITS = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}  # iperf3 counts bits in powers of 1000


def parse_iperf3_text(text: str) -> IperfResult:
    """The client's plain report (iperf3 without -J): its sender/receiver summary lines, [SUM] lines when
    several streams ran. What follows `Server output:` (--get-server-output) is the server's view and is
    not read."""
    tool = "iperf3"
    body = _require(text, tool).split("\nServer output:", 1)[0]
    error = re.search(r"^iperf3: error - (.*)$", body, re.MULTILINE)
    if error:
        raise ParseError(tool, error.group(1).strip())
    lines = [m for line in body.splitlines() if (m := _IPERF_SUMMARY.fullmatch(line.strip()))]
    totals = [m for m in lines if m["id"] == "SUM"] or lines
    by_side: dict[str, list[re.Match[str]]] = {}
    for match in totals:
        by_side.setdefault(match["side"], []).append(match)
    if "receiver" not in by_side:
        raise ParseError(tool, "no receiver summary line (the run was cut off, or this is not iperf3 output)")

    def bps(side: str) -> float | None:
        found = by_side.get(side)
        return sum(float(m["rate"]) * _BITS[m["unit"]] for m in found) if found else None

    retr = [int(m["retr"]) for m in by_side.get("sender", []) if m["retr"] is not None]
    streams = {m["id"] for m in lines if m["id"] != "SUM"}
    received = bps("receiver")
    assert received is not None
    return IperfResult(received, bps("sender"), len(streams) or None, sum(retr) if retr else None)


def parse_iperf3(text: str) -> IperfResult:
    """`iperf3 -J` when the output is JSON, the plain text report otherwise."""
    if text.lstrip().startswith("{"):
        return parse_iperf3_json(text)
    return parse_iperf3_text(text)


@dataclass(frozen=True)
class GlooResult:
    world_size: int
    busbw_gbs: float
    algbw_gbs: float
    size_bytes: int
    nnodes: int | None


def _collective_result(data: dict[str, Any], results: Any, tool: str) -> GlooResult:
    """One collective's figure from tooling/probes/collective_bw.py: its largest size's run."""
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


def parse_gloo_probe(text: str) -> GlooResult:
    tool = "gloo all_reduce probe"
    data = _last_json_object(text, tool)
    return _collective_result(data, data.get("results"), tool)


def parse_gloo_all_to_all(text: str) -> GlooResult | None:
    """The all_to_all part of the probe's answer; None when it was not asked for."""
    tool = "gloo all_to_all probe"
    data = _last_json_object(text, tool)
    part = data.get("all_to_all")
    if part is None:
        return None
    return _collective_result(data, part.get("results") if isinstance(part, dict) else None, tool)
