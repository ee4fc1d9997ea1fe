"""Recovery after a killed rank against a cold start, on a provisioned cluster across its nodes (the
sandbox after `site.yml -l phase2a`), the way an operator's job runs: the trainer unit under systemd on
every node, launched by `tooling deploy`, with the role's settings (the warm start included).

    python bench/recovery_cluster.py -i INVENTORY [--phase 2a] [--repeats 3] [--every-steps 20]
                                     [--kill-local-rank 1] [--json FILE]

Each repeat deploys a fresh run (`tooling deploy --skip-provision --skip-verify --restart`, a small
workload logging every step), waits until the last node's local rank --kill-local-rank has passed a
checkpoint, SIGKILLs it over SSH and waits for the run to complete. From the nodes' own clocks:

  cold start  the latest `Started ddp-trainer.service` of the run's nodes (journalctl -o short-unix) to
              the job's first step: every rank's first heartbeat after its first `start` record;
  recovery    the kill (`date +%s.%N` in the same SSH command) to the job's first step after it: every
              rank's first heartbeat after its first `start` record after the kill.

The kill's host keeps the run's timeline honest: its rank is named by its status file (pid), and every
time comes from the nodes (one clock on the sandbox; NTP on a real cluster). Prints each repeat, the
median of recovery / cold start with its bootstrap interval (bench/ratio_stats.py) and PASS/FAIL/
INCONCLUSIVE against --target-ratio (0.5); exit 1 unless PASS and every repeat lost at most one
checkpoint interval (the steps lost: the furthest step any rank logged before the restart, less the step
the job resumed from). The SSH user must be able to signal the training account's processes (root, as the
sandbox's is, or that account).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ratio_stats import judge, machine_load, paired_ratio  # noqa: E402
from bench.recovery import StepEvent, parse_log_line  # noqa: E402

TARGET_RATIO = 0.5
UNIT = "ddp-trainer"
# Small enough for 8 ranks on 2 cores; one heartbeat a step, so the first step after a start is seen.
WORKLOAD = [
    "workload.input_dim=64",
    "workload.hidden_dim=128",
    "workload.num_samples=8192",
    "training.batch_size=16",
    "training.log_every_steps=1",
    "metrics.status_every_steps=1",
]
POLL_S = 0.5
# Prints the status of the local rank asked for, as JSON, from the run directory given.
_FIND_RANK = """
import json, pathlib, sys
for path in pathlib.Path(sys.argv[1], "status").glob("rank*.json"):
    try:
        status = json.loads(path.read_text())
    except ValueError:
        continue
    if status.get("local_rank") == int(sys.argv[2]):
        print(json.dumps(status))
"""


@dataclass
class Repeat:
    run_id: str
    cold_start_s: float | None = None
    recovery_s: float | None = None
    killed: str | None = None  # "rank 5 (pid 123) on node2 at step 47"
    steps_lost: int | None = None
    problems: list[str] = field(default_factory=list)


def unit_started(journal: Iterable[str], unit: str = UNIT) -> float | None:
    """The last time systemd logged the unit's start, from `journalctl -o short-unix` lines
    ("1764847000.841855 node1 systemd[1]: Started ddp-trainer.service - ...")."""
    started = None
    for line in journal:
        stamp, _, rest = line.partition(" ")
        if f"Started {unit}.service" in rest:
            try:
                started = float(stamp)
            except ValueError:
                continue
    return started


def job_first_step(events: Iterable[StepEvent], since: float, world_size: int) -> float | None:
    """When the job finished its first step after `since`: for each rank, its first heartbeat after its
    first `start` record at or after `since`; the latest of those (a DDP step ends on its slowest rank).
    None when a rank has none. Incarnations are told apart by time, not by their restart label: the
    agents of a multi-node job count restarts each their own way."""
    ordered = sorted(events, key=lambda e: e.t)
    started: dict[int, float] = {}
    first: dict[int, float] = {}
    for e in ordered:
        if e.t < since:
            continue
        if e.event == "start" and e.rank not in started:
            started[e.rank] = e.t
        elif e.event == "heartbeat" and e.rank in started and e.rank not in first:
            first[e.rank] = e.t
    if len(first) < world_size:
        return None
    return max(first.values())


def resumed_after(events: Iterable[StepEvent], since: float) -> int | None:
    """The step the job resumed from after `since` (its ranks' first `start` records agree on it)."""
    steps: dict[int, int] = {}
    for e in sorted(events, key=lambda e: e.t):
        if e.t >= since and e.event == "start":
            steps.setdefault(e.rank, e.step)
    values = set(steps.values())
    return values.pop() if len(values) == 1 else None


def progress_before_restart(events: Iterable[StepEvent], since: float) -> int | None:
    """The furthest step the job had done when it restarted after `since`: the highest step any rank
    logged as done before the first `start` record at or after `since` (a step the killed rank's peers
    finish just after the kill still counts; the killed rank's status file can lag behind both)."""
    ordered = sorted(events, key=lambda e: e.t)
    restart = next((e.t for e in ordered if e.t >= since and e.event == "start"), math.inf)
    steps = [e.step for e in ordered if e.event == "heartbeat" and e.t < restart]
    return max(steps) if steps else None


class Cluster:
    """The deployed phase's nodes over SSH, as the inventory reaches them."""

    def __init__(self, inventory: Path, phase: str) -> None:
        from tooling.inventory import load_inventory, phase_hosts, ssh_targets
        from tooling.plan.phases import load_phases

        self.inventory = inventory
        self.phase = phase
        loaded = load_inventory(inventory)
        self.hosts = phase_hosts(loaded, phase, load_phases().get(phase), inventory)
        self.targets = dict(zip(self.hosts, ssh_targets(loaded, self.hosts), strict=True))

    def run(self, host: str, command: str, timeout_s: float = 60.0) -> str:
        from tooling.remote import run_command

        result = run_command(self.targets[host], command, timeout_s=timeout_s)
        if result.rc != 0:
            raise RuntimeError(f"{host}: `{command[:80]}` failed: {result.error or result.stderr.strip()}")
        return result.stdout

    def events(self, run_dir: str) -> list[StepEvent]:
        events: list[StepEvent] = []
        for host in self.hosts:
            text = self.run(host, f"cat {shlex.quote(run_dir)}/logs/rank*.ndjson", timeout_s=120)
            events += [e for e in map(parse_log_line, text.splitlines()) if e is not None]
        return events

    def started(self, since: float) -> float | None:
        """The latest unit start among the nodes since `since` (unix seconds)."""
        times = []
        for host in self.hosts:
            journal = self.run(host, f"journalctl -u {UNIT} -o short-unix --no-pager --since @{int(since)}")
            times.append(unit_started(journal.splitlines()))
        return None if None in times else max(t for t in times if t is not None)


def deploy(args: argparse.Namespace, run_id: str, max_steps: int) -> Any:
    """`tooling deploy` of the run; its deployment record (hosts, run directory, world size)."""
    from tooling.job import records

    sets = [*WORKLOAD, f"checkpoint.every_steps={args.every_steps}", f"training.max_steps={max_steps}"]
    command = [
        sys.executable, "-m", "tooling.cli", "deploy", "--phase", args.phase,
        "--inventory", str(args.inventory), "--skip-provision", "--skip-verify", "--restart", "--yes",
        "--run-id", run_id,
        *[arg for s in sets for arg in ("--set", s)],
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(
            f"tooling deploy failed (exit {done.returncode}): {done.stdout[-2000:]}{done.stderr}"
        )
    return records.load(args.inventory.resolve())


def one_repeat(args: argparse.Namespace, cluster: Cluster, index: int) -> Repeat:
    run_id = f"bench-recovery-{int(time.time())}-{index}"
    repeat = Repeat(run_id)
    kill_step = args.every_steps * 2 + args.every_steps // 2  # mid-interval, after two checkpoints
    launched = time.time()
    record = deploy(args, run_id, max_steps=kill_step + 3 * args.every_steps)
    run_dir = record.run_dir
    victim_host = cluster.hosts[-1]
    deadline = time.monotonic() + args.timeout_s
    victim: dict[str, Any] = {}
    while time.monotonic() < deadline:
        found = cluster.run(
            victim_host, f"python3 -c {shlex.quote(_FIND_RANK)} {run_dir} {args.kill_local_rank}"
        )
        victim = json.loads(found) if found.strip() else {}
        # Past two checkpoints (every rank writes its shard before the step after one ends); the steps lost
        # below show whether the restart found one.
        if victim.get("step", 0) >= kill_step:
            break
        time.sleep(POLL_S)
    else:
        repeat.problems.append(
            f"local rank {args.kill_local_rank} on {victim_host} never reached step {kill_step}"
        )
        return repeat
    killed_at = float(cluster.run(victim_host, f"kill -KILL {int(victim['pid'])} && date +%s.%N").strip())
    repeat.killed = f"rank {victim['rank']} (pid {victim['pid']}) on {victim_host} at step {victim['step']}"
    while time.monotonic() < deadline:
        summary = cluster.run(cluster.hosts[0], f"cat {run_dir}/summary.json 2>/dev/null || true")
        status = json.loads(summary).get("status") if summary.strip() else None
        if status in ("completed", "failed"):
            break
        time.sleep(POLL_S * 4)
    if status != "completed":
        repeat.problems.append(f"the run ended {status or 'not at all'} within {args.timeout_s:.0f} s")
        return repeat
    events = cluster.events(run_dir)
    started = cluster.started(launched - 1)
    first = job_first_step(events, started, record.world_size) if started else None
    again = job_first_step(events, killed_at, record.world_size)
    resumed = resumed_after(events, killed_at)
    if started is None or first is None:
        repeat.problems.append("no unit start or first step found for the cold start")
    else:
        repeat.cold_start_s = first - started
    if again is None or resumed is None:
        repeat.problems.append("no restart found after the kill")
    else:
        repeat.recovery_s = again - killed_at
        progress = progress_before_restart(events, killed_at)
        repeat.steps_lost = (int(victim["step"]) if progress is None else progress) - resumed
        if repeat.steps_lost > args.every_steps:
            repeat.problems.append(
                f"lost {repeat.steps_lost} steps, more than one interval ({args.every_steps})"
            )
    return repeat


def report(repeats: list[Repeat], args: argparse.Namespace, load: str) -> tuple[bool, dict[str, Any]]:
    print(f"phase {args.phase} on {args.inventory}; before: {load}; after: {machine_load()}")
    for r in repeats:
        figures = (
            f"cold start {r.cold_start_s:.2f} s, recovery {r.recovery_s:.2f} s, "
            f"ratio {r.recovery_s / r.cold_start_s:.3f}, lost {r.steps_lost} steps"
            if r.cold_start_s and r.recovery_s is not None
            else "incomplete"
        )
        print(f"  {r.run_id}: {r.killed or 'no kill'}; {figures}" + "".join(f"; {p}" for p in r.problems))
    whole = [r for r in repeats if r.cold_start_s and r.recovery_s is not None and not r.problems]
    document: dict[str, Any] = {"repeats": [asdict(r) for r in repeats], "target_ratio": args.target_ratio}
    if not whole:
        print("no complete repeat: FAIL")
        return False, document
    estimate = paired_ratio([r.recovery_s or 0.0 for r in whole], [r.cold_start_s or math.inf for r in whole])
    verdict = judge(estimate, args.target_ratio, higher_is_better=False)
    print(
        f"median cold start {statistics.median(r.cold_start_s or 0.0 for r in whole):.2f} s, "
        f"recovery {statistics.median(r.recovery_s or 0.0 for r in whole):.2f} s"
    )
    print(f"recovery / cold start = {estimate.describe()}: {verdict} (target <= {args.target_ratio})")
    document |= {"ratio": asdict(estimate), "verdict": verdict}
    return verdict == "PASS" and len(whole) == len(repeats), document


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "-i", "--inventory", type=Path, required=True, help="the provisioned cluster's inventory"
    )
    parser.add_argument("--phase", default="2a", help="a phase of two nodes or more (default 2a)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--every-steps", type=int, default=20, help="checkpoint interval (default 20)")
    parser.add_argument("--kill-local-rank", type=int, default=1)
    parser.add_argument("--target-ratio", type=float, default=TARGET_RATIO)
    parser.add_argument("--timeout-s", type=float, default=600.0, help="per repeat, after the deploy")
    parser.add_argument("--json", type=Path, help="write the repeats and the verdict here")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.every_steps < 2 or args.timeout_s <= 0:
        parser.error("--repeats must be >= 1, --every-steps >= 2 and --timeout-s positive")
    if not args.inventory.is_dir():
        parser.error(f"--inventory {args.inventory}: not a directory")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    cluster = Cluster(args.inventory, args.phase)
    if len(cluster.hosts) < 2:
        print(
            f"phase {args.phase} has {len(cluster.hosts)} node: pick one of two nodes or more",
            file=sys.stderr,
        )
        return 2
    load = machine_load()
    repeats = []
    for index in range(args.repeats):
        try:
            repeats.append(one_repeat(args, cluster, index))
        except RuntimeError as exc:
            repeats.append(Repeat(f"repeat {index}", problems=[str(exc)]))
    ok, document = report(repeats, args, load)
    if args.json:
        tmp = args.json.with_name(f".{args.json.name}.{os.getpid()}")
        tmp.write_text(json.dumps(document, indent=2))
        tmp.replace(args.json)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
