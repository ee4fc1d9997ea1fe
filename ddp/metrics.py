"""The rank's Prometheus endpoint: one registry per rank, served on base_port + local_rank.

Names follow Prometheus conventions (`_total`, `_seconds`, `_ratio`); every series carries
rank/local_rank/node so Prometheus can aggregate per node or job-wide.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ddp.addresses import resolve_bind_address
from ddp.config import MetricsSection
from ddp.dist import DistEnv

LABELS = ("rank", "local_rank", "node")
# What a refused write was for (ddp/best_effort.py); each series exists from the start at 0.
WRITE_TARGETS = ("status", "summary", "log")
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class MetricsServerError(RuntimeError):
    pass


class _FirstSetChild:
    """A labelled gauge whose one child (and so its sample) comes into being at the first set()."""

    def __init__(self, family: Gauge, labels: dict[str, str]) -> None:
        self._family = family
        self._labels = labels
        self._child: Any = None

    def set(self, value: float) -> None:
        self._created().set(value)

    def set_function(self, function: Callable[[], float]) -> None:
        """From now on the sample is `function()`, called when Prometheus scrapes."""
        self._created().set_function(function)

    def _created(self) -> Any:
        if self._child is None:
            self._child = self._family.labels(**self._labels)
        return self._child


class TrainerMetrics:
    def __init__(self, env: DistEnv, run_name: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = {"rank": str(env.rank), "local_rank": str(env.local_rank), "node": env.node}
        r = self.registry

        def gauge(name: str, doc: str) -> Any:
            return Gauge(name, doc, LABELS, registry=r).labels(**labels)

        def counter(name: str, doc: str) -> Any:
            return Counter(name, doc, LABELS, registry=r).labels(**labels)

        def measured_gauge(name: str, doc: str) -> _FirstSetChild:
            # No sample until a value is measured: a CPU node exports no GPU series rather than a made-up 0.
            return _FirstSetChild(Gauge(name, doc, LABELS, registry=r), labels)

        info = Gauge(
            "trainer_info",
            "Static facts about the run (value 1)",
            (*LABELS, "run", "backend", "world_size"),
            registry=r,
        )
        info.labels(**labels, run=run_name, backend=env.backend, world_size=str(env.world_size)).set(1)

        self.steps = counter("trainer_steps", "Optimizer steps taken by this rank (skipped ones included)")
        self.samples = counter("trainer_samples", "Training samples processed by this rank")
        self.step_duration = Histogram(
            "trainer_step_duration_seconds",
            "Wall time of one optimizer step",
            LABELS,
            buckets=STEP_BUCKETS,
            registry=r,
        ).labels(**labels)
        self.samples_per_second = gauge(
            "trainer_samples_per_second", "This rank's throughput over the window"
        )
        self.global_samples_per_second = gauge(
            "trainer_global_samples_per_second", "Job-wide throughput (sum over ranks) at the last heartbeat"
        )
        self.throughput_stddev = gauge(
            "trainer_throughput_stddev_samples_per_second", "Sigma of the job-wide rate over the window"
        )
        self.comm_overhead = gauge(
            "trainer_comm_overhead_ratio", "Share of a step spent on gradient communication (no_sync probe)"
        )
        self.sync_step_seconds = gauge(
            "trainer_sync_step_seconds", "Forward+backward with gradient all-reduce"
        )
        self.nosync_step_seconds = gauge("trainer_nosync_step_seconds", "Forward+backward under no_sync()")
        self.compute_seconds = measured_gauge(
            "trainer_compute_seconds",
            "This rank's own work per step over the window: the step less its wait in the all-reduce",
        )
        self.collective_wait_seconds = measured_gauge(
            "trainer_collective_wait_seconds",
            "Per step over the window: from this rank's last gradient bucket to the all-reduce's end",
        )
        self.compute_ratio_to_median = measured_gauge(
            "trainer_compute_ratio_to_median",
            "This rank's compute over the median rank's, at the last heartbeat",
        )
        self.straggler = measured_gauge(
            "trainer_straggler",
            "1 while this rank's compute exceeds the median's by more than metrics.straggler_margin",
        )
        self.cpu_utilisation = gauge("trainer_cpu_utilisation_ratio", "Process CPU use / CPUs it may use")
        self.gpu_utilisation = measured_gauge("trainer_gpu_utilisation_ratio", "GPU utilisation (CUDA only)")
        self.memory_pressure = gauge("trainer_memory_pressure_ratio", "Host RAM in use / total")
        self.gpu_memory_pressure = measured_gauge(
            "trainer_gpu_memory_pressure_ratio", "GPU memory in use / total (CUDA only)"
        )
        self.loss = gauge("trainer_loss", "Training loss of the last step on this rank")
        self.nonfinite_loss = counter("trainer_nonfinite_loss", "Steps whose loss or gradients were NaN/inf")
        self.skipped_steps = counter("trainer_skipped_steps", "Steps skipped by nonfinite_policy=skip")
        self.sync_checks = counter("trainer_grad_sync_checks", "Cross-rank parameter checksum comparisons")
        self.sync_mismatches = counter("trainer_grad_sync_mismatches", "Comparisons where ranks disagreed")
        self.sync_accuracy = gauge("trainer_grad_sync_accuracy_ratio", "Share of sync checks in agreement")
        self.checkpoint_last_success = gauge(
            "trainer_checkpoint_last_success_timestamp_seconds", "Unix time of the last good checkpoint"
        )
        self.checkpoint_age = gauge(
            "trainer_checkpoint_age_seconds", "Seconds since the last good checkpoint"
        )
        self.checkpoint_interval = gauge(
            "trainer_checkpoint_interval_seconds",
            "Expected seconds between checkpoints (configured or estimated)",
        )
        self.checkpoints_saved = counter("trainer_checkpoints_saved", "Checkpoints written by this rank")
        self.checkpoint_failures = counter("trainer_checkpoint_failures", "Checkpoint writes that failed")
        write_errors = Counter(
            "trainer_write_errors",
            "Status, summary and log writes the disk refused (full, read-only); training went on",
            (*LABELS, "target"),
            registry=r,
        )
        self._write_errors = {t: write_errors.labels(**labels, target=t) for t in WRITE_TARGETS}
        link_labels = (*LABELS, "peer")
        self._link_rtt = Gauge(
            "trainer_link_rtt_seconds",
            "Median round trip of a TCP handshake to the peer node's metrics endpoint (ddp/links.py)",
            link_labels,
            registry=r,
        )
        self._link_slow = Gauge(
            "trainer_link_slow",
            "1 while the link to the peer node is slow (round trip beyond metrics.link_slow_factor x best)",
            link_labels,
            registry=r,
        )
        self._labels = labels
        self.restart_count = gauge("trainer_restart_count", "torchrun restarts of this worker group")
        self.step = gauge("trainer_step", "Current optimizer step")
        self.epoch = gauge("trainer_epoch", "Current epoch")
        self.start_time = gauge("trainer_start_time_seconds", "Unix time this worker started")

        self.start_time.set(time.time())
        self.restart_count.set(env.restart_count)
        self._last_checkpoint = time.time()
        self.checkpoint_age.set_function(lambda: time.time() - self._last_checkpoint)
        self._server: Any = None
        # Where serve() listens: what the other nodes' link probes connect to (ddp/links.py).
        self.endpoint: tuple[str, int] | None = None

    def set_link(self, peer: str, rtt_s: float | None, slow: bool) -> None:
        """The link from this node to `peer`: its round trip (once measured) and whether it is slow."""
        if rtt_s is not None:
            self._link_rtt.labels(**self._labels, peer=peer).set(rtt_s)
        self._link_slow.labels(**self._labels, peer=peer).set(float(slow))

    def count_write_error(self, target: str) -> None:
        self._write_errors[target].inc()

    def mark_checkpoint(self, when: float) -> None:
        self._last_checkpoint = when
        self.checkpoint_last_success.set(when)

    def serve(self, section: MetricsSection, local_rank: int) -> tuple[str, int]:
        address = resolve_bind_address(section.bind_address)
        port = section.base_port + local_rank
        try:
            self._server = start_http_server(port, addr=address, registry=self.registry)
        except OSError as exc:
            raise MetricsServerError(
                f"metrics endpoint {address}:{port} (metrics.base_port {section.base_port} + local rank "
                f"{local_rank}): {exc.strerror}; another process holds the port or the address is not local"
            ) from exc
        self.endpoint = (address, port)
        return address, port

    def close(self) -> None:
        if self._server is not None:
            server = self._server[0] if isinstance(self._server, tuple) else self._server
            server.shutdown()
            server.server_close()
            self._server = None
