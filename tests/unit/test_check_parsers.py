"""Readers of what the check commands print on a node, and of Prometheus' answers: recorded outputs, plus
the commands themselves run on this machine where they need no cluster (df, the TCP connect probe)."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from tooling.check import commands
from tooling.check.parsers import (
    ParseError,
    parse_alerts,
    parse_checkpoint_verdict,
    parse_connectivity,
    parse_df,
    parse_listening,
    parse_thermal,
    parse_vector,
)

DF = """path /var/lib/ddp/runs
Filesystem         1-blocks        Used   Available Capacity Mounted on
/dev/nvme0n1p2 1967317549056 1574000000000 293317549056      85% /var/lib/ddp
"""

SS = """LISTEN 0      4096   10.213.34.11:29400      0.0.0.0:*
LISTEN 0      128          0.0.0.0:22         0.0.0.0:*
LISTEN 0      128             [::]:22            [::]:*
"""

# /proc/net/tcp, cut after the inode column.
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0B22D50A:72F8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1567
   1: 0B22D50A:0016 0C22D50A:9F9B 01 00000000:00000000 02:000A7D6D 00000000     0        0 2345
"""

THERMAL = (
    "zone\tthermal_zone0\tacpitz\t27800\n"
    "zone\tthermal_zone1\tx86_pkg_temp\t71000\n"
    "zone\tthermal_zone2\tiwlwifi_1\t-274000\n"
    "--nvidia-smi--\n"
    "0, NVIDIA H100 80GB HBM3, 64, 0x0000000000000000\n"
    "1, NVIDIA H100 80GB HBM3, 88, 0x0000000000000040\n"
)

ALERTS = {
    "alerts": [
        {
            "labels": {"alertname": "NodeDown", "severity": "critical", "node": "node2", "job": "node"},
            "annotations": {"summary": "Node node2 is down"},
            "state": "firing",
            "activeAt": "2026-11-25T06:01:02.5Z",
            "value": "0e+00",
        },
        {
            "labels": {"alertname": "TrainerStalled", "severity": "warning", "node": "node1", "rank": "3"},
            "state": "pending",
            "activeAt": "2026-11-25T07:00:00Z",
            "value": "0e+00",
        },
    ]
}

HISTORY = {
    "resultType": "vector",
    "result": [
        {
            "metric": {"alertname": "TrainerRankDown", "node": "node2", "severity": "critical"},
            "value": [1.7e9, "12"],
        },
        {"metric": {"alertname": "Broken"}, "value": [1.7e9, "NaN"]},
    ],
}


def test_df_reads_the_filesystem_line() -> None:
    usage = parse_df(DF)
    assert usage.path == "/var/lib/ddp/runs"
    assert (usage.filesystem, usage.mount) == ("/dev/nvme0n1p2", "/var/lib/ddp")
    assert usage.size_bytes == 1967317549056 and usage.avail_bytes == 293317549056
    assert usage.free_ratio == pytest.approx(0.149, abs=0.001)


@pytest.mark.parametrize(
    ("text", "reason"), [("", "no output"), ("df: /x: No such file\n", "no filesystem line")]
)
def test_df_garbage_is_a_parse_error(text: str, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_df(text)


def test_df_command_walks_up_to_an_existing_directory(tmp_path: Path) -> None:
    # The checkpoint directory does not exist before the first checkpoint: its parent's filesystem counts.
    command = commands.disk_free(str(tmp_path / "run 1" / "checkpoints"))
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True).stdout
    usage = parse_df(out)
    assert usage.path == str(tmp_path)
    assert usage.size_bytes > usage.avail_bytes > 0


def test_listening_ports_from_ss_or_proc() -> None:
    assert parse_listening(SS) == {29400, 22}
    assert parse_listening(PROC_NET_TCP) == {29432}  # 0x72F8; the ESTABLISHED row (01) is no listener
    assert parse_listening("") is None


def test_connectivity_lines_and_listeners() -> None:
    lines = [
        {"host": "node2", "address": "10.0.0.12", "port": 22, "label": "ssh", "ok": True, "ms": 0.41},
        {
            "host": "node1",
            "address": "10.0.0.11",
            "port": 29400,
            "label": "rendezvous",
            "ok": False,
            "error": "Connection refused",
        },
    ]
    text = "\n".join(json.dumps(line) for line in lines) + f"\n{commands.LISTEN_MARK}\n{SS}"
    report = parse_connectivity(text)
    assert [(c.host, c.ok, c.ms, c.error) for c in report.connects] == [
        ("node2", True, 0.41, None),
        ("node1", False, None, "Connection refused"),
    ]
    assert report.listening == {29400, 22}
    with pytest.raises(ParseError, match="unexpected output"):
        parse_connectivity("bash: python3: command not found\n")


def test_connect_probe_command_measures_open_and_closed_ports() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
    try:
        targets = [
            commands.ProbeTarget("up", "127.0.0.1", listener.getsockname()[1], "ssh"),
            commands.ProbeTarget("down", "127.0.0.1", closed.getsockname()[1], "rendezvous"),
        ]
        command = commands.connectivity(
            targets, 2.0, "/nonexistent/python", listen_port=listener.getsockname()[1]
        )
        out = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    finally:
        listener.close()
        closed.close()
    report = parse_connectivity(out)
    by_host = {c.host: c for c in report.connects}
    assert by_host["up"].ok and by_host["up"].ms is not None and by_host["up"].ms < 1000
    assert not by_host["down"].ok and "refused" in (by_host["down"].error or "").lower()
    assert report.listening is not None and targets[0].port in report.listening


def test_thermal_zones_and_gpus() -> None:
    report = parse_thermal(THERMAL)
    assert [(z.kind, z.celsius) for z in report.zones] == [("acpitz", 27.8), ("x86_pkg_temp", 71.0)]
    assert [(g.index, g.celsius, g.throttle_mask) for g in report.gpus] == [(0, 64.0, 0), (1, 88.0, 0x40)]
    assert report.nvidia_smi and report.nvidia_error is None


def test_thermal_without_sensors_or_with_a_broken_nvidia_smi() -> None:
    assert parse_thermal("") == parse_thermal("\n")
    empty = parse_thermal("")
    assert (empty.zones, empty.gpus, empty.nvidia_smi) == ([], [], False)
    broken = parse_thermal(
        "--nvidia-smi--\nNVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"
    )
    assert broken.nvidia_smi and broken.gpus == [] and "couldn't communicate" in (broken.nvidia_error or "")


def test_prometheus_alerts_and_vectors() -> None:
    alerts = parse_alerts(ALERTS)
    assert [(a.name, a.state, a.severity, a.where) for a in alerts] == [
        ("NodeDown", "firing", "critical", "node2"),
        ("TrainerStalled", "pending", "warning", "node1"),
    ]
    assert parse_vector(HISTORY) == [
        ({"alertname": "TrainerRankDown", "node": "node2", "severity": "critical"}, 12.0)
    ]
    with pytest.raises(ParseError, match="no `alerts` list"):
        parse_alerts({"groups": []})
    with pytest.raises(ParseError, match="expected a vector result, got matrix"):
        parse_vector({"resultType": "matrix", "result": []})


def test_checkpoint_verdict_json_and_garbage() -> None:
    line = json.dumps(
        {
            "directory": "/var/lib/ddp/runs/r/checkpoints",
            "verdict": "corrupt",
            "manifest_entries": 3,
            "checked": [
                {
                    "file": "step-000000060.pt",
                    "step": 60,
                    "bytes": 10,
                    "saved_at": 1.0,
                    "ok": False,
                    "problem": "sha256",
                }
            ],
            "problem": "/var/lib/ddp/runs/r/checkpoints/step-000000060.pt: sha256",
            "checked_at": 2.0,
        }
    )
    report = parse_checkpoint_verdict("a warning on stdout\n" + line + "\n")
    assert report.verdict == "corrupt" and report.checked[0].file == "step-000000060.pt"
    with pytest.raises(ParseError, match="no JSON verdict"):
        parse_checkpoint_verdict("Traceback (most recent call last):\n")
    with pytest.raises(ParseError, match="unreadable verdict"):
        parse_checkpoint_verdict('{"verdict": "ok"}')


def test_thermal_command_falls_back_to_the_renamed_nvidia_field(tmp_path: Path) -> None:
    # A driver that knows only clocks_event_reasons: the first query fails, the second answers.
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$*" in *clocks_throttle_reasons*) echo \'Field "clocks_throttle_reasons.active" is not a valid'
        " field to query.'; exit 2;; esac\n"
        "echo '0, NVIDIA H100 80GB HBM3, 45, 0x0000000000000020'\n"
    )
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    out = subprocess.run(
        ["bash", "-c", commands.thermal()], capture_output=True, text=True, env=env, check=True
    )
    report = parse_thermal(out.stdout)
    assert [(g.index, g.celsius, g.throttle_mask) for g in report.gpus] == [(0, 45.0, 0x20)]
    assert report.nvidia_error is None
