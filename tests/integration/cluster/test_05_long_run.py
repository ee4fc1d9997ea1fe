"""One long phase-2a run serves every check that reads a running job, then loses node2 for good.

While it runs: `tooling status` shows all eight ranks; Prometheus scrapes exactly phase 2a's ranks and
nodes; `tooling check` passes; with role firewall loaded only the phase's nodes reach the rendezvous store
and only they and the monitoring host the metrics, and training goes on; node1's checkpoint directory (a
small tmpfs mounted there before the launch) first fills up, then turns read-only, and each time the trainer
says so, keeps the previous checkpoint, trains on, raises TrainerCheckpointWriteFailures in Prometheus and
Alertmanager, and writes checkpoints again once the disk is back; a SIGKILLed rank restarts the group on
both nodes from the newest checkpoint, and from the one before when the newest is damaged; every dashboard
panel's PromQL answers (by then the run has minutes of history, restarts included); `tooling doctor` finds
the run healthy, then names a SIGSTOPped rank on node2 within a minute, and a rendezvous name that does not
resolve by that name.
Then node2's container is killed (the node-down scenario, once for the whole suite): its ranks fire
TrainerRankDown into Alertmanager, the job stops on node1 within the configured timeouts with its
checkpoints intact, `sandbox status`, `verify-node`, `check` and `deploy` each name node2 and the reason,
`deploy --fallback 1` resumes the run on node1 from the newest checkpoint that verifies, and `sandbox up`
brings node2 back at its address with its host keys."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster.checks import verify_phase
from tests.integration.cluster.faults import (
    COLLECTIVE_TIMEOUT_S,
    STRICT_JOIN_TIMEOUT_S,
    checkpoints_verify,
    incarnations,
    kill_rank_after_next_checkpoint,
    lose_node2,
    newest_checkpoint,
    rate_limited,
    site_phases,
    starved,
    stopped_node2_rank,
    unit_state,
    wait_for_unit_end,
)
from tests.integration.sandbox_harness import ROOT, Sandbox, explain
from tests.integration.sandbox_jobs import (
    RUN_ROOT,
    SMALL_RUN,
    corrupt_newest_checkpoint,
    forget_run,
    node_address,
    on_node,
    wait_for_summary,
)
from tests.integration.sandbox_monitor import (
    instant_query,
    monitor_url,
    prometheus_api,
    rank_down_alerts,
    wait_no_rank_down,
    wait_until,
)
from tooling.check.commands import ProbeTarget, connectivity
from tooling.check.parsers import parse_connectivity
from tooling.dashboards.build import queries
from tooling.plan.phases import load_phases
from tooling.soak.causes import WorkerFailure, parse_failure

pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group("cluster")]

PHASE = "2a"
NODES = ("node1", "node2")
RANKS = 8
RUN_ID = "long-2a"
RUN_DIR = f"{RUN_ROOT}/{RUN_ID}"
CHECKPOINTS = f"{RUN_DIR}/checkpoints"
VENV_PYTHON = "/opt/ddp/venv/bin/python"
# Steps between checkpoints: at SMALL_RUN's pace (at most 5 steps a second) at least 10 s, the window a
# test has to damage one and kill a rank before the next lands.
EVERY = 50
# Grafana's own placeholders, as Grafana would fill them for a 5-minute view of this phase.
PANEL_VARIABLES = {"$__rate_interval": "1m", "$__range": "5m", "$phase": PHASE, "$node": ".*"}
# Rates over 1m windows and the per-rank step-time means need this much history before they answer.
HISTORY_S = 75
# The sandbox's nodes share this machine's disk: its fill level and how fast other work fills it say
# nothing about the cluster, so the disk bands are widened. Eight ranks on two cores also delay the
# connect probe's own process, so its latency band is widened too; every other threshold is the package's.
CHECK_SETTINGS = """\
thresholds:
  disk_free_warn_ratio: 0.02
  disk_free_fail_ratio: 0.01
  time_to_full_warn_h: 0.02
  time_to_full_fail_h: 0.01
  latency_warn_ms: 100
"""


def _in_node1_mounts(box: Sandbox, *command: str) -> None:
    """Run `command` in node1's mount namespace from the host: a container may not mount, the host may."""
    pid = box.podman("inspect", "--format", "{{.State.Pid}}", box.container("node1")).stdout.strip()
    done = box.run(["nsenter", "-t", pid, "-m", *command])
    assert done.returncode == 0, explain(done)


@dataclass
class LongRun:
    box: Sandbox
    plan: Path  # the site phases file it was deployed with (a shorter rendezvous join timeout)
    prometheus: str
    scraped_since: float = 0.0  # when Prometheus first had all eight ranks


@pytest.fixture(scope="module")
def long_run(phase2a_cluster: Sandbox) -> Iterator[LongRun]:
    box = phase2a_cluster
    plan = site_phases(box, "long-run", join_timeout_s=STRICT_JOIN_TIMEOUT_S)
    forget_run(box, RUN_ID)
    # node1's checkpoint directory is a small disk of its own, mounted before the launch so the trainer's
    # unit starts with it in place: room for the few checkpoints kept (well under 1 MiB each with
    # SMALL_RUN), not for the disk-fault test's filler.
    prepared = on_node(box, "node1", f"mkdir -p {CHECKPOINTS}")
    assert prepared.rc == 0, prepared
    _in_node1_mounts(box, "mount", "-t", "tmpfs", "-o", "size=16m", "ddp-test-checkpoints", CHECKPOINTS)
    owner = on_node(box, "node1", f"chown --reference={RUN_ROOT} {RUN_DIR} {CHECKPOINTS}")
    assert owner.rc == 0, owner
    sets = [
        *SMALL_RUN, "training.max_steps=1000000", f"checkpoint.every_steps={EVERY}",
        f"distributed.timeout_s={COLLECTIVE_TIMEOUT_S}",
    ]  # fmt: skip
    deployed = box.tooling(
        "--phases", str(plan), "deploy", "--phase", PHASE, "--inventory", str(box.inventory),
        "--skip-provision", "--skip-verify", "--restart", "--run-id", RUN_ID,
        *[arg for s in sets for arg in ("--set", s)],
    )  # fmt: skip
    assert deployed.returncode == 0 and "is up" in deployed.stdout, explain(deployed)
    yield LongRun(box, plan, monitor_url(box, 9090))
    on_node(box, "node1", "systemctl stop ddp-trainer")
    _in_node1_mounts(box, "umount", CHECKPOINTS)


def _status_rows(box: Sandbox) -> tuple[str, list[tuple[str, int, str]]]:
    shown = box.tooling("status", "--inventory", str(box.inventory))
    assert shown.returncode == 0, explain(shown)
    # One table row per rank: node, rank, state, step ... (rich draws the cells between │ bars).
    rows = [
        [c.strip() for c in line.split("│")[1:-1]]
        for line in shown.stdout.splitlines()
        if line.count("│") >= 9
    ]
    return shown.stdout, [(row[0], int(row[1]), row[2]) for row in rows if len(row) > 2 and row[1].isdigit()]


def test_status_shows_every_rank_and_prometheus_scrapes_exactly_the_phase(long_run: LongRun) -> None:
    box, prometheus = long_run.box, long_run.prometheus

    def all_ranks() -> list[dict[str, Any]]:
        series = instant_query(prometheus, f'trainer_step{{job="trainer", phase="{PHASE}"}} > 0')
        return series if len(series) == RANKS else []

    ranks = wait_until("8 ranks stepping in Prometheus", all_ranks, timeout=240)
    long_run.scraped_since = time.monotonic()
    assert sorted(int(s["metric"]["rank"]) for s in ranks) == list(range(RANKS))
    per_node = {n: sum(1 for s in ranks if s["metric"]["node"] == n) for n in NODES}
    assert per_node == {"node1": 4, "node2": 4}, per_node
    nodes = instant_query(prometheus, f'node_memory_MemAvailable_bytes{{job="node", phase="{PHASE}"}}')
    assert sorted(s["metric"]["node"] for s in nodes) == list(NODES)
    targets = prometheus_api(prometheus, "/api/v1/targets", state="active")["activeTargets"]
    scraped = sorted((t["labels"]["job"], t["labels"]["node"]) for t in targets if "node" in t["labels"])
    expected = [("node", n) for n in NODES] + [("trainer", n) for n in NODES for _ in range(4)]
    assert scraped == sorted(expected), "Prometheus must scrape exactly phase 2a's nodes and ranks"

    shown, rows = _status_rows(box)
    assert "8/8 ranks reported" in shown, shown
    assert sorted(rank for _, rank, _ in rows) == list(range(RANKS)), shown
    assert sorted(node for node, _, _ in rows) == ["node1"] * 4 + ["node2"] * 4, shown
    assert {state for _, _, state in rows} == {"running"}, shown


def _check(box: Sandbox) -> tuple[int, dict[str, Any], str]:
    """`tooling check --json` as the operator who deployed the run (the sandbox's state root)."""
    settings = box.tmp / "check-settings.yml"
    settings.write_text(CHECK_SETTINGS)
    result = box.tooling(
        "check", "--inventory", str(box.inventory), "--settings", str(settings),
        "--json", timeout=900,
    )  # fmt: skip
    assert result.returncode in (0, 1), explain(result)
    return result.returncode, json.loads(result.stdout), explain(result)


def _rows(document: dict[str, Any], check: str, host: str | None = None) -> list[dict[str, Any]]:
    return [r for r in document["results"] if r["check"] == check and (host is None or r["host"] == host)]


def test_check_passes_on_the_running_phase(long_run: LongRun) -> None:
    box = long_run.box
    deadline = time.monotonic() + 300
    while any(newest_checkpoint(box, RUN_DIR, host) is None for host in NODES):
        assert time.monotonic() < deadline, "no checkpoint on both nodes within 5 minutes"
        time.sleep(3)
    wait_no_rank_down(long_run.prometheus, 120)
    code, document, shown = _check(box)
    assert code == 0, shown
    assert document["phase"] == PHASE and document["run_id"] == RUN_ID
    assert [r["status"] for r in _rows(document, "job")] == ["PASS"], _rows(document, "job")
    for host in NODES:
        for check in ("ranks", "disk", "checkpoint"):
            rows = _rows(document, check, host)
            assert [r["status"] for r in rows] == ["PASS"], (check, host, rows)
    assert _rows(document, "ranks", "node1")[0]["measured"] == "4/4 ranks"
    verified = _rows(document, "checkpoint", "node1")[0]
    assert "sha256 ok, torch.load ok" in verified["detail"] and verified["measured"].startswith("step-")
    # Every node reaches the other's sshd, and node2 reaches the rendezvous on node1 while the job runs.
    network = _rows(document, "network")
    assert network and all(r["status"] == "PASS" for r in network), network
    links = {(r["host"], r["detail"].split()[1], r["detail"].rsplit("(", 1)[-1].rstrip(")")) for r in network}
    assert {("node1", "node2", "ssh"), ("node2", "node1", "ssh"), ("node2", "node1", "rendezvous")} <= links
    # Prometheus runs on the monitor host: the alert checks really looked.
    assert _rows(document, "alerts")[0]["measured"] != "not checked", _rows(document, "alerts")
    snapshot = Path(document["snapshot"])
    assert snapshot.parent == box.home / "checks"
    record = json.loads(snapshot.read_text().splitlines()[-1])
    assert record["run_id"] == RUN_ID and set(record["disk"]) == set(NODES)


def _manifest(box: Sandbox) -> dict[str, Any]:
    shown = on_node(box, "node1", f"cat {CHECKPOINTS}/manifest.json")
    return json.loads(shown.stdout) if shown.rc == 0 else {"checkpoints": []}


def _newest_step(box: Sandbox) -> int:
    return max((int(e["step"]) for e in _manifest(box)["checkpoints"]), default=-1)


def _failures_logged(box: Sandbox, reason: str) -> list[str]:
    shown = on_node(box, "node1", f"grep -h 'checkpoint at step' {RUN_DIR}/logs/*.ndjson || true")
    return [line for line in shown.stdout.splitlines() if reason in line]


def _write_failure_alerts(url: str) -> list[dict[str, Any]]:
    alerts = prometheus_api(url, "/api/v1/alerts")["alerts"]
    return [
        a
        for a in alerts
        if a["labels"]["alertname"] == "TrainerCheckpointWriteFailures"
        and a["labels"].get("node") == "node1"
        and a["state"] == "firing"
    ]


def _refused_then_kept(box: Sandbox, reason: str) -> int:
    """Wait until the trainer has refused two checkpoints for `reason` (it trains on between them), then
    check the newest kept one is untouched."""
    kept = _newest_step(box)

    def twice() -> list[str]:
        logged = _failures_logged(box, reason)
        return logged if len(logged) >= 2 else []

    logged = wait_until(f"two checkpoints refused: {reason}", twice, 180, 3)
    assert f"keeping step-{kept:09d}.pt" in logged[-1], logged[-1]
    assert _newest_step(box) == kept, "a checkpoint was recorded on a full or read-only disk"
    checkpoints_verify(box, RUN_DIR)
    return kept


FOREIGN_TABLE = "site_own"


def _reaches(box: Sandbox, source: str, address: str, ports: tuple[int, ...]) -> dict[int, bool]:
    """Which of `ports` at `address` a client on `source` (a node, or "host": this machine) connects to
    within 3 s: `tooling check`'s own connectivity probe, run there."""
    probe = connectivity([ProbeTarget("node1", address, port, str(port)) for port in ports], 3.0, "python3")
    if source == "host":
        ran = subprocess.run(["sh", "-c", probe], capture_output=True, text=True, timeout=60, check=False)
        text = ran.stdout
    else:
        text = on_node(box, source, probe).stdout
    return {c.port: c.ok for c in parse_connectivity(text).connects}


def test_firewall_lets_only_the_phase_reach_the_store_and_the_metrics(long_run: LongRun) -> None:
    """Role firewall loaded on the running phase's nodes, as a site with `firewall_enabled: true` gets it
    from trainer.yml (its own verify step checks the loaded table; a second run changes nothing and leaves
    another tool's table alone): node2 still reaches node1's rendezvous store and metrics, the monitoring
    host only the metrics, this machine (outside the phase, not monitoring) neither; the eight ranks train
    on through the load and Prometheus keeps scraping them. Stopping the table's unit deletes it: the store
    answers again."""
    box, prometheus = long_run.box, long_run.prometheus
    plan = load_phases()
    store, metrics = plan.rendezvous.port, plan.metrics.base_port
    node1 = node_address(box, "node1")
    playbook = [
        str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(box.inventory), "-l", "phase2a",
        str(ROOT / "playbooks" / "firewall.yml"), "-e", "firewall_enabled=true",
        "-e", f"ddp_trainer_phase={PHASE}",
    ]  # fmt: skip
    try:
        loaded = box.run(playbook, timeout=600)
        assert loaded.returncode == 0, explain(loaded)
        # Another tool's table (firewalld's, Docker's, the site's) stays as it is, and a second run changes
        # nothing.
        for host in NODES:
            planted = on_node(box, host, f"nft add table inet {FOREIGN_TABLE}")
            assert planted.rc == 0, planted
        again = box.run(playbook, timeout=600)
        assert again.returncode == 0, explain(again)
        recap = re.findall(r"^(node\d)\s+:.*\bchanged=(\d+)", again.stdout, re.MULTILINE)
        assert sorted(recap) == [("node1", "0"), ("node2", "0")], again.stdout[-3000:]
        for host in NODES:
            kept = on_node(box, host, f"nft list table inet {FOREIGN_TABLE}")
            assert kept.rc == 0, f"{host}: the role removed another tool's table: {kept}"
        reach = {
            (source, port): ok
            for source in ("node2", "monitor", "host")
            for port, ok in _reaches(box, source, node1, (store, metrics)).items()
        }
        assert reach == {
            ("node2", store): True, ("node2", metrics): True,
            ("monitor", store): False, ("monitor", metrics): True,
            ("host", store): False, ("host", metrics): False,
        }, reach  # fmt: skip
        # Training goes on (the collective's connections were up before the table) and so do the scrapes:
        # every rank is scraped past the furthest step any rank had reached before the probes, which no
        # scrape older than the table can show.
        stepped = instant_query(prometheus, f'max(trainer_step{{job="trainer", phase="{PHASE}"}})')
        assert stepped, "no trainer steps in Prometheus"
        seen = float(stepped[0]["value"][1])
        wait_until(
            "all eight ranks stepping on, scraped, behind the firewall",
            lambda: instant_query(
                prometheus,
                f'count(trainer_step{{job="trainer", phase="{PHASE}"}} > {seen}) == 8',
            ),
            timeout=60,
            every=3,
        )
    finally:
        for host in NODES:
            on_node(
                box,
                host,
                f"systemctl disable --now ddp-firewall; nft delete table inet {FOREIGN_TABLE} || true",
            )
    for host in NODES:
        gone = on_node(box, host, "nft list table inet ddp_cluster")
        assert gone.rc != 0, f"{host} still has the table"
    answers = _reaches(box, "host", node1, (store,))
    assert answers == {store: True}, f"the table is gone, yet node1's store does not answer: {answers}"


def test_checkpoint_disk_full_then_read_only_keeps_the_previous_checkpoint(long_run: LongRun) -> None:
    box, prometheus = long_run.box, long_run.prometheus
    wait_until("a first checkpoint on node1's small disk", lambda: _newest_step(box) >= 0, 300, 3)

    on_node(box, "node1", f"dd if=/dev/zero of={CHECKPOINTS}/.filler bs=1M 2>/dev/null; sync")
    full_kept = _refused_then_kept(box, "No space left on device")
    fired = wait_until("the write-failure alert", lambda: _write_failure_alerts(prometheus), 180)
    assert fired[0]["labels"]["phase"] == PHASE, fired[0]["labels"]

    def in_alertmanager() -> list[dict[str, Any]]:
        alerts = prometheus_api(monitor_url(box, 9093), "/api/v2/alerts")
        return [a for a in alerts if a["labels"]["alertname"] == "TrainerCheckpointWriteFailures"]

    wait_until("TrainerCheckpointWriteFailures in Alertmanager", in_alertmanager, 90)

    on_node(box, "node1", f"rm -f {CHECKPOINTS}/.filler")
    _in_node1_mounts(box, "mount", "-o", "remount,ro", CHECKPOINTS)
    ro_kept = _refused_then_kept(box, "Read-only file system")
    assert ro_kept >= full_kept

    # The disk is back: checkpoints resume beyond the one that was kept, and they verify.
    _in_node1_mounts(box, "mount", "-o", "remount,rw", CHECKPOINTS)
    wait_until("a checkpoint after the fault", lambda: _newest_step(box) > ro_kept, 180, 3)
    checkpoints_verify(box, RUN_DIR)
    # Both faults were counted by node1's writer (its global rank 0), as Prometheus scraped it.
    counted = instant_query(prometheus, f'trainer_checkpoint_failures_total{{node="node1", phase="{PHASE}"}}')
    assert max(float(series["value"][1]) for series in counted) >= 2, counted
    print(f"kept step {full_kept} (disk full), {ro_kept} (read-only)")


def _stragglers(prometheus: str) -> list[dict[str, Any]]:
    return instant_query(prometheus, f'trainer_straggler{{job="trainer", phase="{PHASE}"}} == 1')


def test_a_starved_node_is_named_and_healthy_ranks_never_were(long_run: LongRun) -> None:
    """Until now every rank ran on equal terms: none was ever named a straggler. Then node2's ranks get
    the CPU only part of the time (stopped and continued in turn, as a node whose CPUs something else
    takes): their own work per step stretches, node1's ranks wait for them in every all-reduce, and within
    2 minutes node2's four ranks, and only they, are named in Prometheus, in their status files and in
    their logs. (A CFS quota, `podman update --cpus`, was tried first: these ranks' simulated device time is
    a sleep that a quota does not slow, so the throttling landed in the all-reduce, every rank's wait grew
    alike and nobody was named, which is what a slow network looks like.)"""
    box, prometheus = long_run.box, long_run.prometheus
    assert long_run.scraped_since, "the scrape test did not see the ranks"

    def all_measured() -> list[dict[str, Any]]:
        # Each rank's first figure comes with its first heartbeat after a measured step.
        expr = f'trainer_compute_ratio_to_median{{job="trainer", phase="{PHASE}"}}'
        measured = instant_query(prometheus, expr)
        return measured if len(measured) == RANKS else []

    wait_until("every rank's compute against the median", all_measured, timeout=60, every=2)
    for flag in ("trainer_straggler", "trainer_link_slow"):
        ever = instant_query(prometheus, f'max_over_time({flag}{{job="trainer", phase="{PHASE}"}}[1h]) > 0')
        assert ever == [], f"the healthy run had {flag} set: {ever}"

    def only_node2() -> list[dict[str, Any]]:
        named = _stragglers(prometheus)
        return named if len(named) == 4 and {s["metric"]["node"] for s in named} == {"node2"} else []

    started = time.monotonic()
    with starved(box, "node2", RUN_DIR):
        named = wait_until("node2's four ranks named stragglers", only_node2, timeout=120, every=2)
        print(f"node2's ranks named after {time.monotonic() - started:.0f} s")
        rank = int(named[0]["metric"]["rank"])

        def status_says_so() -> dict[str, Any] | None:
            # Status files are rewritten every few steps: the heartbeat's verdict reaches it at the next.
            status = json.loads(on_node(box, "node2", f"cat {RUN_DIR}/status/rank{rank}.json").stdout)
            return status if (status.get("compute_ratio_to_median") or 0) > 1.2 else None

        wait_until(f"rank {rank}'s status file naming it", status_says_so, timeout=30, every=2)
    logged = on_node(box, "node2", f"grep -h 'is a straggler' {RUN_DIR}/logs/rank*.ndjson").stdout
    assert f"rank {rank} on node node2 is a straggler" in logged, logged[-2000:]


def test_a_rate_limited_link_is_named_a_slow_link_not_a_slow_rank(long_run: LongRun) -> None:
    """node2's outgoing link held to 2 Mbit/s: the gradients queue on it and every rank waits longer in
    the all-reduce, while each rank's own compute stays what it was. Within 2 minutes the link between
    node1 and node2 is named slow from both ends (Prometheus, the ranks' logs, `tooling status`) and no
    rank is named a straggler."""
    box, prometheus = long_run.box, long_run.prometheus
    wait_until("no straggler left from the starved node", lambda: not _stragglers(prometheus), 90, every=2)
    measured = instant_query(prometheus, f'trainer_link_rtt_seconds{{job="trainer", phase="{PHASE}"}}')
    assert {(s["metric"]["node"], s["metric"]["peer"]) for s in measured} == {
        ("node1", "node2"),
        ("node2", "node1"),
    }, f"each node's local rank 0 measures its link to the other: {measured}"

    def both_ends() -> list[dict[str, Any]]:
        named = instant_query(prometheus, f'trainer_link_slow{{job="trainer", phase="{PHASE}"}} == 1')
        pairs = {(s["metric"]["node"], s["metric"]["peer"]) for s in named}
        return named if pairs == {("node1", "node2"), ("node2", "node1")} else []

    started = time.monotonic()
    with rate_limited(box, "node2"):
        wait_until("the node1 <-> node2 link named slow from both ends", both_ends, timeout=120, every=2)
        print(f"the link was named after {time.monotonic() - started:.0f} s")
        assert _stragglers(prometheus) == [], "a slow link was taken for a slow rank"

        # `status` reads the ranks' status files, written at their heartbeat: poll, as the scrape was.
        def in_status() -> str:
            shown = box.tooling("status", "--inventory", str(box.inventory), timeout=60)
            return shown.stdout if "slow links: node1 <-> node2" in shown.stdout else ""

        wait_until("tooling status naming the slow link", in_status, timeout=60, every=5)
    logged = on_node(box, "node1", f"grep -h 'is slow' {RUN_DIR}/logs/rank*.ndjson").stdout
    assert "link node1 <-> node2 is slow" in logged, logged[-2000:]


def test_killed_rank_restarts_from_the_last_good_checkpoint(long_run: LongRun) -> None:
    """A SIGKILLed rank: torchrun restarts the whole group on both nodes from the newest checkpoint; then
    with that newest checkpoint damaged on every node, the restart falls back to the one before it."""
    box = long_run.box
    before = len(incarnations(box, RUN_DIR, 1))
    newest, victim = kill_rank_after_next_checkpoint(box, RUN_DIR)
    second = incarnations(box, RUN_DIR, before + 1)[-1]
    # Node1's agent counts the restart only when its own workers failed first (the dead peer breaks their
    # collective) rather than seeing node2 rejoin: 0 or 1, and the summary counts incarnations instead.
    assert second["world_size"] == RANKS and second["restart_count"] in (0, 1), second
    assert second["resumed_from_step"] == newest, (second, newest)
    # The victim's last reported step is at most a status interval behind where it died.
    assert 0 <= victim["step"] - newest <= EVERY, (victim, newest)
    # The cause, as torchrun's agent logged it and as `tooling soak` reads it.
    agent_log = on_node(box, "node2", "journalctl -u ddp-trainer --no-pager -o cat").stdout
    failures = [f for f in map(parse_failure, agent_log.splitlines()) if f is not None]
    assert WorkerFailure(-9, 1, victim["launcher_pid"]) in failures, agent_log[-3000:]

    damaged_step, _ = kill_rank_after_next_checkpoint(box, RUN_DIR, damage=True)
    third = incarnations(box, RUN_DIR, before + 2)[-1]
    assert third["resumed_from_step"] == damaged_step - EVERY, (third, damaged_step)
    skipped = on_node(box, "node1", f"grep -h 'skipping checkpoint' {RUN_DIR}/logs/rank*.ndjson").stdout
    assert f"step-{damaged_step:09d}.pt" in skipped and "sha256 does not match" in skipped, skipped
    summary = json.loads(on_node(box, "node1", f"cat {RUN_DIR}/summary.json").stdout)
    assert summary["restarts"] == before + 1, summary["incarnations"]


def _panel_expr(expr: str) -> str:
    for name, value in PANEL_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr.replace("$1", ""), f"unfilled dashboard variable in {expr}"
    return expr


def test_every_dashboard_query_answers_from_the_live_prometheus(long_run: LongRun) -> None:
    assert long_run.scraped_since, "the scrape test did not see the ranks"
    time.sleep(max(0.0, long_run.scraped_since + HISTORY_S - time.monotonic()))
    empty: list[str] = []
    gpu_only: list[str] = []
    for query in queries():
        expr = _panel_expr(query.expr)
        answer = instant_query(long_run.prometheus, expr)
        if "gpu" in expr:
            # CPU nodes export no GPU series: those panels must stay empty here, not show made-up zeros.
            gpu_only.append(expr)
            assert answer == [], f"{query.dashboard} / {query.panel}: GPU data on CPU nodes: {answer[:2]}"
        elif not answer:
            empty.append(f"{query.dashboard} / {query.panel}: {expr}")
    assert empty == [], "dashboard queries with no data from the live Prometheus:\n" + "\n".join(empty)
    assert len(gpu_only) <= 6, gpu_only  # only the GPU panels are excused


def _doctor(box: Sandbox, *extra: str) -> tuple[int, dict[str, Any], float]:
    """`tooling doctor --phase 2a --json`: its exit code, its document and the seconds it took."""
    started = time.monotonic()
    done = box.tooling(
        "doctor", "--phase", PHASE, "--inventory", str(box.inventory), "--json", *extra, timeout=300
    )
    took = time.monotonic() - started
    assert done.returncode in (0, 1) and done.stdout, explain(done)
    return done.returncode, json.loads(done.stdout), took


def _training_again(box: Sandbox, past_step: int) -> bool:
    shown = box.tooling("status", "--inventory", str(box.inventory), "--json", timeout=60)
    ranks = [r for node in json.loads(shown.stdout or "{}").get("nodes", []) for r in node["ranks"]]
    return len(ranks) == RANKS and all(r["state"] == "running" and r["step"] > past_step for r in ranks)


def test_doctor_names_a_stopped_rank_and_its_node_within_a_minute(long_run: LongRun) -> None:
    """Healthy first: exit 0, no findings. Then node2's local rank 1 SIGSTOPped: `tooling doctor` names that
    rank, on node2, as stopped (its peers as waiting for it) within 60 s and writes its bundle; SIGCONT
    afterwards, and the run trains on (restarted by torchrun if the stop outlasted the collective timeout)."""
    box = long_run.box
    code, report, _ = _doctor(box)
    assert (code, report["healthy"], report["findings"]) == (0, True, []), report
    with stopped_node2_rank(box, RUN_DIR) as victim:
        started = time.monotonic()
        code, report, _ = _doctor(box)
        took = time.monotonic() - started
    print(f"the stopped rank was named after {took:.0f} s")
    assert took < 60, report
    assert code == 1 and not report["healthy"], report
    named = [f for f in report["findings"] if f["rank"] == victim["rank"]]
    assert [(f["kind"], f["host"]) for f in named] == [("hang", "node2")], report
    assert f"process {victim['pid']} is stopped (state T" in named[0]["evidence"], named
    assert Path(report["bundle"]).is_file()
    wait_until("all eight ranks training again", lambda: _training_again(box, victim["step"]), 180, every=5)


def test_doctor_reports_a_rendezvous_name_that_does_not_resolve_by_name(long_run: LongRun) -> None:
    code, report, _ = _doctor(long_run.box, "--rendezvous", "ddp-store.invalid:29400")
    assert code == 1, report
    # The rank the test before stopped (on node2) may still flag itself a straggler: its windows of the
    # stop age out over the following minute. Nothing else may be named.
    stragglers = [f for f in report["findings"] if f["kind"] == "straggler"]
    assert all(f["host"] == "node2" for f in stragglers), report
    named = [f for f in report["findings"] if f["kind"] != "straggler"]
    assert {(f["kind"], f["host"]) for f in named} == {("unreachable", "ddp-store.invalid")}, report
    assert all("does not resolve" in f["evidence"] for f in named), report


def _node2_firing(prometheus: str) -> list[dict[str, Any]]:
    firing = [a for a in rank_down_alerts(prometheus, "firing") if a["labels"]["node"] == "node2"]
    return firing if len(firing) == 4 else []


def test_node_down_is_named_everywhere_and_the_run_falls_back_to_phase1(long_run: LongRun) -> None:
    box, prometheus = long_run.box, long_run.prometheus
    before = newest_checkpoint(box, RUN_DIR)
    assert before is not None
    lose_node2(box)
    lost = time.monotonic()
    # `sandbox status` and verify-node need only node2 gone, not the alert's minute or node1's timeouts: they
    # run while the test waits for those.
    asking = ThreadPoolExecutor(max_workers=2)
    try:
        degraded_later = asking.submit(box.cli, "status")
        verified_later = asking.submit(verify_phase, box)
        # Monitoring: node2's four ranks alert, in Prometheus and in Alertmanager.
        firing = wait_until(
            "TrainerRankDown firing for node2's 4 ranks", lambda: _node2_firing(prometheus), 240
        )
        assert sorted(a["labels"]["local_rank"] for a in firing) == ["0", "1", "2", "3"]
        assert all(a["labels"]["phase"] == PHASE and a["labels"]["severity"] == "critical" for a in firing)

        def in_alertmanager() -> list[dict[str, Any]]:
            alerts = prometheus_api(monitor_url(box, 9093), "/api/v2/alerts")
            wanted = {"alertname": "TrainerRankDown", "node": "node2"}
            return [a for a in alerts if wanted.items() <= a["labels"].items()]

        received = wait_until("TrainerRankDown in Alertmanager", in_alertmanager, timeout=60)
        assert received[0]["status"]["state"] == "active"

        # The job: min_nodes is 2, so node1 gives up once the collective and join timeouts have passed.
        stopped_after = wait_for_unit_end(
            box, "node1", lost, COLLECTIVE_TIMEOUT_S + STRICT_JOIN_TIMEOUT_S + 90
        )
        assert unit_state(box, "node1") == "failed"
        checkpoints_verify(box, RUN_DIR)
        newest = newest_checkpoint(box, RUN_DIR)
        assert newest is not None and newest >= before, "a checkpoint was lost"

        # The sandbox, verify-node and check each name node2 and why.
        degraded = degraded_later.result()
        assert degraded.returncode == 1, explain(degraded)
        assert "node2" in degraded.stdout and "does not answer" in degraded.stdout
        assert "node1 (" not in degraded.stdout  # only the stopped node is named

        code, document = verified_later.result()
        assert code == 1
        node2 = [r for r in document["results"] if r["host"] == "node2"]
        assert [(r["check"], r["status"]) for r in node2] == [("ssh", "FAIL")]
        reason = node2[0]["reason"]
        assert box.subnet.rsplit(".", 1)[0] in reason or "node2" in reason, reason
        checks = {(r["host"], r["check"]): r["status"] for r in document["results"]}
        assert checks[("node1", "torch.version")] == "PASS" and checks[("node1", "cpu.cores")] == "PASS"

        corrupt_file = corrupt_newest_checkpoint(box, "node1", RUN_DIR)
        code, document, shown = _check(box)
        assert code == 1, shown
        failing = [r for r in document["results"] if r["status"] == "FAIL"]
        on_node2 = {r["check"]: r for r in failing if r["host"] == "node2"}
        assert {"ranks", "disk", "checkpoint", "network", "thermal"} <= set(on_node2), failing
        assert all(r["measured"] == "unreachable" and r["detail"] for r in on_node2.values()), on_node2
        link = _rows(document, "network", "node1")
        assert [r["status"] for r in link] == ["FAIL"] and "-> node2" in link[0]["detail"], link
        job = _rows(document, "job")[0]
        assert job["status"] == "FAIL" and "node2" in job["detail"], job
        checkpoint = _rows(document, "checkpoint", "node1")[0]
        assert checkpoint["status"] == "FAIL", checkpoint
        assert corrupt_file in checkpoint["detail"] and "sha256" in checkpoint["detail"], checkpoint
        assert Path(corrupt_file).name in checkpoint["measured"]

        # The same run, continued on phase 1's node from the newest checkpoint that still verifies. Without
        # --skip-provision: the cluster tests' one run of deploy's own provisioning (site.yml for phase 1).
        fallback = box.tooling(
            "--phases", str(long_run.plan), "deploy", "--phase", PHASE, "--fallback", "1", "--inventory",
            str(box.inventory), "--skip-verify",
        )  # fmt: skip
        assert fallback.returncode == 0, explain(fallback)
        assert f"run {RUN_ID} of phase {PHASE}" in fallback.stdout, fallback.stdout
        resumed = incarnations(box, RUN_DIR, 1)
        deadline = time.monotonic() + 300
        while resumed[-1]["world_size"] != 4:
            assert time.monotonic() < deadline, f"the fallback never started on node1: {resumed}"
            time.sleep(3)
            resumed = incarnations(box, RUN_DIR, 1)
        assert resumed[-1]["resumed_from_step"] == newest - EVERY, (resumed[-1], newest)
        stopped = box.tooling("stop", "--inventory", str(box.inventory))
        assert stopped.returncode == 0, explain(stopped)
        summary = wait_for_summary(box, RUN_DIR, status="stopped", stop_on_failed=False)
        assert (summary["world_size"], summary["nodes"]) == (4, 1), summary

        # A phase that needs node2 is refused before anything launches, naming it.
        unreachable = box.tooling(
            "deploy", "--phase", PHASE, "--inventory", str(box.inventory), "--skip-provision"
        )
        assert unreachable.returncode == 1, explain(unreachable)
        output = unreachable.stdout + unreachable.stderr
        assert "node2" in output and "nothing was launched" in output, output[-4000:]
        print(f"node2 lost: job stopped {stopped_after:.0f} s later; fell back from step {newest - EVERY}")
    finally:
        asking.shutdown(wait=True)
        known_hosts = (box.state_dir / "known_hosts").read_text()
        box.podman("stop", "--time", "2", box.container("node2"))
        repaired = box.cli("up", "--nodes", "2")
    # `up` brings the lost node back at the same address with the same host keys.
    assert repaired.returncode == 0, explain(repaired)
    assert box.cli("status").returncode == 0
    assert (box.state_dir / "known_hosts").read_text() == known_hosts
    address = box.podman(
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        box.container("node2"),
    )
    assert address.stdout.strip() == box.subnet.rsplit(".", 1)[0] + ".12"


def test_a_quarantined_node_stays_out_until_it_verifies(long_run: LongRun) -> None:
    """After the fallback to phase 1, phase 2a comes back without node2 (--exclude): the same run goes on
    from its newest checkpoint on node1 alone, node2's trainer is halted, `status` names node2 as
    quarantined with the reason, and node2 leaves quarantine only when verify-node passes on it."""
    box = long_run.box
    newest = newest_checkpoint(box, RUN_DIR)
    assert newest is not None
    before = len(incarnations(box, RUN_DIR, 1))
    excluded = box.tooling(
        "--phases", str(long_run.plan), "deploy", "--phase", PHASE, "--exclude", "node2", "--reason",
        "cluster test", "--inventory", str(box.inventory), "--skip-provision", "--skip-verify",
    )  # fmt: skip
    assert excluded.returncode == 0, explain(excluded)
    assert f"run {RUN_ID} continues as phase {PHASE} on node1" in excluded.stdout, excluded.stdout
    # node2's unit was already down after the node-down test: what shows the halt ran is its line.
    halted = "left out: node2" in excluded.stdout and "could not be halted" not in excluded.stdout
    assert halted, excluded.stdout
    resumed = incarnations(box, RUN_DIR, before + 1)[-1]
    assert (resumed["world_size"], resumed["resumed_from_step"]) == (4, newest), resumed
    assert unit_state(box, "node2") == "inactive"
    shown = box.tooling("status", "--inventory", str(box.inventory))
    assert "quarantined: node2" in shown.stdout and "cluster test" in shown.stdout, explain(shown)

    verified = box.tooling(
        "verify-node", "node2", "--inventory", str(box.inventory), "--profile", "sandbox", "--level", "quick"
    )
    assert verified.returncode == 0, explain(verified)
    assert "node2 leaves quarantine" in verified.stdout, verified.stdout
    shown = box.tooling("status", "--inventory", str(box.inventory))
    assert "quarantined" not in shown.stdout, shown.stdout
