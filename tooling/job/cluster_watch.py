"""A cluster run watched from the control machine: rank 0's status file, read over SSH with `tooling
status`'s own reader (tooling.job.status.collect, limited to rank 0's file), feeds the step bar; once
rank 0 says the run ended, its summary is read from rank 0's node (tooling.job.cluster.fetch_summary).

Ctrl-C only stops the watching: the run goes on training on the nodes (Detached says which run), unlike a
local run, whose ranks are this terminal's children. Used by `tooling rehearse --phase P`.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tooling.console import CheckFailed
from tooling.inventory import load_inventory, ssh_targets
from tooling.job import status
from tooling.job.cluster import fetch_summary
from tooling.job.records import Deployment
from tooling.job.step_bar import step_bar
from tooling.remote import SshTarget

# Every look costs an SSH connection per node: a few seconds apart, not the local watch's half second.
POLL_S = 2.0
# rank 0 writes the summary before its final status, so it is there by then; a little slack for its disk.
SUMMARY_WAIT_S = 30.0
ENDED = ("completed", "stopped", "failed")


@dataclass(frozen=True)
class Rank0:
    """Rank 0's status as last read, and the node it was read on (where the run's summary is written)."""

    host: str
    status: dict[str, Any]

    @property
    def ended(self) -> bool:
        return self.status.get("state") in ENDED


class Detached(Exception):
    """Ctrl-C while watching: the watching stopped, the run goes on on the nodes."""

    def __init__(self, record: Deployment) -> None:
        super().__init__(f"detached from run {record.run_id}")
        self.record = record


def read_rank0(targets: list[SshTarget], run_dir: str) -> Rank0 | None:
    """Rank 0's status file, from whichever node holds it (every node is asked, in parallel: rank 0 is
    wherever the rendezvous put it). After a restart that moved it, the freshest file wins."""
    found = [
        Rank0(report.host, rank)
        for report in status.collect(targets, run_dir, ranks="rank0")
        for rank in report.ranks
        if rank.get("rank") == 0
    ]
    return max(found, key=lambda r: r.status.get("updated_at") or 0.0, default=None)


def watch_commands(record: Deployment) -> dict[str, str]:
    """The commands that follow and stop the run once nobody watches it here."""
    inventory = ["--inventory", record.inventory]
    return {
        "watch": shlex.join(["tooling", "status", "--watch", *inventory]),
        "stop": shlex.join(["tooling", "stop", *inventory]),
    }


def watch_cluster(
    record: Deployment, total_steps: int | None, show_bar: bool, timeout_s: float
) -> dict[str, Any]:
    """The run's summary once rank 0 says the run ended, with the bar drawn meanwhile (`show_bar`: on a
    terminal). Detached on Ctrl-C; CheckFailed when the run outlasts `timeout_s` (it is left running)."""
    targets = ssh_targets(load_inventory(Path(record.inventory)), record.hosts)
    deadline = time.monotonic() + timeout_s
    try:
        with step_bar(show_bar, total_steps) as update:
            while True:
                rank0 = read_rank0(targets, record.run_dir)
                if rank0 is not None and update is not None:
                    update(rank0.status)
                if rank0 is not None and rank0.ended:
                    break
                if time.monotonic() > deadline:
                    commands = watch_commands(record)
                    raise CheckFailed(
                        f"run {record.run_id} did not finish within {timeout_s:.0f} s; it goes on training",
                        hint=f"watch it with `{commands['watch']}`, stop it with `{commands['stop']}`",
                    )
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        raise Detached(record) from None
    return fetch_summary(Path(record.inventory), rank0.host, record.run_dir, SUMMARY_WAIT_S)
