"""A stand-in for the trial runner and run summaries, so the sweep's flow runs without torch or nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tooling.home import HOME_ENV
from tooling.job import production
from tooling.sweep import run as sweep_run
from tooling.sweep.trials import TrialResult, TrialSpec


def summary(
    throughput: float | None = 100.0,
    sigma: float | None = 5.0,
    comm: float | None = 0.05,
    first: float | None = 2.3,
    last: float | None = 1.1,
    nonfinite: int = 0,
    status: str = "completed",
    reason: str | None = None,
) -> dict[str, Any]:
    """The parts of a run's summary.json (ddp/summary.py) that a sweep reads."""
    return {
        "status": status,
        "reason": reason,
        "steps": 20,
        "throughput": {
            "global_samples_per_second_mean": throughput,
            "global_samples_per_second_stddev": sigma,
        },
        "comm_overhead_ratio": comm,
        "loss": {"first": first, "last": last, "min": last},
        "nonfinite_loss_count": nonfinite,
    }


@dataclass
class FakeTrials:
    """Answers each trial from `outcomes`, keyed by the trial's grid overrides (e.g. "optimizer.lr=0.1").

    An outcome is a summary dict, an error string (the run failed, no summary), or an exception to raise.
    """

    outcomes: dict[frozenset[str], Any] = field(default_factory=dict)
    default: Any = field(default_factory=summary)
    prepared: list[list[str]] = field(default_factory=list)
    ran: list[TrialSpec] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)  # how many times, and for which mode, it was made

    def prepare(self, overrides: list[str]) -> None:
        self.prepared.append(overrides)

    def run(self, spec: TrialSpec) -> TrialResult:
        self.ran.append(spec)
        outcome = self.default
        for keys, value in self.outcomes.items():
            if keys <= set(spec.overrides):
                outcome = value
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, str):
            return TrialResult(None, outcome)
        return TrialResult(outcome, None, f"/fake/{spec.run_id}/summary.json")


def use_production_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The test's own state root: locked configs are then <tmp_path>/production."""
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    return production.directory()


def install_fake(monkeypatch: pytest.MonkeyPatch, fake: FakeTrials) -> FakeTrials:
    """`tooling sweep` gets `fake` as its trial runner, local or cluster alike."""

    def make_runner(mode: str, *_args: Any, **_kwargs: Any) -> FakeTrials:
        fake.modes.append(mode)
        return fake

    monkeypatch.setattr(sweep_run, "make_runner", make_runner)
    return fake
