"""Utilisation and memory pressure of this rank's process, host and (when present) GPU."""

from __future__ import annotations

from dataclasses import dataclass

import psutil
import torch


@dataclass(frozen=True)
class SystemSample:
    cpu_utilisation_ratio: float  # this process, as a share of the CPUs it may run on
    memory_pressure_ratio: float  # host RAM in use / total
    gpu_utilisation_ratio: float | None
    gpu_memory_pressure_ratio: float | None


class SystemSampler:
    def __init__(self, device: torch.device) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # first call only primes the counter
        try:
            self._cpus = max(1, len(self._process.cpu_affinity() or []))
        except (AttributeError, OSError):
            self._cpus = psutil.cpu_count() or 1
        self._device = device

    def sample(self) -> SystemSample:
        cpu = self._process.cpu_percent(None) / 100.0 / self._cpus
        memory = psutil.virtual_memory().percent / 100.0
        gpu_util = gpu_mem = None
        if self._device.type == "cuda":
            free, total = torch.cuda.mem_get_info(self._device)
            gpu_mem = 1.0 - free / total if total else None
            try:
                gpu_util = torch.cuda.utilization(self._device) / 100.0
            except Exception:  # needs NVML (pynvml); the metric is simply absent without it
                gpu_util = None
        return SystemSample(min(cpu, 1.0), memory, gpu_util, gpu_mem)
