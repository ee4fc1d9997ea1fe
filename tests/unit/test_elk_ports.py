"""The ELK and Filebeat ports, read from the roles' defaults, clash with nothing else of the cluster.

The monitoring host runs Prometheus (9090), Alertmanager (9093), Grafana (3000), Elasticsearch
(9200/9300), Logstash (5044 beats, 9600 API) and Kibana (5601); the nodes run node_exporter (9100), one
trainer endpoint per local rank (metrics.base_port + local rank, tooling/phases.yml) and the torchrun
rendezvous. One list, no repeats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ELASTIC_DEFAULTS = {
    "elasticsearch_http_port": 9200,
    "elasticsearch_transport_port": 9300,
    "logstash_beats_port": 5044,
    "logstash_api_port": 9600,
    "kibana_port": 5601,
}
# Ports of the other monitoring pieces; the role default wins where the role exists.
OTHERS = {
    ("prometheus", "prometheus_port"): 9090,
    ("alertmanager", "alertmanager_port"): 9093,
    ("node_exporter", "node_exporter_port"): 9100,
    ("grafana", "grafana_http_port"): 3000,
}


def _defaults(role: str) -> dict[str, Any]:
    path = ROOT / "roles" / role / "defaults" / "main.yml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def _elastic_ports() -> dict[str, int]:
    ports: dict[str, int] = {}
    for name in ELASTIC_DEFAULTS:
        role = name.split("_", 1)[0]
        ports[name] = int(_defaults(role)[name])
    return ports


def test_elastic_ports_are_elastics_defaults() -> None:
    assert _elastic_ports() == ELASTIC_DEFAULTS


def test_filebeat_sends_to_the_logstash_beats_port() -> None:
    assert _defaults("filebeat")["filebeat_logstash_port"] == "{{ logstash_beats_port | default(5044) }}"


def test_no_port_is_used_twice() -> None:
    plan = yaml.safe_load((ROOT / "tooling" / "phases.yml").read_text())
    base = int(plan["metrics"]["base_port"])
    widest = max(int(phase["nproc_per_node"]) for phase in plan["phases"].values())
    owners: dict[int, list[str]] = {}

    def claim(port: int, owner: str) -> None:
        owners.setdefault(port, []).append(owner)

    for name, port in _elastic_ports().items():
        claim(port, name)
    for (role, name), fallback in OTHERS.items():
        claim(int(_defaults(role).get(name, fallback)), name)
    for local_rank in range(widest):
        claim(base + local_rank, f"trainer local rank {local_rank}")
    claim(int(plan["rendezvous"]["port"]), "torchrun rendezvous")
    clashes = {port: names for port, names in owners.items() if len(names) > 1}
    assert not clashes, f"ports used twice: {clashes}"


def test_trainer_port_range_keeps_clear_of_elastic() -> None:
    # A phase with more processes per node widens the trainer's range: it must stay below 9600 (Logstash).
    plan = yaml.safe_load((ROOT / "tooling" / "phases.yml").read_text())
    base = int(plan["metrics"]["base_port"])
    widest = max(int(phase["nproc_per_node"]) for phase in plan["phases"].values())
    trainer = range(base, base + widest)
    for name, port in _elastic_ports().items():
        assert port not in trainer, (
            f"{name} {port} lies in the trainer's range {trainer.start}-{trainer.stop - 1}"
        )
    assert trainer.stop <= ELASTIC_DEFAULTS["logstash_api_port"]
