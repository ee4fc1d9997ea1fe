"""Recovery from a SIGKILLed rank vs a cold start, measured side by side in the same torchrun run.

    python bench/recovery.py [--nproc 4] [--repeats 3] [--every-steps 20] [--kill-rank 1] [--target-s 30]
                             [--warm-start]

Each repeat launches the real trainer under torchrun on this machine (1 node x --nproc, CPU/Gloo, a small
synthetic workload, a checkpoint every --every-steps steps, torchrun's --max-restarts and --monitor-interval
from tooling/phases.yml, as the nodes run it) and, in that one run:

  cold start  torchrun launch -> the first training step completed by every rank;
  kill        once rank --kill-rank is past --kill-step and a checkpoint exists, SIGKILL it;
  recovery    the kill -> the first step beyond the resumed checkpoint completed by every rank after
              torchrun restarted the worker group;
  steps lost  the last step completed before the kill - the step the restart resumed from
              (at most one checkpoint interval);
  restart     counted by the trainer (summary.json restarts/incarnations, the log's restart label) with
              every gradient-sync check of the run in agreement, and
              its cause from torchrun's own log line ("failed (exitcode: -9) local_rank: 1 (pid: ...)").

With --warm-start every rank, at the launch and at the restart alike, is forked from the node's warm pool
(torchrun under `python -m ddp.warm_supervisor`, ddp/warm_pool.py), which imports torch and the trainer once
for the run.

Step instants come from the trainer's ECS logs (training.log_every_steps=1 gives one heartbeat record per
step, with its @timestamp); launch and kill instants are this script's own, on the same wall clock.
Prints medians over --repeats and PASS/FAIL: the median recovery must be <= --target-s, every run must lose
at most one interval, restart once and complete (exit 0 pass, 1 fail, 2 usage). Beside it, the ratio
recovery / cold start (median of the per-run ratios) with its bootstrap interval over runs and the machine's
load (bench/ratio_stats.py), judged against --target-ratio: PASS or FAIL only when the interval is wholly on
one side, else INCONCLUSIVE (at least 3 runs are needed for an interval).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench.ratio_stats import judge, machine_load, paired_ratio  # noqa: E402
from ddp.atomic import atomic_write_json  # noqa: E402
from ddp.ports import free_port_block  # noqa: E402
from tooling.job.torchrun import standalone_torchrun, torchrun_env  # noqa: E402
from tooling.soak.causes import parse_failure  # noqa: E402

RUN_NAME = "recovery"
POLL_S = 0.02  # status polling: a step takes ~25 ms here, so the kill lands within a step or two
WARM_SUPERVISOR = [sys.executable, "-m", "ddp.warm_supervisor"]


# ----- the trainer's records -----
@dataclass(frozen=True)
class StepEvent:
    """One trainer log record that carries a step: when (unix seconds), which rank and incarnation."""

    t: float
    rank: int
    restart: int
    step: int
    event: str


def parse_log_line(line: str) -> StepEvent | None:
    """A StepEvent from one ECS JSON line of ddp/logs.py, None for anything else (other records, a line
    torn by the SIGKILL mid-write)."""
    try:
        record = json.loads(line)
        trainer = record["trainer"]
        labels = record["labels"]
        # ECS @timestamp is UTC with millisecond precision: "2026-11-25T19:30:46.453Z".
        t = datetime.fromisoformat(record["@timestamp"].replace("Z", "+00:00")).timestamp()
        return StepEvent(
            t, int(labels["rank"]), int(labels["restart"]), int(trainer["step"]), trainer["event"]
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def read_events(log_dir: Path) -> list[StepEvent]:
    events = []
    for path in sorted(log_dir.glob("rank*.ndjson")):
        with path.open(encoding="utf-8", errors="replace") as handle:
            events += [e for e in map(parse_log_line, handle) if e is not None]
    return events


def job_step_time(
    events: Iterable[StepEvent], restart: int, after_step: int, world_size: int
) -> float | None:
    """When the job first completed a step beyond `after_step` in incarnation `restart`: the latest of the
    ranks' first such heartbeat, because a DDP step is done only when every rank has done it. None when a
    rank never logged one."""
    first: dict[int, float] = {}
    for e in events:
        if e.restart == restart and e.event == "heartbeat" and e.step > after_step:
            first[e.rank] = min(e.t, first.get(e.rank, math.inf))
    if len(first) < world_size:
        return None
    return max(first.values())


def job_start_time(events: Iterable[StepEvent], restart: int, world_size: int) -> float | None:
    """When every rank of incarnation `restart` was set up (model built, checkpoint loaded): its last
    `start` record."""
    starts = {e.rank: e.t for e in events if e.restart == restart and e.event == "start"}
    return max(starts.values()) if len(starts) == world_size else None


def last_step(events: Iterable[StepEvent], restart: int) -> int | None:
    """The furthest step any rank of incarnation `restart` logged as done (the progress a kill can lose)."""
    steps = [e.step for e in events if e.restart == restart and e.event == "heartbeat"]
    return max(steps) if steps else None


def resumed_step(events: Iterable[StepEvent], restart: int) -> int | None:
    """The step incarnation `restart` started from, from its `start` records (all ranks agree)."""
    steps = {e.step for e in events if e.restart == restart and e.event == "start"}
    return steps.pop() if len(steps) == 1 else None


_GLOG = re.compile(r"^[DIWEF](\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{6}) ")


def launcher_time(line: str, near: float) -> float | None:
    """Unix time of a torchrun log line ("W1125 19:33:29.236000 18236 api.py:1028] ..."): glog prints the
    local time without a year, so the year is taken from `near`, a unix time close to the line's."""
    match = _GLOG.match(line)
    if match is None:
        return None
    month, day, hour, minute, second, micro = map(int, match.groups())
    year = datetime.fromtimestamp(near).year
    try:
        candidates = [
            datetime(y, month, day, hour, minute, second, micro).timestamp()
            for y in (year - 1, year, year + 1)
        ]
    except ValueError:  # 29 February in a neighbouring year
        candidates = [datetime(year, month, day, hour, minute, second, micro).timestamp()]
    return min(candidates, key=lambda t: abs(t - near))  # a run that spans New Year's midnight


def group_stop_times(lines: Iterable[str], killed: float) -> tuple[float | None, float | None]:
    """(when torchrun began stopping the worker group, when it had stopped) after the kill: its first
    "closing signal" line and its "failed (exitcode: ...)" line, which it logs once the others are down."""
    began = stopped = None
    for line in lines:
        t = launcher_time(line, killed)
        if t is None or t < killed - 1.0:  # glog's clock is the same; allow for rounding only
            continue
        if began is None and "closing signal" in line:
            began = t
        if stopped is None and parse_failure(line) is not None:
            stopped = t
    return began, stopped


# ----- one run -----
@dataclass
class Trial:
    """The figures of one launch-kill-restart run; None where the run did not get that far."""

    cold_start_s: float | None = None
    cold_setup_s: float | None = None  # launch -> every rank set up (the rest is the first step)
    recovery_s: float | None = None
    detected_s: float | None = None  # kill -> torchrun starts stopping the group (its monitor interval)
    group_stopped_s: float | None = None  # kill -> the surviving workers are down, restart begins
    recovery_setup_s: float | None = None  # kill -> every restarted rank set up, checkpoint loaded
    killed_rank: int | None = None
    killed_pid: int | None = None
    killed_launcher_pid: int | None = None  # the process torchrun started for it (warm: not the rank)
    step_at_kill: int | None = None
    resumed_from_step: int | None = None
    steps_lost: int | None = None
    restarts: int | None = None
    cause: str | None = None
    completed: bool = False
    problems: list[str] = field(default_factory=list)


def bench_config(args: argparse.Namespace, out: Path, base_port: int) -> dict[str, Any]:
    # Small enough for 4 processes on 2 cores; everything the nodes run is on (metrics endpoint, status,
    # sync checks, checkpoints on every node), so setup and restart cost what they cost in production.
    return {
        "run": {"name": RUN_NAME, "output_dir": str(out)},
        "distributed": {"backend": "gloo"},
        "workload": {
            "kind": "synthetic",
            "input_dim": 128,
            "hidden_dim": 256,
            "num_layers": 3,
            "num_samples": 8192,
        },
        "training": {"batch_size": 32, "max_steps": args.max_steps, "log_every_steps": 1, "seed": 7},
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "checkpoint": {"every_steps": args.every_steps, "keep_last": 3},
        "metrics": {
            "enabled": True,
            "bind_address": "127.0.0.1",
            "base_port": base_port,
            "status_every_steps": 1,  # the kill trigger reads the victim's step from its status file
            "sync_check_every_steps": 10,
            "comm_probe_every_steps": 50,
        },
    }


def trainer_env(monitor_s: float) -> dict[str, str]:
    # Restarts are what this measures: the rendezvous switch they need on, whatever the plan says.
    env = torchrun_env(disable_shared_tcp_store=True, monitor_interval_s=monitor_s)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"  # 4 ranks on 2 cores: intra-op threads would only fight each other
    return env


def descendants(pid: int) -> set[psutil.Process]:
    """The processes started below `pid` (torchrun's workers run in sessions of their own, so a process
    group signal would miss them). psutil.Process, not bare pids: signalling one later checks that its pid
    has not been reused by an unrelated process meanwhile."""
    try:
        return set(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return set()


def stop_launch(proc: subprocess.Popen[bytes], known: set[psutil.Process]) -> None:
    """Stop the torchrun this script started and every worker it started, nothing else."""
    known |= descendants(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # the agent stops its workers on SIGTERM
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for child in known:  # workers the agent left behind (it was killed, or they ignored SIGTERM)
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            child.kill()


def read_status(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (FileNotFoundError, ValueError):
        return {}


def run_trial(args: argparse.Namespace, workdir: Path, max_restarts: int, monitor_s: float) -> Trial:
    trial = Trial(killed_rank=args.kill_rank)
    config = workdir / "config.json"  # JSON is YAML: the trainer's loader reads it as is
    config.write_text(json.dumps(bench_config(args, workdir / "runs", free_port_block(args.nproc))))
    run_dir = workdir / "runs" / RUN_NAME
    launcher_log = workdir / "torchrun.log"
    victim_status = run_dir / "status" / f"rank{args.kill_rank}.json"
    manifest = run_dir / "checkpoints" / "manifest.json"
    known: set[psutil.Process] = set()
    with launcher_log.open("wb") as log:
        launched = time.time()
        proc = subprocess.Popen(
            # Warm: under the supervisor, as ddp-launch runs torchrun with the role's ddp_trainer_warm_start.
            [
                *(WARM_SUPERVISOR if args.warm_start else []),
                *standalone_torchrun(config, args.nproc, max_restarts, monitor_s),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=trainer_env(monitor_s),
            cwd=workdir,
        )
        killed: float | None = None
        try:
            deadline = time.monotonic() + args.timeout_s
            while killed is None and proc.poll() is None and time.monotonic() < deadline:
                status = read_status(victim_status)
                # Steady progress with something to resume from: past the kill step and a checkpoint listed
                # in the manifest (what resume reads; a non-writer rank's status never names checkpoints).
                if (
                    status.get("restart_count") == 0
                    and status.get("step", 0) >= args.kill_step
                    and read_status(manifest).get("checkpoints")
                ):
                    pid = int(status["pid"])
                    launcher_pid = int(status.get("launcher_pid") or pid)
                    known |= descendants(proc.pid)
                    victim = next((p for p in known if p.pid == pid), None)
                    if victim is None:  # never signal a pid this run did not start
                        trial.problems.append(f"rank {args.kill_rank}'s pid {pid} is not a worker of ours")
                        break
                    killed = time.time()
                    try:
                        victim.send_signal(signal.SIGKILL)
                    except psutil.NoSuchProcess:  # it ended on its own between the look and the kill
                        killed = None
                        trial.problems.append(f"rank {args.kill_rank} (pid {pid}) ended before the kill")
                        break
                    trial.killed_pid, trial.killed_launcher_pid = pid, launcher_pid
                    break
                time.sleep(POLL_S)
            if killed is None:
                if not trial.problems:
                    trial.problems.append(f"rank {args.kill_rank} never reached step {args.kill_step}")
            else:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=max(1.0, deadline - time.monotonic()))
                if proc.poll() is None:
                    trial.problems.append(f"the run did not finish within {args.timeout_s:.0f} s")
        finally:
            stop_launch(proc, known)
    figures_from_records(trial, run_dir, launcher_log, launched, killed, args)
    if trial.problems and args.verbose:
        print(launcher_log.read_text(errors="replace")[-4000:], file=sys.stderr)
    return trial


def figures_from_records(
    trial: Trial,
    run_dir: Path,
    launcher_log: Path,
    launched: float,
    killed: float | None,
    args: argparse.Namespace,
) -> None:
    events = read_events(run_dir / "logs")
    n = args.nproc
    first = job_step_time(events, 0, 0, n)
    setup = job_start_time(events, 0, n)
    trial.cold_start_s = first - launched if first is not None else None
    trial.cold_setup_s = setup - launched if setup is not None else None
    if first is None:
        trial.problems.append("no first step recorded by every rank")
    try:
        summary: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    except (FileNotFoundError, ValueError):
        summary = {}
        trial.problems.append("no summary.json")
    trial.completed = summary.get("status") == "completed" and summary.get("steps") == args.max_steps
    if summary and not trial.completed:
        trial.problems.append(f"run ended {summary.get('status')} at step {summary.get('steps')}")
    if killed is None:
        return
    trial.restarts = summary.get("restarts")
    incarnations = summary.get("incarnations") or []
    trial.resumed_from_step = incarnations[-1].get("resumed_from_step") if incarnations else None
    if trial.resumed_from_step != resumed_step(events, 1):  # summary and logs must tell one story
        trial.problems.append(
            f"summary says resumed from {trial.resumed_from_step}, logs say {resumed_step(events, 1)}"
        )
    trial.step_at_kill = last_step(events, 0)
    if trial.resumed_from_step is not None and trial.step_at_kill is not None:
        trial.steps_lost = trial.step_at_kill - trial.resumed_from_step
        again = job_step_time(events, 1, trial.resumed_from_step, n)
        ready = job_start_time(events, 1, n)
        trial.recovery_s = again - killed if again is not None else None
        trial.recovery_setup_s = ready - killed if ready is not None else None
    if trial.recovery_s is None:
        trial.problems.append("no step after the restart recorded by every rank")
    if trial.restarts != 1:
        trial.problems.append(f"expected 1 restart, the summary counts {trial.restarts}")
    sync = summary.get("grad_sync") or {}
    if not sync.get("checks") or sync.get("mismatches"):
        # The ranks hold the same parameters after the restart as before it: every check agreed.
        trial.problems.append(f"gradient sync checks after the restart: {sync}")
    lines = launcher_log.read_text(errors="replace").splitlines()
    began, stopped = group_stop_times(lines, killed)
    trial.detected_s = began - killed if began is not None else None
    trial.group_stopped_s = stopped - killed if stopped is not None else None
    failures = [f for f in map(parse_failure, lines) if f is not None]
    # Warm, torchrun's child is the rank's launcher process, whose pid torchrun names.
    ours = [f for f in failures if f.pid in (trial.killed_pid, trial.killed_launcher_pid)]
    if ours:
        # One node: local rank = global rank.
        trial.cause = f"rank {ours[0].local_rank} (pid {ours[0].pid}) {ours[0].how()}"
    else:
        trial.problems.append(f"torchrun logged no failure of the killed pid {trial.killed_pid}")
        trial.cause = "; ".join(f"local rank {f.local_rank} {f.how()}" for f in failures) or None


# ----- report -----
def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def verdict(trials: list[Trial], every_steps: int, target_s: float) -> tuple[bool, list[str]]:
    """PASS needs every run complete with one restart and at most one interval lost, and the median
    recovery within the target."""
    reasons = [f"run {i + 1}: {p}" for i, t in enumerate(trials) for p in t.problems]
    for i, t in enumerate(trials):
        if t.steps_lost is not None and not 0 <= t.steps_lost <= every_steps:
            reasons.append(f"run {i + 1}: lost {t.steps_lost} steps, more than the interval {every_steps}")
    recovery = median(t.recovery_s for t in trials)
    if recovery is None:
        reasons.append("no recovery time measured")
    elif recovery > target_s:
        reasons.append(f"median recovery {recovery:.1f} s > target {target_s:.0f} s")
    return not reasons, reasons


def fmt(value: float | None, unit: str = " s") -> str:
    return "-" if value is None else f"{value:.2f}{unit}"


def report(trials: list[Trial], args: argparse.Namespace, rendezvous: dict[str, Any]) -> dict[str, Any]:
    print(
        f"{args.nproc} local ranks (gloo, CPU), checkpoint every {args.every_steps} steps, SIGKILL rank "
        f"{args.kill_rank} at step >= {args.kill_step} of {args.max_steps}; torchrun --max-restarts="
        f"{rendezvous['max_restarts']} --monitor-interval={rendezvous['monitor_interval_s']}"
    )
    for i, t in enumerate(trials, start=1):
        print(
            f"run {i}: cold start {fmt(t.cold_start_s)} (setup {fmt(t.cold_setup_s)}), "
            f"recovery {fmt(t.recovery_s)} (detected {fmt(t.detected_s)}, group down "
            f"{fmt(t.group_stopped_s)}, set up {fmt(t.recovery_setup_s)}), "
            f"killed at step {t.step_at_kill}, resumed from {t.resumed_from_step}, lost {t.steps_lost}, "
            f"restarts {t.restarts}: {t.cause or 'cause unknown'}"
        )
    cold = median(t.cold_start_s for t in trials)
    recovery = median(t.recovery_s for t in trials)
    paired = [(t.recovery_s, t.cold_start_s) for t in trials if t.recovery_s and t.cold_start_s]
    estimate = paired_ratio(*map(list, zip(*paired, strict=True))) if paired else None
    ratio_verdict = judge(estimate, args.target_ratio, higher_is_better=False) if estimate else "INCONCLUSIVE"
    lost = [t.steps_lost for t in trials if t.steps_lost is not None]
    ok, reasons = verdict(trials, args.every_steps, args.target_s)
    print(machine_load())
    print(f"median cold start (launch -> first step)      {fmt(cold)}")
    print(f"median recovery   (kill -> first step again)  {fmt(recovery)}  (target <= {args.target_s:.0f} s)")
    print(
        f"ratio recovery / cold start = {estimate.describe() if estimate else '-'}: {ratio_verdict} "
        f"(target <= {args.target_ratio})"
    )
    print(f"steps lost {lost} (max {max(lost) if lost else '-'}, interval {args.every_steps})")
    print("PASS" if ok else "FAIL: " + "; ".join(reasons))
    return {
        "nproc": args.nproc,
        "every_steps": args.every_steps,
        "kill_rank": args.kill_rank,
        "kill_step": args.kill_step,
        "max_steps": args.max_steps,
        "target_s": args.target_s,
        "rendezvous": rendezvous,
        "cold_start_s_median": cold,
        "recovery_s_median": recovery,
        "recovery_over_cold_start_ratio": estimate.ratio if estimate else None,
        "ratio_interval": [estimate.low, estimate.high] if estimate else None,
        "target_ratio": args.target_ratio,
        "ratio_verdict": ratio_verdict,
        "steps_lost_max": max(lost) if lost else None,
        "pass": ok,
        "reasons": reasons,
        "runs": [asdict(t) for t in trials],
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nproc", type=int, default=4, help="local ranks (default 4: phase 1)")
    parser.add_argument("--repeats", type=int, default=3, help="runs; medians are reported (default 3)")
    parser.add_argument("--every-steps", type=int, default=20, help="checkpoint interval (default 20)")
    parser.add_argument("--kill-rank", type=int, default=1, help="rank to SIGKILL (default 1)")
    parser.add_argument(
        "--kill-step", type=int, help="kill once that rank is at this step (default 2.5 intervals)"
    )
    parser.add_argument("--target-s", type=float, default=30.0, help="recovery target (default 30 s)")
    parser.add_argument(
        "--target-ratio", type=float, default=0.5, help="recovery / cold start target (default 0.5)"
    )
    parser.add_argument("--timeout-s", type=float, default=120.0, help="limit per run (default 120 s)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--verbose", action="store_true", help="print torchrun's log of a failed run")
    parser.add_argument(
        "--warm-start", action="store_true", help="ranks forked from the warm pool (ddp/warm_supervisor.py)"
    )
    args = parser.parse_args(argv)
    if args.nproc < 2:
        parser.error("--nproc must be at least 2 (a rank is killed while the others wait)")
    if not 0 <= args.kill_rank < args.nproc:
        parser.error(f"--kill-rank must be in 0..{args.nproc - 1}")
    if args.repeats < 1 or args.every_steps < 1 or args.target_s <= 0 or args.timeout_s <= 0:
        parser.error("--repeats, --every-steps, --target-s and --timeout-s must be positive")
    if args.kill_step is None:
        # Mid-interval after two checkpoints: past start-up, and the loss is half an interval.
        args.kill_step = 2 * args.every_steps + args.every_steps // 2
    if args.kill_step <= args.every_steps:
        parser.error(f"--kill-step must be beyond the first checkpoint (step {args.every_steps})")
    # Two intervals of training after the kill: the restart has to be seen progressing, not just finishing.
    args.max_steps = args.kill_step + 2 * args.every_steps
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from tooling.plan.phases import load_phases

    plan = load_phases().rendezvous  # the nodes' own restart settings, not ones picked for the bench
    rendezvous = {"max_restarts": plan.max_restarts, "monitor_interval_s": plan.monitor_interval_s}
    if plan.max_restarts < 1:
        print("tooling/phases.yml: rendezvous.max_restarts is 0: torchrun would not restart anything")
        return 1
    trials: list[Trial] = []
    try:
        for i in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="ddp-bench-recovery-") as tmp:
                trials.append(run_trial(args, Path(tmp), plan.max_restarts, plan.monitor_interval_s))
            print(f"run {i + 1}/{args.repeats} done", file=sys.stderr)
    except KeyboardInterrupt:  # run_trial's finally has stopped that run's processes already
        print("interrupted", file=sys.stderr)
        return 130
    figures = report(trials, args, rendezvous)
    if args.json:
        atomic_write_json(args.json, figures)
    return 0 if figures["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
