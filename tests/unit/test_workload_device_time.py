"""workload.device_time_ms: each forward pass of the synthetic model waits that long (sleeping, so the
cores stay free), computes exactly what the model without it computes, and keeps its state dict, so a
checkpoint taken with it resumes without it and back."""

from __future__ import annotations

import resource
import time

import pytest
import torch
from pydantic import ValidationError

from ddp.config import SyntheticWorkload
from ddp.workloads.synthetic import build_synthetic

SMALL = {"kind": "synthetic", "input_dim": 8, "hidden_dim": 16, "num_layers": 2, "num_samples": 32}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def test_forward_waits_without_spinning_and_computes_the_same() -> None:
    plain = build_synthetic(SyntheticWorkload(**SMALL), seed=3)
    paced = build_synthetic(SyntheticWorkload(**SMALL, device_time_ms=40), seed=3)
    batch = torch.randn(4, 8)
    started, cpu = time.monotonic(), _cpu_seconds()
    for _ in range(5):
        out = paced.model(batch)
    waited, spent = time.monotonic() - started, _cpu_seconds() - cpu
    assert waited >= 5 * 0.040
    assert spent < waited / 2, f"the wait used {spent:.3f} s of CPU in {waited:.3f} s"
    assert torch.equal(out, plain.model(batch))
    assert "40 ms device time per forward" in paced.description


def test_state_dict_is_the_same_with_or_without_device_time() -> None:
    plain = build_synthetic(SyntheticWorkload(**SMALL), seed=3)
    paced = build_synthetic(SyntheticWorkload(**SMALL, device_time_ms=1), seed=3)
    assert plain.model.state_dict().keys() == paced.model.state_dict().keys()
    paced.model.load_state_dict(plain.model.state_dict())
    assert "device time" not in plain.description


@pytest.mark.parametrize("bad", [-1, 60_001])
def test_device_time_outside_its_range_is_refused(bad: float) -> None:
    with pytest.raises(ValidationError, match="device_time_ms"):
        SyntheticWorkload(**SMALL, device_time_ms=bad)
