"""`tooling check` end to end with the nodes and Prometheus faked at their edges (SSH command runner,
Prometheus HTTP): exit codes, rows, the snapshot, and the remote commands each check sends."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from ddp.checkpoint import CheckpointStore
from tests.unit.panel_text import squeezed
from tests.unit.tls_prometheus import PASSWORD, USER, make_pki, serve
from tooling import inventory as inventory_module
from tooling.check import nodes, snapshots
from tooling.check.prom import CheckPrometheus, PrometheusError
from tooling.cli import app
from tooling.job import records
from tooling.remote import RemoteResult, SshTarget

INVENTORY: dict[str, Any] = {
    "_meta": {
        "hostvars": {
            "node1": {"ansible_host": "10.0.0.11"},
            "node2": {"ansible_host": "10.0.0.12"},
            "monitor": {"ansible_host": "10.0.0.10"},
        }
    },
    "all": {"children": ["nodes", "monitoring", "phase2a"]},
    "nodes": {"hosts": ["node1", "node2"]},
    "monitoring": {"hosts": ["monitor"]},
    "phase2a": {"hosts": ["node2"], "children": ["phase1"]},
    "phase1": {"hosts": ["node1"]},
}
RUN_DIR = "/var/lib/ddp/runs/phase2a-test"
DF = (
    "path {path}\nFilesystem 1-blocks Used Available Capacity Mounted on\n"
    "/dev/vda1 107374182400 32212254720 75161927680 30% /\n"
)


class FakeNodes:
    """What the nodes answer, keyed by the command's own marker; records every command sent."""

    def __init__(self) -> None:
        self.down: dict[str, str] = {}
        self.corrupt: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []
        # The manifest's checkpoints (saved_at, bytes): one an hour, small; the disk has room for a day.
        self.checkpoints: list[tuple[float, int]] = [(t, 4096) for t in (-7200.0, -3600.0, 0.0)]
        self.keep_last: int | None = 3

    def listing(self) -> str:
        entries = [
            {"file": f"step-{i:09d}.pt", "step": i, "bytes": size, "saved_at": time.time() + at}
            for i, (at, size) in enumerate(self.checkpoints)
        ]
        return json.dumps(
            {"directory": f"{RUN_DIR}/checkpoints", "keep_last": self.keep_last, "entries": entries}
        )

    def status(self, host: str) -> str:
        first = 0 if host == "node1" else 4
        ranks = [
            {
                "rank": first + i,
                "local_rank": i,
                "node": host,
                "state": "running",
                "step": 200,
                "max_steps": 3000,
                "samples_per_second": 400.0,
                "updated_at": 1000.0,
            }
            for i in range(4)
        ]
        return "1003.5\n--ddp-status--\n" + "".join(json.dumps(r) + "\n--ddp-status--\n" for r in ranks)

    def verdict(self, host: str) -> str:
        problem = self.corrupt.get(host)
        return json.dumps(
            {
                "directory": f"{RUN_DIR}/checkpoints",
                "verdict": "corrupt" if problem else "ok",
                "manifest_entries": 3,
                "checked": [
                    {
                        "file": "step-000000200.pt",
                        "step": 200,
                        "bytes": 4096,
                        "saved_at": 990.0,
                        "ok": problem is None,
                        "problem": problem,
                    }
                ],
                "problem": f"{RUN_DIR}/checkpoints/step-000000200.pt: {problem}" if problem else None,
                "checked_at": 1000.0,
            }
        )

    def connect(self, command: str) -> str:
        payload = re.search(r"'(\[\{.*?\}\])'", command)
        assert payload, command
        lines = []
        for target in json.loads(payload.group(1)):
            if target["host"] in self.down:
                lines.append({**target, "ok": False, "error": "No route to host"})
            else:
                lines.append({**target, "ok": True, "ms": 0.3})
        text = "".join(json.dumps(line) + "\n" for line in lines)
        if "--listening--" in command:
            text += "--listening--\nLISTEN 0 4096 10.0.0.11:29400 0.0.0.0:*\n"
        return text

    def __call__(self, target: SshTarget, command: str, timeout_s: float = 10.0) -> RemoteResult:
        host = target.name
        self.calls.append((host, command))
        if host in self.down:
            return RemoteResult(host, None, error=f"root@{target.address}:22: {self.down[host]}")
        if "--ddp-status--" in command:
            return RemoteResult(host, 0, self.status(host))
        if "df -P -B1" in command:
            return RemoteResult(host, 0, DF.format(path=RUN_DIR))
        if "ddp.checkpoint_verify" in command and "--list" in command:
            return RemoteResult(host, 0, self.listing())
        if "ddp.checkpoint_verify" in command:
            return RemoteResult(host, 1 if host in self.corrupt else 0, self.verdict(host))
        if "create_connection" in command:
            return RemoteResult(host, 0, self.connect(command))
        if "thermal_zone" in command:
            return RemoteResult(host, 0, "")
        raise AssertionError(f"unexpected command on {host}: {command}")


class FakePrometheus:
    def __init__(self) -> None:
        self.error: str | None = None
        self.alerts: list[dict[str, Any]] = []
        self.slopes: dict[str, float] = {}

    def __call__(self, client: CheckPrometheus, path: str, params: dict[str, str] | None = None) -> object:
        if self.error:
            raise PrometheusError(f"{client.url}: cannot be reached ({self.error})")
        if path == "/api/v1/alerts":
            return {"alerts": self.alerts}
        query = (params or {}).get("query", "")
        if query.startswith("count_over_time(ALERTS"):
            return {"resultType": "vector", "result": []}
        if query.startswith("deriv("):
            result = [{"metric": {"node": n}, "value": [0, str(v)]} for n, v in self.slopes.items()]
            return {"resultType": "vector", "result": result}
        raise AssertionError(f"unexpected Prometheus call {path} {params}")


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FakeNodes, FakePrometheus, Path]:
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    runs = tmp_path / "runs"
    record = records.Deployment(
        phase="2a",
        group="phase2a",
        run_id="phase2a-test",
        inventory=str(inventory),
        hosts=["node1", "node2"],
        run_root="/var/lib/ddp/runs",
        world_size=8,
    )
    records.save(record, runs / "deployments")
    fake_nodes, fake_prometheus = FakeNodes(), FakePrometheus()
    # `tooling check` imports load_inventory when it runs: the module's is the one it finds.
    monkeypatch.setattr(inventory_module, "load_inventory", lambda path: INVENTORY)
    monkeypatch.setattr(nodes, "run_command", fake_nodes)
    monkeypatch.setattr(
        CheckPrometheus, "_get", lambda client, path, params=None: fake_prometheus(client, path, params)
    )
    monkeypatch.delenv("TOOLING_CHECK_SETTINGS", raising=False)
    return fake_nodes, fake_prometheus, tmp_path


def invoke(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any] | None, str]:
    result = CliRunner().invoke(
        app,
        ["--home", str(tmp_path / "runs"), "check", "--inventory", str(tmp_path / "inventory"), *args],
        catch_exceptions=False,
    )
    document = json.loads(result.stdout) if "--json" in args and result.stdout.startswith("{") else None
    return result.exit_code, document, result.output


def statuses(document: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for row in document["results"]:
        out.setdefault((row["check"], row["host"]), []).append(row["status"])
    return out


def test_healthy_cluster_passes_and_appends_a_snapshot(
    cluster: tuple[FakeNodes, FakePrometheus, Path],
) -> None:
    fake_nodes, _, tmp_path = cluster
    code, document, output = invoke(tmp_path, "--json")
    assert code == 0, output
    assert document is not None and document["verdict"] in ("PASS", "WARN")
    seen = statuses(document)
    assert seen[("job", "(cluster)")] == ["PASS"]
    for host in ("node1", "node2"):
        for check in ("ranks", "disk", "checkpoint"):
            assert seen[(check, host)] == ["PASS"], (check, host, document)
        assert seen[("network", host)] == ["PASS"] * (1 if host == "node1" else 2)
        assert seen[("thermal", host)] == ["SKIP"]
        assert seen[("disk.trend", host)] == ["SKIP"]  # the first snapshot: nothing to compare with
    assert seen[("alerts", "(prometheus)")] == ["PASS"]
    assert seen[("balance", "(cluster)")] == ["PASS"]
    # node2 probes the rendezvous on node1 because ranks are running; node1 lists its listeners.
    network = [c for h, c in fake_nodes.calls if "create_connection" in c]
    assert any('"port": 29400' in c and '"label": "rendezvous"' in c for c in network)
    snapshot = Path(document["snapshot"])
    record = json.loads(snapshot.read_text().splitlines()[-1])
    assert snapshot.parent == tmp_path / "runs" / "checks"
    assert record["run_id"] == "phase2a-test" and record["disk"]["node1"]["avail_bytes"] == 75161927680
    assert record["verdict"] == document["verdict"]


def test_stopped_node_fails_naming_it_and_is_dialled_once(
    cluster: tuple[FakeNodes, FakePrometheus, Path],
) -> None:
    fake_nodes, _, tmp_path = cluster
    fake_nodes.down["node2"] = "No route to host"
    code, document, output = invoke(tmp_path, "--json")
    assert code == 1, output
    assert document is not None
    fails = [r for r in document["results"] if r["status"] == "FAIL"]
    assert {r["check"] for r in fails if r["host"] == "node2"} >= {"ranks", "disk", "checkpoint", "thermal"}
    assert all("No route to host" in r["detail"] for r in fails)
    link = [r for r in fails if r["check"] == "network" and r["host"] == "node1"]
    assert link and "-> node2 10.0.0.12:22 (ssh)" in link[0]["detail"]
    job = next(r for r in document["results"] if r["check"] == "job")
    assert job["status"] == "FAIL" and "node2" in job["detail"]
    assert sum(1 for host, _ in fake_nodes.calls if host == "node2") == 1


def test_corrupt_checkpoint_fails_naming_the_file(cluster: tuple[FakeNodes, FakePrometheus, Path]) -> None:
    fake_nodes, _, tmp_path = cluster
    fake_nodes.corrupt["node1"] = "sha256 does not match the manifest (corrupt)"
    code, document, _ = invoke(tmp_path, "--json", "--schedule", "afternoon")
    assert code == 1 and document is not None
    row = next(r for r in document["results"] if r["check"] == "checkpoint" and r["host"] == "node1")
    assert row["status"] == "FAIL"
    assert f"{RUN_DIR}/checkpoints/step-000000200.pt: sha256 does not match" in row["detail"]
    commands = [c for h, c in fake_nodes.calls if "checkpoint_verify" in c]
    assert commands and "/opt/ddp/venv/bin/python -m ddp.checkpoint_verify" in commands[0]
    assert f"{RUN_DIR} --newest 1 --json" in commands[0]


def test_schedule_runs_only_its_checks(cluster: tuple[FakeNodes, FakePrometheus, Path]) -> None:
    fake_nodes, _, tmp_path = cluster
    code, document, _ = invoke(tmp_path, "--json", "-s", "morning")
    assert code == 0 and document is not None
    assert document["checks"] == ["job", "ranks", "alerts", "disk"]
    assert {r["check"] for r in document["results"]} == {
        "job",
        "ranks",
        "alerts",
        "alerts.history",
        "disk",
        "disk.trend",
    }
    assert not [c for _, c in fake_nodes.calls if "checkpoint_verify" in c or "thermal_zone" in c]


def test_evening_predicts_tomorrows_checkpoints(cluster: tuple[FakeNodes, FakePrometheus, Path]) -> None:
    fake_nodes, _, tmp_path = cluster
    code, document, output = invoke(tmp_path, "--json", "-s", "evening")
    assert code == 0 and document is not None, output
    assert "checkpoint_forecast" in document["checks"]
    rows = [r for r in document["results"] if r["check"] == "checkpoint.tomorrow"]
    assert [r["host"] for r in rows] == ["node1", "node2"]
    assert all(r["status"] == "PASS" for r in rows)
    data = rows[0]["data"]
    assert data["interval_s"] == pytest.approx(3600.0, rel=1e-3) and data["new_checkpoints"] in (23, 24)
    assert data["kept_tomorrow"] == 3 and data["growth_bytes"] == 0  # keep_last: nothing piles up
    listed = [c for _, c in fake_nodes.calls if "--list" in c]
    assert listed and f"-m ddp.checkpoint_verify {RUN_DIR} --list" in listed[0]


def test_evening_warns_when_tomorrows_checkpoints_would_fill_the_disk(
    cluster: tuple[FakeNodes, FakePrometheus, Path],
) -> None:
    fake_nodes, _, tmp_path = cluster
    # 10 GB an hour, none pruned, on a disk with 75 GB free: full long before tomorrow.
    fake_nodes.checkpoints = [(t, 10_000_000_000) for t in (-7200.0, -3600.0, 0.0)]
    fake_nodes.keep_last = None
    code, document, output = invoke(tmp_path, "--json", "-s", "evening")
    assert document is not None, output
    row = next(r for r in document["results"] if r["check"] == "checkpoint.tomorrow")
    assert row["status"] == "WARN" and "the disk would fill" in row["detail"]
    assert row["data"]["avail_tomorrow"] < 0
    assert code == 0  # a WARN, not a failed check


def test_unreachable_prometheus_warns_never_passes(cluster: tuple[FakeNodes, FakePrometheus, Path]) -> None:
    _, fake_prometheus, tmp_path = cluster
    fake_prometheus.error = "Connection refused"
    code, document, _ = invoke(tmp_path, "--json", "-s", "morning")
    assert code == 0 and document is not None
    alerts = [r for r in document["results"] if r["check"].startswith("alerts")]
    assert [(r["status"], r["measured"]) for r in alerts] == [("WARN", "not checked")]
    assert "http://10.0.0.10:9090: cannot be reached (Connection refused)" in alerts[0]["detail"]


def test_prometheus_behind_basic_auth_and_tls(
    cluster: tuple[FakeNodes, FakePrometheus, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real HTTP client this time: the options reach it, and a refused password stops the run (exit 2,
    no snapshot) rather than turning into a WARN nobody reads."""
    _, _, tmp_path = cluster
    monkeypatch.delattr(CheckPrometheus, "_get")  # the fixture's fake; the inherited client answers now
    pki = make_pki(tmp_path / "pki")
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.write_text(PASSWORD)
    wrong.write_text("guess")
    with serve(pki) as url:
        args = [
            "-s",
            "morning",
            "--prometheus",
            url,
            "--prometheus-user",
            USER,
            "--prometheus-ca",
            str(pki.ca),
        ]
        code, document, output = invoke(tmp_path, "--json", *args, "--prometheus-password-file", str(right))
        refused = invoke(tmp_path, *args, "--prometheus-password-file", str(wrong))
    assert code == 0 and document is not None, output
    assert statuses(document)[("alerts", "(prometheus)")] == ["PASS"]
    assert refused[0] == 2
    assert squeezed(f"user '{USER}' and the password in {wrong} were refused") in squeezed(refused[2])
    snapshots_written = (tmp_path / "runs" / "checks").glob("*.jsonl")
    assert [len(f.read_text().splitlines()) for f in snapshots_written] == [1]
    assert PASSWORD not in output + refused[2]


def test_inventory_prometheus_with_tls_is_https(
    cluster: tuple[FakeNodes, FakePrometheus, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """roles/prometheus serves https once it has a certificate; the URL taken from the inventory follows."""
    _, _, tmp_path = cluster
    monitor = INVENTORY["_meta"]["hostvars"]["monitor"]
    monkeypatch.setitem(monitor, "prometheus_tls_cert_file", "/etc/pki/prometheus.pem")
    code, document, _ = invoke(tmp_path, "--json", "-s", "morning")
    assert code == 0 and document is not None and document["prometheus"] == "https://10.0.0.10:9090"


def test_inventory_prometheus_on_ipv6_is_bracketed() -> None:
    from tooling.check.cluster import prometheus_url

    inventory = {
        "monitoring": {"hosts": ["mon-a01"]},
        "_meta": {"hostvars": {"mon-a01": {"ansible_host": "2001:db8:20::fffe", "prometheus_port": 9090}}},
    }
    assert prometheus_url(inventory)[0] == "http://[2001:db8:20::fffe]:9090"


def test_firing_critical_alert_fails(cluster: tuple[FakeNodes, FakePrometheus, Path]) -> None:
    _, fake_prometheus, tmp_path = cluster
    fake_prometheus.alerts = [
        {"labels": {"alertname": "NodeDown", "severity": "critical", "node": "node2"}, "state": "firing"}
    ]
    code, document, _ = invoke(tmp_path, "--json", "-s", "morning", "--prometheus", "http://prom:9090/")
    assert code == 1 and document is not None
    assert document["prometheus"] == "http://prom:9090"
    row = next(r for r in document["results"] if r["check"] == "alerts")
    assert row["status"] == "FAIL" and "NodeDown (node2)" in row["detail"]


def test_disk_trend_from_prometheus_and_from_yesterdays_snapshot(
    cluster: tuple[FakeNodes, FakePrometheus, Path],
) -> None:
    _, fake_prometheus, tmp_path = cluster
    fake_prometheus.slopes = {"node1": -75161927680 / (12 * 3600)}  # full in 12 h
    code, document, _ = invoke(tmp_path, "--json", "-s", "morning")
    assert code == 1 and document is not None
    trend = {r["host"]: r for r in document["results"] if r["check"] == "disk.trend"}
    assert trend["node1"]["status"] == "FAIL" and trend["node1"]["measured"] == "full in 12.0 h"
    assert "Prometheus deriv over 6h" in trend["node1"]["detail"]
    assert trend["node2"]["status"] == "SKIP"
    # Yesterday's snapshot had 14 GiB more free on node2 (70 GiB now): about 5 days left -> WARN.
    record = json.loads(Path(document["snapshot"]).read_text().splitlines()[-1])
    record["ts"] -= 86400
    record["disk"]["node2"]["avail_bytes"] += 14 * (1 << 30)
    assert snapshots.append(tmp_path / "runs" / "checks", record) != Path(document["snapshot"])
    fake_prometheus.slopes = {}
    code, document, _ = invoke(tmp_path, "--json", "-s", "morning")
    assert document is not None
    row = next(r for r in document["results"] if r["check"] == "disk.trend" and r["host"] == "node2")
    assert row["status"] == "WARN" and row["measured"] == "full in 5.0 d", row
    assert "1 earlier daily snapshot(s)" in row["detail"]


def test_table_output(
    cluster: tuple[FakeNodes, FakePrometheus, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, tmp_path = cluster
    monkeypatch.setenv("COLUMNS", "220")
    code, _, output = invoke(tmp_path, "-s", "morning")
    assert code == 0, output
    assert "morning checks, phase 2a (node1, node2), run phase2a-test" in output
    for column in ("check", "host", "status", "measured", "expected", "detail"):
        assert column in output
    assert "snapshot appended to" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--schedule", "noon"], "unknown schedule 'noon'"),
        (["--phase", "3"], "unknown phase '3'"),
        (["--phase", "2b"], "no group 'phase2b'"),
        (["--settings", "/nonexistent/site.yml"], "file not found"),
    ],
)
def test_usage_errors_exit_2(
    cluster: tuple[FakeNodes, FakePrometheus, Path], args: list[str], message: str
) -> None:
    _, _, tmp_path = cluster
    code, _, output = invoke(tmp_path, *args)
    assert code == 2, output
    assert message in output


def test_no_run_and_no_phase_is_a_usage_error(cluster: tuple[FakeNodes, FakePrometheus, Path]) -> None:
    _, _, tmp_path = cluster
    for record in (tmp_path / "runs" / "deployments").iterdir():
        record.unlink()
    code, _, output = invoke(tmp_path)
    assert code == 2 and "pass --phase" in output
    code, document, _ = invoke(tmp_path, "--phase", "2a", "--json")
    assert code == 0 and document is not None
    seen = statuses(document)
    assert seen[("job", "(cluster)")] == ["WARN"]
    assert seen[("checkpoint", "(cluster)")] == ["SKIP"] and seen[("disk", "node1")] == ["PASS"]


def _local_shell(target: SshTarget, command: str, timeout_s: float = 10.0) -> RemoteResult:
    proc = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    return RemoteResult(target.name, proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.slow
def test_real_commands_on_this_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every node command for real, on this machine instead of over SSH: status files, df, the checkpoint
    check in a fresh interpreter (torch import), the thermal read."""
    run_root = tmp_path / "var-runs"
    run_dir = run_root / "local-run"
    (run_dir / "status").mkdir(parents=True)
    now = time.time()
    for i in range(4):
        status = {
            "rank": i,
            "local_rank": i,
            "node": "node1",
            "state": "running",
            "step": 40,
            "max_steps": 99,
        }
        status.update(samples_per_second=100.0 + i, updated_at=now)
        (run_dir / "status" / f"rank{i}.json").write_text(json.dumps(status))
    store = CheckpointStore(run_dir / "checkpoints", keep_last=2)
    # What rank 0's summary records of the config: the retention the outlook counts on.
    config = {"checkpoint": {"dir": "checkpoints", "keep_last": 2}}
    (run_dir / "summary.json").write_text(json.dumps({"config": config}))
    for step in (20, 40):
        store.save({"w": torch.ones(3)}, step)
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    venv = str(Path(sys.executable).parent.parent)
    local = {
        "_meta": {"hostvars": {"node1": {"ansible_host": "127.0.0.1", "pytorch_venv_path": venv}}},
        "phase1": {"hosts": ["node1"]},
    }
    records.save(
        records.Deployment("1", "phase1", "local-run", str(inventory), ["node1"], str(run_root), 4),
        tmp_path / "runs" / "deployments",
    )
    monkeypatch.setattr(inventory_module, "load_inventory", lambda path: local)
    monkeypatch.setattr(nodes, "run_command", _local_shell)
    settings = tmp_path / "site.yml"
    settings.write_text(
        "schedules:\n  local: [job, ranks, balance, disk, checkpoint, checkpoint_forecast, thermal]\n"
        "thresholds:\n  disk_free_warn_ratio: 0.02\n  disk_free_fail_ratio: 0.01\n"
    )
    code, document, output = invoke(tmp_path, "--json", "-s", "local", "--settings", str(settings))
    assert document is not None, output
    seen = {r["check"]: r for r in document["results"]}
    assert seen["job"]["status"] == "PASS" and seen["ranks"]["measured"] == "4/4 ranks"
    assert seen["balance"]["status"] == "PASS" and seen["balance"]["measured"] == "1.03"
    assert seen["disk"]["status"] == "PASS" and str(run_dir) in seen["disk"]["detail"]
    assert seen["checkpoint"]["status"] == "PASS", seen["checkpoint"]
    assert seen["checkpoint"]["measured"] == "step-000000040.pt"
    # Two checkpoints saved moments apart: an interval of under a second, many a day, two kept.
    tomorrow = seen["checkpoint.tomorrow"]
    assert tomorrow["data"]["kept_now"] == 2 and tomorrow["data"]["kept_tomorrow"] == 2, tomorrow
    assert tomorrow["data"]["new_checkpoints"] > 1000
    assert seen["thermal"]["status"] in ("PASS", "SKIP", "WARN")
    assert code == 0, output
    data = bytearray((run_dir / "checkpoints" / "step-000000040.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (run_dir / "checkpoints" / "step-000000040.pt").write_bytes(bytes(data))
    code, document, output = invoke(tmp_path, "--json", "-s", "local", "--settings", str(settings))
    assert code == 1 and document is not None, output
    row = next(r for r in document["results"] if r["check"] == "checkpoint")
    assert row["status"] == "FAIL" and "step-000000040.pt: sha256 does not match" in row["detail"]


def test_the_last_line_says_what_to_run_next(cluster: tuple[FakeNodes, FakePrometheus, Path]) -> None:
    """Passing with the run going: watch it; failing: the doctor names the rank or node and why."""
    fake_nodes, _, tmp_path = cluster
    inventory = (tmp_path / "inventory").resolve()
    code, _, output = invoke(tmp_path)
    assert code == 0 and output.rstrip("\n").splitlines()[-1] == (
        f"next: tooling status --watch --inventory {inventory}"
    )
    fake_nodes.down["node2"] = "No route to host"
    code, _, output = invoke(tmp_path)
    assert code == 1 and output.rstrip("\n").splitlines()[-1] == (
        f"next: tooling doctor --phase 2a --inventory {inventory}"
    )
