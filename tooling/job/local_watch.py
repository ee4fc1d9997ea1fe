"""A local run watched from the terminal: a step bar fed from rank 0's status file, torchrun's own output
kept in the run's log (shown with --verbose, its warnings and errors always, what explains a failure),
and Ctrl-C turned into a clean stop that says where the partial run is.

Used by `tooling rehearse --local`. The status file (status/rank0.json, rewritten at every heartbeat) is
the structured source: step, max_steps, samples/s and the last checkpoint step, no log parsing needed.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tooling.console import CheckFailed, console
from tooling.job.local import LocalJob, read_json
from tooling.job.step_bar import step_bar
from tooling.job.torchrun import TorchrunLaunch

LOG_FILE = "torchrun.log"
POLL_S = 0.5
# Lines of torchrun's and the ranks' console output worth showing even without --verbose.
_NOTEWORTHY = re.compile(r"\b(WARNING|ERROR|CRITICAL|FATAL)\b|Traceback|Error:")


class Interrupted(Exception):
    """Ctrl-C during the run: the ranks were stopped (they checkpoint on SIGINT)."""

    def __init__(self, run_dir: Path, last_checkpoint_step: int | None) -> None:
        super().__init__(f"interrupted: {run_dir}")
        self.run_dir = run_dir
        self.last_checkpoint_step = last_checkpoint_step


@dataclass
class WatchOptions:
    show_bar: bool
    verbose: bool
    out: TextIO


def rank0_status(run_dir: Path) -> dict[str, Any] | None:
    return read_json(run_dir / "status" / "rank0.json")


def last_checkpoint_step(run_dir: Path) -> int | None:
    """The newest step a checkpoint was written for, as rank 0 last reported it."""
    status = rank0_status(run_dir)
    step = (status or {}).get("last_checkpoint_step")
    return step if isinstance(step, int) else None


class _LogFollower:
    """The new complete lines of torchrun's log since the last look."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as log:
                log.seek(self.offset)
                data = log.read()
        except OSError:
            return []
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines]


def failure_excerpt(path: Path, head: int = 30, tail: int = 50) -> str:
    """What explains a failed run: the log without its repeats (every rank and every restart says the
    same), its start (where the ranks say what went wrong) and its end (torchrun's verdict)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    unique = list(dict.fromkeys(line for line in lines if line.strip()))
    if len(unique) <= head + tail:
        return "\n".join(unique)
    skipped = len(unique) - head - tail
    return "\n".join([*unique[:head], f"[... {skipped} lines, all in {path} ...]", *unique[-tail:]])


def watch(job: LocalJob, total_steps: int, options: WatchOptions, timeout_s: float) -> dict[str, Any]:
    """The run's summary once torchrun ends, drawing the bar meanwhile; Interrupted on Ctrl-C,
    CheckFailed (after what explains it in the log) when the run fails."""
    follower = _LogFollower(job.log_path)
    deadline = time.monotonic() + timeout_s
    try:
        with step_bar(options.show_bar, total_steps) as update:
            while job.alive():
                _relay(follower.new_lines(), options)
                if update is not None and (status := rank0_status(job.run_dir)) is not None:
                    update(status)
                if time.monotonic() > deadline:
                    job.stop(timeout_s=30)
                    raise CheckFailed(
                        f"run {job.run_id} did not finish within {timeout_s:.0f} s; stopped",
                        hint=f"see {job.log_path}",
                    )
                time.sleep(POLL_S)
            if update is not None and (status := rank0_status(job.run_dir)) is not None:
                update(status)
    except KeyboardInterrupt:
        _stop_on_interrupt(job)
        raise Interrupted(job.run_dir, last_checkpoint_step(job.run_dir)) from None
    _relay(follower.new_lines(), options)
    try:
        return job.wait(timeout_s=5)
    except CheckFailed as exc:
        if not options.verbose:  # with --verbose the whole output is on the screen already
            print(failure_excerpt(job.log_path), file=options.out)
        raise exc


def _relay(lines: list[str], options: WatchOptions) -> None:
    for line in lines:
        if options.verbose or _NOTEWORTHY.search(line):
            print(line, file=options.out, flush=True)


def _stop_on_interrupt(job: LocalJob) -> None:
    """What Ctrl-C did when torchrun ran in the foreground: SIGINT to its process group (the ranks
    checkpoint and end), then the job's own escalation if that does not end it. Ctrl-C again is ignored
    meanwhile, so the final checkpoint is not cut short."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        console.print("[yellow]interrupted[/]: stopping the ranks (they write a final checkpoint)")
        try:
            os.killpg(job.launcher_pid, signal.SIGINT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 60
        while job.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        if job.alive():
            job.stop(timeout_s=5)
            # The STOP file would end a resumed run at its first heartbeat.
            (job.run_dir / "STOP").unlink(missing_ok=True)
    finally:
        signal.signal(signal.SIGINT, previous)


def start_watched(launch: TorchrunLaunch, run_dir: Path, world_size: int) -> LocalJob:
    """torchrun in a session of its own, its output in the run's log rather than on the terminal."""
    return LocalJob.start(launch, run_dir, run_dir / LOG_FILE, world_size)


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()
