"""Running tooling/doctor/node_probe.py: on this machine for a local run, on every node of a deployment at
once over the SSH path `tooling status` uses (an unreachable node comes back with the reason)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from tooling.check.cluster import node_python
from tooling.doctor import node_probe
from tooling.doctor.diagnosis import NodeEvidence
from tooling.inventory import load_inventory, refuse_placeholder_hosts, ssh_targets
from tooling.job.local import LOCAL_HOST
from tooling.job.records import Deployment
from tooling.remote import run_each
from tooling.soak.jobs import DEFAULT_SERVICE

# py-spy's timeout for every rank and agent on a node, plus the journal.
NODE_TIMEOUT_S = 120.0
PROBE_SOURCE = Path(node_probe.__file__)


def _arguments(run_dir: str, unit: str | None, since: str, rendezvous: str | None) -> list[str]:
    args = [run_dir, f"--since={since}"]  # one word: argparse would read "-15min" as an option
    if unit:
        args += ["--unit", unit]
    if rendezvous:
        args += ["--rendezvous", rendezvous]
    return args


def _parsed(host: str, stdout: str) -> NodeEvidence:
    try:
        document = json.loads(stdout)
    except ValueError:
        return NodeEvidence(host, error=f"the collector's output is not JSON: {stdout.strip()[:200]!r}")
    return NodeEvidence(host, document if isinstance(document, dict) else {})


def local(run_dir: Path, since: str, rendezvous: str | None) -> NodeEvidence:
    done = subprocess.run(
        [sys.executable, str(PROBE_SOURCE), *_arguments(str(run_dir), None, since, rendezvous)],
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        return NodeEvidence(
            LOCAL_HOST, error=f"collector exited {done.returncode}: {done.stderr.strip()[-300:]}"
        )
    return _parsed(LOCAL_HOST, done.stdout)


def cluster(record: Deployment, inventory: Path, since: str) -> list[NodeEvidence]:
    """Every node of the deployment, in parallel; the rendezvous endpoint checked from each."""
    data = load_inventory(inventory)
    refuse_placeholder_hosts(data, record.hosts, inventory)
    hostvars: dict[str, Any] = (data.get("_meta") or {}).get("hostvars") or {}
    source = PROBE_SOURCE.read_text(encoding="utf-8")
    commands = []
    for target in ssh_targets(data, record.hosts):
        own = hostvars.get(target.name) or {}
        unit = str(own.get("ddp_trainer_service_name") or DEFAULT_SERVICE)
        args = _arguments(record.run_dir, unit, since, record.rendezvous_endpoint or None)
        python = shlex.quote(node_python(own))
        command = f"{python} -c {shlex.quote(source)} {shlex.join(args)}"
        commands.append((target, command))
    results = run_each(commands, NODE_TIMEOUT_S)
    nodes = []
    for target, _ in commands:
        result = results[target.name]
        if result.error is not None or result.rc not in (0, None):
            reason = result.error or f"collector exited {result.rc}: {result.stderr.strip()[-200:]}"
            nodes.append(NodeEvidence(target.name, error=reason))
        else:
            nodes.append(_parsed(target.name, result.stdout))
    return nodes
