"""Slow links between nodes, told apart from slow compute.

A slow link stretches every rank's wait in the all-reduce alike, so the compute/wait split
(ddp/collective_clock.py) says only "the network" and never where. To say where, one rank per node (local
rank 0) times a TCP handshake to every other node's metrics endpoint, which listens on that node's cluster
address, on a background thread every `metrics.link_probe_every_s`. A handshake is one round trip through
both nodes' queues: a congested or rate-limited link makes it wait behind the job's own gradient traffic,
and both ends of that link see it. A link is slow while the median of its last few round trips exceeds
both `link_slow_factor` times the best this prober has seen on it and that best plus `link_slow_extra_s`.
The round trip is the kernel's (TCP_INFO's tcpi_rtt, taken when the SYN-ACK arrived), so a busy host's
delays in waking the probe thread do not count; elsewhere it is the time connect() took.

What it does not see: a fabric that bypasses TCP (NCCL over InfiniBand verbs) — `verify-node`'s
ib_write_bw pairs measure that — and a link that is slower but does not queue (a lower negotiated rate on
an idle port), which the all -> all pair matrix measures.
"""

from __future__ import annotations

import socket
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

RECENT = 5  # round trips per link in the median: one late sample is not a slow link


@dataclass(frozen=True)
class LinkReading:
    """A link's round trip now (median of the recent ones) and the best one seen; None: no handshake
    completed (`error` says why)."""

    peer: str
    rtt_s: float | None
    best_s: float | None
    error: str | None = None

    def slow(self, factor: float, extra_s: float) -> bool:
        if self.rtt_s is None or self.best_s is None:
            return False
        return self.rtt_s > factor * self.best_s and self.rtt_s > self.best_s + extra_s


# struct tcp_info (linux/tcp.h): eight one-byte fields, then 32-bit ones; tcpi_rtt, the smoothed round trip
# in microseconds, is the 16th of those. The layout only grows at its end, so the offset is stable.
_TCPI_RTT_OFFSET = 8 + 15 * 4
_TCP_INFO_SIZE = 104


def _kernel_rtt(sock: socket.socket) -> float | None:
    """The kernel's own round trip of the connection (Linux), measured when the SYN-ACK arrived: unlike a
    clock read around connect(), it holds none of the time this process waited for a CPU or the GIL."""
    if not hasattr(socket, "TCP_INFO"):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    except OSError:
        return None
    if len(info) < _TCPI_RTT_OFFSET + 4:
        return None
    micros = int.from_bytes(info[_TCPI_RTT_OFFSET : _TCPI_RTT_OFFSET + 4], sys.byteorder)
    return micros / 1e6 if micros > 0 else None


def handshake_seconds(address: str, port: int, timeout_s: float) -> float:
    """One TCP handshake's round trip to `address:port`: the kernel's measure where it gives one, else the
    time connect() took (the connection is closed at once)."""
    started = time.perf_counter()
    with socket.create_connection((address, port), timeout=timeout_s) as sock:
        elapsed = time.perf_counter() - started
        return _kernel_rtt(sock) or elapsed


class _Link:
    def __init__(self) -> None:
        self.recent: deque[float] = deque(maxlen=RECENT)
        self.best: float | None = None
        self.error: str | None = None

    def add(self, seconds: float) -> None:
        self.recent.append(seconds)
        self.best = seconds if self.best is None else min(self.best, seconds)
        self.error = None

    def reading(self, peer: str) -> LinkReading:
        rtt = statistics.median(self.recent) if len(self.recent) == RECENT else None
        return LinkReading(peer, rtt, self.best, self.error)


class LinkProber:
    """Times a handshake to each peer node every `every_s` seconds on a daemon thread and hands each
    round's readings to `on_readings` (on that thread); `readings()` is safe to call from any thread."""

    def __init__(
        self,
        peers: Mapping[str, tuple[str, int]],
        every_s: float,
        on_readings: Callable[[list[LinkReading]], None],
        measure: Callable[[str, int, float], float] = handshake_seconds,
    ) -> None:
        self.peers = dict(peers)
        self.every_s = every_s
        self._on_readings = on_readings
        self._measure = measure
        self._links = {peer: _Link() for peer in self.peers}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="link-prober", daemon=True)

    def start(self) -> None:
        if self.peers:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.every_s + 1)

    def probe_once(self) -> None:
        for peer, (address, port) in self.peers.items():
            try:
                seconds = self._measure(address, port, max(1.0, self.every_s))
            except OSError as exc:
                with self._lock:
                    self._links[peer].error = f"{address}:{port}: {exc.strerror or exc}"
                continue
            with self._lock:
                self._links[peer].add(seconds)

    def readings(self) -> list[LinkReading]:
        with self._lock:
            return [link.reading(peer) for peer, link in sorted(self._links.items())]

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.probe_once()
            self._on_readings(self.readings())


def peer_endpoints(endpoints: list[dict[str, object]], node: str) -> dict[str, tuple[str, int]]:
    """From every rank's metrics endpoint (rank order), each other node's local rank 0's: one target per
    node, whichever of its ranks the list names first when local rank 0 serves none."""
    peers: dict[str, tuple[str, int]] = {}
    for entry in sorted(endpoints, key=lambda e: int(str(e["local_rank"]))):
        peer = str(entry["node"])
        if peer != node and peer not in peers and entry.get("address"):
            peers[peer] = (str(entry["address"]), int(str(entry["port"])))
    return peers
