"""Faults put on the shared cluster's runs and what the tests read back: node2 lost (its container killed)
or cut off (its traffic to node1 dropped in its own network namespace, the host untouched), a rank
SIGKILLed right after a checkpoint or SIGSTOPped for a while, a node's ranks starved of CPU time, a node's
outgoing link rate-limited, and the run's checkpoints, incarnations and unit state on the nodes."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from tests.integration.sandbox_harness import Sandbox, explain
from tests.integration.sandbox_jobs import corrupt_newest_checkpoint, on_node
from tests.integration.sandbox_monitor import wait_until
from tooling.inventory import load_inventory
from tooling.plan.phases import DEFAULT_PHASES_FILE

VENV_PYTHON = "/opt/ddp/venv/bin/python"
# distributed.timeout_s: how long a collective waits for a silent peer before the rank gives up.
COLLECTIVE_TIMEOUT_S = 20
# rendezvous.join_timeout_s of the tests' site phases file: how long torchrun waits for a lost node to
# rejoin. The plan's 120 s suits real clusters; the fault tests pay it in wall time, so they use less, but
# more than torchrun's last-call wait (30 s): an elastic group re-forming on node1 alone waits that long
# for node2 before closing, and a shorter join timeout ends it first (RendezvousTimeoutError).
JOIN_TIMEOUT_S = 45
# Where no group re-forms with fewer nodes (min_nodes 2), the join timeout only bounds how long node1 waits
# for a lost node2 before its job fails: shorter again, but with room for the two nodes' agents starting a
# few seconds apart under load.
STRICT_JOIN_TIMEOUT_S = 25


def site_phases(box: Sandbox, name: str, join_timeout_s: int = JOIN_TIMEOUT_S, **phase2a: int) -> Path:
    """A site's own phases file (`tooling --phases`): the project's plan with a shorter join timeout and
    phase 2a's settings changed by `phase2a` (e.g. min_nodes=1)."""
    plan = yaml.safe_load(DEFAULT_PHASES_FILE.read_text())
    plan["rendezvous"]["join_timeout_s"] = join_timeout_s
    plan["phases"]["2a"].update(phase2a)
    path = box.tmp / f"site-phases-{name}.yml"
    path.write_text(yaml.safe_dump(plan))
    return path


def newest_checkpoint(box: Sandbox, run_dir: str, host: str = "node1") -> int | None:
    shown = on_node(box, host, f"cat {run_dir}/checkpoints/manifest.json")
    if shown.rc != 0:
        return None
    return max((int(e["step"]) for e in json.loads(shown.stdout).get("checkpoints", [])), default=None)


def wait_for_checkpoint(box: Sandbox, run_dir: str, step: int, max_steps: int) -> int:
    """The newest checkpoint once one at `step` or later exists, checking the run has not ended yet."""

    def reached() -> int | None:
        newest = newest_checkpoint(box, run_dir)
        return newest if newest is not None and newest >= step else None

    newest: int = wait_until(f"a checkpoint at step {step} or later in {run_dir}", reached, 300, every=2)
    assert newest < max_steps, "the run ended before the fault: raise its max_steps"
    return newest


def unit_state(box: Sandbox, host: str) -> str:
    return on_node(box, host, "systemctl show -p ActiveState --value ddp-trainer").stdout.strip()


def wait_for_unit_end(box: Sandbox, host: str, since: float, limit: float) -> float:
    """Seconds from `since` until `host`'s trainer unit stopped running; fails past `limit` (a hang)."""
    while unit_state(box, host) in ("active", "activating", "deactivating"):
        assert time.monotonic() - since < limit, f"{host}'s job still runs {limit:.0f} s after the fault"
        time.sleep(3)
    return time.monotonic() - since


def checkpoints_verify(box: Sandbox, run_dir: str) -> None:
    verified = on_node(box, "node1", f"{VENV_PYTHON} -m ddp.checkpoint_verify {run_dir} --json")
    assert verified.rc == 0, verified


def lose_node2(box: Sandbox) -> None:
    killed = box.podman("kill", "--signal", "KILL", box.container("node2"))
    assert killed.returncode == 0, killed.stderr


def _netns_pid(box: Sandbox, host: str) -> str:
    return box.podman("inspect", "--format", "{{.State.Pid}}", box.container(host)).stdout.strip()


def _node2_netns(box: Sandbox, action: str) -> None:
    pid = _netns_pid(box, "node2")
    node1 = load_inventory(box.inventory)["_meta"]["hostvars"]["node1"]["ansible_host"]
    for rule in (["INPUT", "-s", node1], ["OUTPUT", "-d", node1]):
        done = box.run(["nsenter", "-t", pid, "-n", "iptables", action, rule[0], *rule[1:], "-j", "DROP"])
        assert done.returncode == 0, explain(done)


def partition_node2(box: Sandbox) -> None:
    """Drop node2's traffic to and from node1 in node2's own network namespace (the host is untouched)."""
    _node2_netns(box, "-I")


def heal_node2(box: Sandbox) -> None:
    """Undo partition_node2 and end whatever node2's trainer unit is still trying."""
    _node2_netns(box, "-D")
    on_node(box, "node2", "systemctl stop ddp-trainer; systemctl reset-failed ddp-trainer || true")


@contextmanager
def rate_limited(box: Sandbox, host: str, rate: str = "2mbit") -> Iterator[None]:
    """`host`'s outgoing traffic on its cluster interface held to `rate` by a token bucket (tc tbf) in its
    own network namespace, with up to 100 ms of queue: the job's gradients fill it, and whatever else
    leaves the node waits behind them, as on a congested or mis-negotiated link. (The kernel here has no
    netem to add a plain delay; a rate limit is the fault a real link shows more often anyway.)"""
    pid = _netns_pid(box, host)
    address = load_inventory(box.inventory)["_meta"]["hostvars"][host]["ansible_host"]
    shown = box.run(["nsenter", "-t", pid, "-n", "ip", "-o", "-4", "addr", "show"])
    assert shown.returncode == 0, explain(shown)
    device = next(line.split()[1] for line in shown.stdout.splitlines() if f" {address}/" in line)
    tc = ["nsenter", "-t", pid, "-n", "tc", "qdisc"]
    shape = ["root", "tbf", "rate", rate, "burst", "16kb", "latency", "100ms"]
    added = box.run([*tc, "replace", "dev", device, *shape])
    assert added.returncode == 0, explain(added)
    try:
        yield
    finally:
        removed = box.run([*tc, "del", "dev", device, "root"])
        assert removed.returncode == 0, explain(removed)


def node2_worker(box: Sandbox, run_dir: str, local_rank: int) -> dict:
    """The status record (rank, pid, step) of the worker with `local_rank` on node2."""
    read = "import glob, json, sys; print(json.dumps([json.load(open(p)) for p in glob.glob(sys.argv[1])]))"
    shown = on_node(box, "node2", f"python3 -c {shlex.quote(read)} '{run_dir}/status/rank*.json'")
    assert shown.rc == 0, shown
    return next(r for r in json.loads(shown.stdout) if r.get("local_rank") == local_rank)


@contextmanager
def stopped_node2_rank(box: Sandbox, run_dir: str) -> Iterator[dict]:
    """node2's local rank 1 SIGSTOPped (a rank frozen as by a stuck driver or a debugger) while the block
    runs, SIGCONTed after it; yields the rank's status record (rank, pid, step)."""
    victim = node2_worker(box, run_dir, local_rank=1)
    stopped = on_node(box, "node2", f"kill -STOP {int(victim['pid'])}")
    assert stopped.rc == 0, stopped
    try:
        yield victim
    finally:
        resumed = on_node(box, "node2", f"kill -CONT {int(victim['pid'])}")
        assert resumed.rc == 0, resumed


def kill_rank_after_next_checkpoint(box: Sandbox, run_dir: str, damage: bool = False) -> tuple[int, dict]:
    """SIGKILL node2's local rank 1 right after a new checkpoint lands, so none lands in between; with
    `damage`, that newest checkpoint is first corrupted on both nodes."""
    seen = newest_checkpoint(box, run_dir)
    deadline = time.monotonic() + 300
    while (newest := newest_checkpoint(box, run_dir)) == seen:
        assert time.monotonic() < deadline, "no new checkpoint within 5 minutes"
        time.sleep(0.5)
    assert newest is not None
    for host in ("node1", "node2") if damage else ():
        damaged = corrupt_newest_checkpoint(box, host, run_dir)
        assert damaged.endswith(f"step-{newest:09d}.pt"), (host, damaged, newest)
    victim = node2_worker(box, run_dir, local_rank=1)
    killed = on_node(box, "node2", f"kill -KILL {victim['pid']}")
    assert killed.rc == 0, killed
    return newest, victim


def incarnations(box: Sandbox, run_dir: str, count: int) -> list[dict]:
    """The run's incarnations (node1's summary) once there are at least `count`."""

    def read() -> list[dict]:
        shown = on_node(box, "node1", f"cat {run_dir}/summary.json")
        found: list[dict] = json.loads(shown.stdout).get("incarnations", []) if shown.rc == 0 else []
        return found if len(found) >= count else []

    found: list[dict] = wait_until(f"{count} incarnations of {run_dir}", read, 300, every=3)
    return found


@contextmanager
def starved(
    box: Sandbox, host: str, run_dir: str, stopped_s: float = 0.3, running_s: float = 0.2
) -> Iterator[None]:
    """`host`'s ranks run only part of the time: stopped and continued in turn (SIGSTOP/SIGCONT, as
    cpulimit does), a node whose CPUs something else takes. Unlike a CFS quota (`podman update --cpus`),
    which throttles only CPU work, this also stretches the ranks' simulated device time (a sleep), as a
    starved host thread stretches a GPU rank's steps. The loop runs on the node itself, bounded in time,
    and always leaves the ranks running."""
    read_pids = (
        "import glob, json, sys; files = glob.glob(sys.argv[1] + '/status/rank*.json'); "
        "print(' '.join(str(json.load(open(f))['pid']) for f in files))"
    )
    ranks = on_node(box, host, f"{VENV_PYTHON} -c {shlex.quote(read_pids)} {run_dir}")
    pids = ranks.stdout.strip()
    assert ranks.rc == 0 and pids, ranks
    stop_file = f"/tmp/ddp-test-starve-{host}"
    loop = (
        f"trap 'kill -CONT {pids}' EXIT; while [ ! -e {stop_file} ]; do kill -STOP {pids}; "
        f"sleep {stopped_s}; kill -CONT {pids}; sleep {running_s}; done"
    )
    detached = f"setsid -f timeout 300 bash -c {shlex.quote(loop)} </dev/null >/dev/null 2>&1"
    started = on_node(box, host, f"rm -f {stop_file}; {detached}")
    assert started.rc == 0, started
    try:
        yield
    finally:
        on_node(box, host, f"touch {stop_file}; sleep {stopped_s + running_s}; kill -CONT {pids}")
