"""bench/plan_scale.py's arithmetic and its generated site: the slope and the linearity verdict come from the
times given, and the site is another site's style (no node1..N, IPv6, svc-train on port 2222) whose phases
nest over its own groups."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bench.plan_scale import SSH_PORT, SSH_USER, growth, phase_sizes, write_site
from tooling.plan.phases import load_phases


def test_linear_times_give_their_slope() -> None:
    found = growth([64, 256, 1024], [0.1 + 0.002 * n for n in (64, 256, 1024)])
    assert found.slope_s_per_node == pytest.approx(0.002)
    assert found.linear


def test_times_growing_with_the_square_are_not_linear() -> None:
    found = growth([64, 256, 1024], [1e-5 * n * n for n in (64, 256, 1024)])
    assert not found.linear and found.slope_s_per_node > 0


def test_one_size_is_refused() -> None:
    with pytest.raises(ValueError, match="two sizes"):
        growth([64], [0.1])


def test_the_generated_site_is_another_sites(tmp_path: Path) -> None:
    inventory, phases = write_site(tmp_path, 64)
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())["all"]["children"]
    nodes = hosts["nodes"]["hosts"]
    assert len(nodes) == 64 and not any(name.startswith("node") for name in nodes)
    assert all(v["ansible_host"].startswith("2001:db8:") for v in nodes.values())
    connection = yaml.safe_load((inventory / "group_vars" / "all.yml").read_text())
    assert connection == {"ansible_user": SSH_USER, "ansible_become": True, "ansible_port": SSH_PORT}
    plan = load_phases(phases)
    for name, count in phase_sizes(64).items():
        spec = plan.get(name)
        assert (spec.nodes, spec.nproc_per_node) == (count, 8)
        assert list(hosts[spec.group]["hosts"]) == list(nodes)[:count]
