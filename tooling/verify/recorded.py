"""The all-reduce bus bandwidth that `tooling verify-node` measured, read back from its kept artifacts.

verify-node runs playbooks/verify.yml through ansible-runner with one private data dir per run under
<home>/verify (tooling/runner.py keeps them, newest last by name). The play publishes the Gloo probe's output
(tooling/probes/collective_bw.py) as the custom stat `verify_net`, which ansible-runner stores in the final
`playbook_on_stats` event of the run's job_events/. Nothing is re-measured here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tooling.verify import parsers as p
from tooling.verify.judge import ClusterFacts

STATS_EVENT = "playbook_on_stats"


@dataclass(frozen=True)
class RecordedBusbw:
    probe: p.GlooResult
    nodes: list[str]
    source: Path  # the ansible-runner data dir it came from

    def as_dict(self) -> dict[str, Any]:
        return {
            "busbw_gbs": self.probe.busbw_gbs,
            "size_bytes": self.probe.size_bytes,
            "world_size": self.probe.world_size,
            "nodes": self.nodes,
            "source": str(self.source),
        }


def _final_stats(data_dir: Path) -> dict[str, Any] | None:
    """The custom stats of the run's `playbook_on_stats` event (the last one; files are <counter>-<uuid>)."""
    events = list(data_dir.glob("artifacts/*/job_events/*.json"))

    def counter(path: Path) -> int:
        head = path.name.partition("-")[0]
        return int(head) if head.isdigit() else -1

    for path in sorted(events, key=counter, reverse=True):
        try:
            event = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(event, dict) and event.get("event") == STATS_EVENT:
            data = (event.get("event_data") or {}).get("artifact_data")
            return data if isinstance(data, dict) else None
    return None


def busbw_of(data_dir: Path) -> RecordedBusbw | None:
    """The Gloo probe's answer in one verify-node run, if it ran across two or more nodes and answered."""
    stats = _final_stats(data_dir)
    raw = (stats or {}).get("verify_net")
    if not isinstance(raw, dict):
        return None
    facts = ClusterFacts.from_raw(raw)
    for _, out in sorted(facts.gloo.items()):
        if out.skipped or out.rc not in (0, None) or not out.stdout.strip():
            continue
        try:
            probe = p.parse_gloo_probe(out.stdout)
        except p.ParseError:
            continue
        if probe.busbw_gbs > 0 and (probe.nnodes or len(facts.nodes)) > 1:
            return RecordedBusbw(probe, facts.nodes, data_dir)
    return None


def latest_busbw(verify_dir: Path) -> RecordedBusbw | None:
    """The newest verify-node run under `verify_dir` with a Gloo probe across nodes (None: no such run)."""
    if not verify_dir.is_dir():
        return None
    for data_dir in sorted(
        (d for d in verify_dir.iterdir() if d.is_dir()), key=lambda d: d.name, reverse=True
    ):
        found = busbw_of(data_dir)
        if found is not None:
            return found
    return None
