"""The job layer: one training run, on this machine (local.LocalJob) or on the phase's nodes
(cluster.ClusterJob), behind one small interface (`Job`).

Also here: the one torchrun command/environment for local runs (torchrun.py), deploy (deploy.py), the
deployment records (records.py), reading the ranks' status (status.py) and the locked production configs
(production.py). Above plan/ and the Ansible/SSH/podman modules; below verify/, check/, soak/, sweep/,
gates/ and report/, which use jobs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from tooling.job.status import NodeReport


class Job(Protocol):
    """What every job can do once started (each kind's `start` takes what that kind needs)."""

    kind: ClassVar[str]
    run_id: str
    world_size: int

    def status(self) -> list[NodeReport]:
        """Every rank's status now, per node; an unreachable node says why."""
        ...

    def stop(self, timeout_s: float) -> str:
        """Stop cleanly (final checkpoint); says how it ended."""
        ...

    def fetch_summary(self, timeout_s: float = ...) -> tuple[dict[str, Any] | None, str]:
        """The run's summary (None if there is none yet) and where it was read."""
        ...

    def wait(self, timeout_s: float) -> dict[str, Any]:
        """The run's summary once it has ended; CheckFailed if it fails or runs longer than timeout_s."""
        ...

    def to_json(self) -> dict[str, Any]:
        """What finds the job again from another process."""
        ...
