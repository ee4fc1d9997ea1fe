"""The doctor's collector and bundle: run-directory links are not followed, a pid that is gone is reported
gone, the rendezvous check names an unresolvable name, and a bundle is whole or absent."""

from __future__ import annotations

import json
import os
import socket
import tarfile
from pathlib import Path

import pytest

from tooling.doctor import bundle, node_probe
from tooling.doctor.diagnosis import NodeEvidence


def _status(run: Path, rank: int, pid: int) -> Path:
    path = run / "status" / f"rank{rank}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rank": rank, "pid": pid, "state": "running", "step": 3}))
    return path


def test_a_linked_status_file_or_log_is_not_read(tmp_path: Path) -> None:
    run = tmp_path / "run"
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"rank": 9, "pid": os.getpid(), "token": "s3cret"}))
    _status(run, 0, os.getpid())
    (run / "status" / "rank1.json").symlink_to(secret)
    (run / "logs").mkdir()
    (run / "logs" / "rank1.ndjson").symlink_to(secret)
    document = node_probe.collect(run, None, "-1min", None)
    assert [r["rank"] for r in document["ranks"]] == [0]
    assert "s3cret" not in json.dumps(document)


def test_a_gone_pid_has_no_state_and_a_live_one_has(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _status(run, 0, os.getpid())
    _status(run, 1, 2**22 + 12345)  # above pid_max's default: never a live process
    ranks = {r["rank"]: r["process"] for r in node_probe.collect(run, None, "-1min", None)["ranks"]}
    assert ranks[0]["state"] in {"R", "S"}
    assert ranks[1] == {"state": None}


def test_the_rendezvous_check_names_a_name_that_does_not_resolve() -> None:
    checked = node_probe.endpoint_check("ddp-store.invalid:29400")
    assert checked["host"] == "ddp-store.invalid"
    assert "name 'ddp-store.invalid' does not resolve" in checked["error"]
    assert checked["failed"] == "resolve"
    refused = node_probe.endpoint_check("nohostport")
    assert "not host:port" in refused["error"] and refused["failed"] == "parse"


def test_a_port_nobody_listens_on_is_a_failed_connect() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        checked = node_probe.endpoint_check(f"127.0.0.1:{port}")
    assert checked["failed"] == "connect" and "does not connect" in checked["error"], checked
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        checked = node_probe.endpoint_check(f"127.0.0.1:{listening.getsockname()[1]}")
    assert (checked["error"], checked["failed"]) == (None, None)


def test_a_bundle_holds_findings_stacks_and_evidence(tmp_path: Path) -> None:
    node = NodeEvidence(
        "node2",
        {"ranks": [{"rank": 6, "process": {"stack": "Thread 1 (idle)\n"}}], "files": {"journal.txt": "x"}},
    )
    path = bundle.write(tmp_path, [node, NodeEvidence("node3", error="timed out")], {"healthy": False})
    with tarfile.open(path) as tar:
        names = sorted(Path(n).relative_to(Path(n).parts[0]).as_posix() for n in tar.getnames())
    assert names == [
        "findings.json",
        "node2/evidence.json",
        "node2/journal.txt",
        "node2/py-spy-rank6.txt",
        "node3/evidence.json",
    ]


def test_a_bundle_that_fails_midway_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(bundle, "_add", broken)
    with pytest.raises(OSError, match="disk full"):
        bundle.write(tmp_path, [], {"healthy": True})
    assert list(tmp_path.iterdir()) == []


def test_a_warm_started_ranks_agent_is_its_launchers_parent(tmp_path: Path) -> None:
    """With the warm start the rank's parent is the node's warm pool; torchrun's agent is the parent of the
    process it started, which the status file names as `launcher_pid`. Here this test's process stands in
    for the launcher, a child of it for the rank."""
    import subprocess
    import sys

    run = tmp_path / "run"
    rank = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = _status(run, 0, rank.pid)
        path.write_text(json.dumps({"rank": 0, "pid": rank.pid, "launcher_pid": os.getpid(), "step": 3}))
        agents = node_probe.collect(run, None, "-1min", None)["agents"]
    finally:
        rank.kill()
        rank.wait()
    assert [agent["pid"] for agent in agents] == [os.getppid()]
