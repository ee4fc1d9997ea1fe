"""The step bar of a watched run (rich): steps done of the run's max_steps, the job's samples/s, the time
taken and the ETA, all fed by rank 0's status file. `tooling rehearse --local` reads that file on this
machine (tooling.job.local_watch), a cluster rehearsal over SSH (tooling.job.cluster_watch)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tooling.console import console

Update = Callable[[dict[str, Any]], None]


@contextmanager
def step_bar(show: bool, total: int | None) -> Iterator[Update | None]:
    """A bar and the function that moves it to a rank-0 status, or None when the output is not a terminal.
    `total` None: not known until rank 0 reports its max_steps (a run re-attached to)."""
    if not show:
        yield None
        return
    # Imported here: only a run on a terminal draws a bar, and `tooling --help` must not pay for it.
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("steps"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} samples/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("run", total=total, rate="-")

        def update(status: dict[str, Any]) -> None:
            rate = status.get("samples_per_second")
            # Per-rank rate times world size: the job's rate, as the summary reports it.
            job_rate = rate * status.get("world_size", 1) if isinstance(rate, int | float) else None
            progress.update(
                task,
                completed=status.get("step", 0),
                total=status.get("max_steps") or total,
                rate="-" if job_rate is None else f"{job_rate:.0f}",
            )

        yield update
