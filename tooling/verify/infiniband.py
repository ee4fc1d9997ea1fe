"""InfiniBand / RoCE ports of a node, from /sys, `ibstat` or `ibv_devinfo`, and what is wrong with each.

The kernel's /sys/class/infiniband/<dev>/ports/<n>/{state,phys_state,rate,link_layer} needs no package and
says everything; `ibstat` (infiniband-diags) says the same in its own words; plain `ibv_devinfo` (rdma-core)
gives state and link layer but no rate. Each parser returns the same `IbPort` rows with the names
normalised to ibstat's (Active, LinkUp), so one verdict reads them all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from tooling.verify.parsers import ParseError

# The InfiniBand spec's numeric codes, which /sys prints before the name ("4: ACTIVE") and ibv_devinfo
# after it ("PORT_ACTIVE (4)"); the names are ibstat's.
_STATE = {1: "Down", 2: "Initializing", 3: "Armed", 4: "Active", 5: "ActiveDefer"}
_PHYS_STATE = {
    1: "Sleep",
    2: "Polling",
    3: "Disabled",
    4: "PortConfigurationTraining",
    5: "LinkUp",
    6: "LinkErrorRecovery",
    7: "PhyTest",
}
_STATE_WORDS = {name.upper(): name for name in _STATE.values()} | {"INIT": "Initializing"}
_PHYS_WORDS = {name.upper(): name for name in _PHYS_STATE.values()}


@dataclass(frozen=True)
class IbPort:
    device: str
    port: int
    state: str | None
    phys_state: str | None
    rate_gbps: float | None
    link_layer: str | None

    @property
    def label(self) -> str:
        return f"{self.device} port {self.port}"


def _word(text: str, words: dict[str, str]) -> str:
    """'PORT_ACTIVE' / 'ACTIVE' / 'Active' / 'LINK_UP' -> ibstat's spelling; an unknown word as printed."""
    key = re.sub(r"^PORT_", "", text.strip().upper()).replace("_", "")
    return words.get(key, text.strip())


def _state(text: str, names: dict[int, str], words: dict[str, str]) -> str:
    """'4: ACTIVE' (/sys) and 'PORT_ACTIVE (4)' (ibv_devinfo): the printed name wins over the code, which
    is used only where no name was printed."""
    text = text.strip()
    sys_form = re.fullmatch(r"(\d+):\s*(.*)", text)
    verbs_form = re.fullmatch(r"(.*?)\s*\((\d+)\)", text)
    if sys_form:
        code, name = sys_form.groups()
    elif verbs_form:
        name, code = verbs_form.groups()
    else:
        return _word(text, words)
    return _word(name, words) if name else names.get(int(code), text)


def _rate(text: str) -> float | None:
    """'400 Gb/sec (4X NDR)' (/sys), '400' (ibstat) -> 400.0; None when nothing numeric was printed."""
    match = re.match(r"\s*(\d+(?:\.\d+)?)", text)
    return float(match.group(1)) if match else None


def _ports(found: dict[tuple[str, int], dict[str, str]], tool: str) -> list[IbPort]:
    ports = []
    for (device, port), fields in sorted(found.items()):
        rate = fields.get("rate")
        ports.append(
            IbPort(
                device=device,
                port=port,
                state=_state(fields["state"], _STATE, _STATE_WORDS) if fields.get("state") else None,
                phys_state=(
                    _state(fields["phys_state"], _PHYS_STATE, _PHYS_WORDS)
                    if fields.get("phys_state")
                    else None
                ),
                rate_gbps=_rate(rate) if rate else None,
                link_layer=fields.get("link_layer") or None,
            )
        )
    if not ports:
        raise ParseError(tool, "no ports listed")
    return ports


_SYS_LINE = re.compile(
    r"\s*/sys/class/infiniband/([^/\s]+)/ports/(\d+)/(state|phys_state|rate|link_layer):(.*)"
)


def parse_sys_ports(text: str) -> list[IbPort]:
    """`grep -H . /sys/class/infiniband/*/ports/*/{state,phys_state,rate,link_layer}`: one `path:value`
    line per file. An empty output is a node without RDMA devices (the directory does not exist)."""
    tool = "/sys/class/infiniband"
    if not text.strip():
        return []
    found: dict[tuple[str, int], dict[str, str]] = {}
    for line in text.splitlines():
        match = _SYS_LINE.fullmatch(line)
        if match is None:
            if line.strip():
                raise ParseError(tool, f"unreadable line {line.strip()[:80]!r}")
            continue
        device, port, name, value = match.groups()
        found.setdefault((device, int(port)), {})[name] = value.strip()
    return _ports(found, tool)


def parse_ibstat(text: str) -> list[IbPort]:
    """`ibstat`: a `CA 'mlx5_0'` block per device, a `Port N:` block per port. Lines it does not know
    (ibwarn debug lines, GUIDs) are skipped; a cut-off port keeps what it printed and None for the rest."""
    tool = "ibstat"
    if not text.strip():
        raise ParseError(tool, "no output")
    found: dict[tuple[str, int], dict[str, str]] = {}
    device: str | None = None
    port: int | None = None
    keys = {"State": "state", "Physical state": "phys_state", "Rate": "rate", "Link layer": "link_layer"}
    for line in text.splitlines():
        ca = re.fullmatch(r"CA '([^']+)'\s*", line)
        if ca:
            device, port = ca.group(1), None
            continue
        start = re.fullmatch(r"\s+Port (\d+):\s*", line)
        if start and device is not None:
            port = int(start.group(1))
            found.setdefault((device, port), {})
            continue
        key, sep, value = line.strip().partition(":")
        if sep and device is not None and port is not None and key in keys:
            found[(device, port)][keys[key]] = value.strip()
    if not found:
        first = text.strip().splitlines()[0][:80]
        raise ParseError(tool, f"no \"CA '<device>'\" block with a port (first line {first!r})")
    return _ports(found, tool)


def _active_rate(width: str | None, speed: str | None) -> float | None:
    """ibv_devinfo -v: active_width '4X (2)' x active_speed '25.0 Gbps (32)' -> 100.0."""
    if not width or not speed:
        return None
    lanes = re.match(r"\s*(\d+)X", width)
    per_lane = re.match(r"\s*(\d+(?:\.\d+)?)\s*Gbps", speed)
    return int(lanes.group(1)) * float(per_lane.group(1)) if lanes and per_lane else None


def parse_ibv_devinfo(text: str) -> list[IbPort]:
    """`ibv_devinfo` (or -v): an `hca_id:` block per device and a `port:` block per port. The plain form
    has no rate; -v adds phys_state and active_width x active_speed, from which the rate is computed."""
    tool = "ibv_devinfo"
    if not text.strip():
        raise ParseError(tool, "no output")
    if "No IB devices found" in text:
        return []
    found: dict[tuple[str, int], dict[str, str]] = {}
    device: str | None = None
    port: int | None = None
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "hca_id":
            device, port = value, None
        elif key == "port" and device is not None and value.isdigit():
            port = int(value)
            found.setdefault((device, port), {})
        elif device is not None and port is not None:
            found[(device, port)][key] = value
    if not found:
        first = text.strip().splitlines()[0][:80]
        raise ParseError(tool, f"no 'hca_id:' block with a 'port:' (first line {first!r})")
    for fields in found.values():
        rate = _active_rate(fields.get("active_width"), fields.get("active_speed"))
        if rate is not None:
            fields["rate"] = f"{rate:g}"
    return _ports(found, tool)


def of_fabric(ports: list[IbPort], devices: Sequence[str] | None) -> tuple[list[IbPort], list[IbPort]]:
    """(the fabric's ports, the others): a port is the fabric's when one of the shell patterns matches its
    device ('mlx5_[0-7]') or 'device/port' ('mlx4_0/1'); with no patterns every port is."""
    if devices is None:
        return ports, []
    mine: list[IbPort] = []
    others: list[IbPort] = []
    for port in ports:
        names = (port.device, f"{port.device}/{port.port}")
        listed = any(fnmatchcase(name, d) for name in names for d in devices)
        (mine if listed else others).append(port)
    return mine, others


def port_problems(port: IbPort, min_rate_gbps: float, link_layer: str) -> tuple[list[str], list[str]]:
    """What is wrong with one port: (failures, warnings), each naming device and port. A port that is
    not Active/LinkUp, slower than the fabric's rate or on the other link layer fails; a rate the source
    did not print (plain ibv_devinfo) only warns."""
    fails: list[str] = []
    warns: list[str] = []
    if port.state != "Active":
        fails.append(f"{port.label}: state {port.state or 'not reported'}")
    if port.phys_state is not None and port.phys_state != "LinkUp":
        fails.append(f"{port.label}: physical state {port.phys_state}")
    if port.rate_gbps is None:
        warns.append(f"{port.label}: rate not reported")
    elif port.rate_gbps < min_rate_gbps:
        fails.append(f"{port.label}: rate {port.rate_gbps:g} Gb/s below {min_rate_gbps:g}")
    if port.link_layer is None:
        warns.append(f"{port.label}: link layer not reported")
    elif port.link_layer.lower() != link_layer.lower():
        fails.append(f"{port.label}: link layer {port.link_layer}, expected {link_layer}")
    return fails, warns


def summary(ports: list[IbPort]) -> str:
    """'2 ports: mlx5_0/1 Active LinkUp 400 Gb/s InfiniBand, ...' for the measured column."""
    shown = [
        f"{p.device}/{p.port} {p.state or '?'} {p.phys_state or '?'} "
        f"{f'{p.rate_gbps:g} Gb/s' if p.rate_gbps is not None else '? Gb/s'} {p.link_layer or '?'}"
        for p in ports
    ]
    return f"{len(ports)} port{'s' if len(ports) != 1 else ''}: " + ", ".join(shown)
