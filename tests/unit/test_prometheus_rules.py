"""Prometheus rules and monitoring configuration, checked with the real tools (promtool, amtool).

- the alert and recording rules pass `promtool check rules` and their `promtool test rules` unit tests;
- every alert has a test where it fires and one where it stays quiet, every recording rule an expression test;
- the prometheus/alertmanager templates, rendered by Ansible from the roles' defaults, pass
  `promtool check config`, `promtool check web-config` and `amtool check-config`; the `node` job and the
  alerts switch to https, the CA and basic auth (password_file) when node_exporter and Alertmanager serve
  them;
- the file_sd target lists written by the prometheus role's `targets` entry point name exactly a phase's
  nodes and ranks (tooling/phases.yml), also when the limit leaves the monitoring host out.

promtool and amtool come from the Debian packages `prometheus` and `prometheus-alertmanager`
(scripts/bootstrap.sh installs them).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.local_playbook import render_templates_task, role_import_vars, run_local_playbook
from tooling.plan.launch import derive_launch
from tooling.plan.phases import load_phases

ROOT = Path(__file__).resolve().parents[2]
PROM_ROLE = ROOT / "roles" / "prometheus"
AM_ROLE = ROOT / "roles" / "alertmanager"
WEB_ROLE = ROOT / "roles" / "web_config"
RULES_DIR = PROM_ROLE / "files" / "rules"
RULE_TESTS_DIR = PROM_ROLE / "files" / "rules-tests"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
RULE_TEST_FILES = sorted(RULE_TESTS_DIR.glob("*.test.yml"))
PHASES = yaml.safe_load((ROOT / "tooling" / "phases.yml").read_text())
RECORD_NAME = re.compile(r"^(job|instance|node):[a-z][a-z0-9_]*:[a-z0-9_]+$")
TEST_PASSWORD_HASH = "$2b$10$O.26R7CApDyeVTmvOk2x/uyqeRBBujEyxWzqc8zHuyDrQiN7N7Aim"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found on PATH: install the Debian packages prometheus and prometheus-alertmanager "
            "(scripts/bootstrap.sh does)"
        )
    return path


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, **kwargs)
    assert result.returncode == 0, (
        f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    return result


def _rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def _rule_tests() -> list[dict[str, Any]]:
    return [test for path in RULE_TEST_FILES for test in yaml.safe_load(path.read_text())["tests"]]


# --- rules ---------------------------------------------------------------------------------------------


def test_rule_files_exist() -> None:
    assert RULE_FILES, f"no rule files in {RULES_DIR}"
    assert RULE_TEST_FILES, f"no promtool test files in {RULE_TESTS_DIR}"


def test_rules_pass_promtool_check() -> None:
    _run([_tool("promtool"), "check", "rules", *map(str, RULE_FILES)])


@pytest.mark.parametrize("test_file", RULE_TEST_FILES, ids=lambda p: p.name)
def test_rule_unit_tests_pass(test_file: Path) -> None:
    # Rule paths in the test files are relative to the test file.
    _run([_tool("promtool"), "test", "rules", test_file.name], cwd=test_file.parent)


def test_every_alert_is_tested_firing_and_quiet() -> None:
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in _rule_tests():
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert not alerts - firing, f"alerts never tested firing: {sorted(alerts - firing)}"
    assert not alerts - quiet, f"alerts never tested quiet: {sorted(alerts - quiet)}"
    assert not (firing | quiet) - alerts, f"tests name unknown alerts: {sorted((firing | quiet) - alerts)}"


def test_every_recording_rule_is_tested() -> None:
    records = {rule["record"] for rule in _rules() if "record" in rule}
    exprs = " ".join(case["expr"] for test in _rule_tests() for case in test.get("promql_expr_test", []))
    untested = {name for name in records if name not in exprs}
    assert not untested, f"recording rules without a promql_expr_test: {sorted(untested)}"


def test_required_alerts_exist() -> None:
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    required = {
        "TrainerRankDown",
        "NodeDown",
        "TrainerThroughputDrop",
        "TrainerNonFiniteLoss",
        "TrainerGradSyncMismatch",
        "TrainerCheckpointStale",
        "CheckpointDiskFillingUp",
        "TrainerMemoryPressure",
        "NodeCPUThrottling",
        "NodeHighTemperature",
        "TrainerCheckpointWriteFailures",
    }
    assert not required - alerts, f"missing alerts: {sorted(required - alerts)}"


def test_rule_style() -> None:
    for rule in _rules():
        if "record" in rule:
            assert RECORD_NAME.match(rule["record"]), (
                f"recording rule {rule['record']!r}: expected level:metric:ops"
            )
        else:
            name = rule["alert"]
            assert rule.get("labels", {}).get("severity") in {"critical", "warning"}, (
                f"{name}: severity label"
            )
            assert {"summary", "description"} <= set(rule.get("annotations", {})), (
                f"{name}: summary and description"
            )


def test_memory_pressure_thresholds_follow_the_plan() -> None:
    exprs = {
        rule["labels"]["severity"]: rule["expr"]
        for rule in _rules()
        if rule.get("alert") == "TrainerMemoryPressure"
    }
    assert exprs["critical"].rstrip().endswith("> 0.90")
    assert exprs["warning"].rstrip().endswith("> 0.85")


# --- configuration rendered from the roles' templates -------------------------------------------------


def _ansible_playbook(tmp_path: Path, playbook: list[dict[str, Any]], *args: str) -> None:
    result = run_local_playbook(tmp_path, playbook, *args)
    assert result.returncode == 0, (
        f"ansible-playbook failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )


TEMPLATES = {
    "prometheus.yml": PROM_ROLE / "templates" / "prometheus.yml.j2",
    "web.yml": WEB_ROLE / "templates" / "web.yml.j2",
    "flags": PROM_ROLE / "templates" / "prometheus.default.j2",
    "alertmanager.yml": AM_ROLE / "templates" / "alertmanager.yml.j2",
}
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "auth_tls": {
        "prometheus_basic_auth_users": {"admin": TEST_PASSWORD_HASH},
        "prometheus_self_scrape_user": "admin",
        "prometheus_self_scrape_password": "test-only",
        "prometheus_tls_cert_file": "/control/cert.pem",
        "prometheus_tls_key_file": "/control/key.pem",
    },
    "auth_only": {
        "prometheus_basic_auth_users": {"admin": TEST_PASSWORD_HASH},
        "prometheus_web_allow_plaintext_auth": True,
    },
    # node_exporter on the nodes of group secure_nodes and Alertmanager serve TLS and basic auth.
    "secure_targets": {
        "prometheus_targets_nodes_group": "secure_nodes",
        "prometheus_node_exporter_ca_file": "/control/nodes-ca.pem",
        "prometheus_node_exporter_user": "prometheus",
        "prometheus_node_exporter_password": "test-only",
        "alertmanager_tls_cert_file": "/control/am.pem",
        "alertmanager_tls_key_file": "/control/am-key.pem",
        "alertmanager_basic_auth_users": {"prometheus": TEST_PASSWORD_HASH},
        "prometheus_alertmanager_ca_file": "/control/am-ca.pem",
        "prometheus_alertmanager_user": "prometheus",
        "prometheus_alertmanager_password": "test-only",
    },
    "receivers": {
        "alertmanager_webhook_urls": ["https://chat.example.org/hooks/T0KEN"],
        "alertmanager_email_to": ["ml-oncall@example.org"],
        "alertmanager_smtp_smarthost": "smtp.example.org:587",
        "alertmanager_smtp_from": "alertmanager@example.org",
        "alertmanager_smtp_auth_username": "alertmanager",
        "alertmanager_smtp_auth_password": "test-only",
    },
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every variant of the templates, rendered by Ansible from the roles' defaults and vars in one run.

    Each variant's config dir holds the role's rules (so `promtool check config` checks them through
    rule_files), a self-signed TLS pair and a self-scrape password file, as the role would install them.
    """
    tmp_path = tmp_path_factory.mktemp("render")
    outputs: dict[str, Path] = {}
    tasks = []
    for name, overrides in VARIANTS.items():
        out = tmp_path / name
        config_dir = out / "etc"
        shutil.copytree(RULES_DIR, config_dir / "rules")
        (config_dir / "file_sd").mkdir()
        (config_dir / "tls").mkdir()
        (config_dir / "self-scrape.password").write_text("test-only")
        outputs[name] = out
        task_vars = {
            # web.yml as the role's import of web_config feeds it.
            **role_import_vars("prometheus", "configure.yml", "web_config", "configure"),
            "ansible_host": "192.0.2.20",
            "prometheus_config_dir": str(config_dir),
            "prometheus_file_sd_dir": str(config_dir / "file_sd"),
            **overrides,
        }
        tasks.append(render_templates_task(name, out, task_vars))
    play = {
        "name": "Render the monitoring templates",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars_files": [
            str(PROM_ROLE / "defaults" / "main.yml"),
            str(PROM_ROLE / "vars" / "main.yml"),
            str(AM_ROLE / "defaults" / "main.yml"),
            str(AM_ROLE / "vars" / "main.yml"),
            str(WEB_ROLE / "defaults" / "main.yml"),
            str(WEB_ROLE / "vars" / "main.yml"),
        ],
        "vars": {"templates": {k: str(v) for k, v in TEMPLATES.items()}},
        "tasks": tasks,
    }
    # Two nodes whose node_exporter serves TLS and basic auth, in a group of their own: only the variant
    # pointing prometheus_targets_nodes_group at it sees them.
    secure = {
        "node_exporter_tls_cert_file": "/control/node.pem",
        "node_exporter_tls_key_file": "/control/node-key.pem",
        "node_exporter_basic_auth_users": {"prometheus": TEST_PASSWORD_HASH},
    }
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {"localhost": {"ansible_connection": "local"}},
                    "children": {"secure_nodes": {"hosts": {"node1": secure, "node2": secure}}},
                }
            }
        )
    )
    _ansible_playbook(tmp_path, [play], "-i", str(inventory))
    tls = outputs["auth_tls"] / "etc" / "tls"
    _run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=monitor",
            "-keyout",
            str(tls / "server.key"),
            "-out",
            str(tls / "server.crt"),
        ]
    )
    return outputs


def test_default_prometheus_config_passes_promtool(rendered: dict[str, Path]) -> None:
    out = rendered["default"]
    result = _run([_tool("promtool"), "check", "config", str(out / "prometheus.yml")])
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout + result.stderr
    config = yaml.safe_load((out / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "node", "trainer"}
    # node_exporter and Alertmanager serve plain HTTP by default: no CA, no credentials.
    assert jobs["node"]["scheme"] == "http"
    assert "tls_config" not in jobs["node"] and "basic_auth" not in jobs["node"]
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    assert alertmanagers["scheme"] == "http"
    assert "tls_config" not in alertmanagers and "basic_auth" not in alertmanagers
    assert jobs["trainer"]["honor_labels"] is True
    assert jobs["trainer"]["file_sd_configs"][0]["files"] == [f"{out}/etc/file_sd/trainer.yml"]
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["192.0.2.20:9090"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["192.0.2.20:9093"]
    _run([_tool("promtool"), "check", "web-config", str(out / "web.yml")])


def test_prometheus_flags_bind_the_host_address(rendered: dict[str, Path]) -> None:
    flags = (rendered["default"] / "flags").read_text()
    assert "--web.listen-address=192.0.2.20:9090" in flags
    assert "--storage.tsdb.retention.time=30d" in flags
    assert "--web.external-url=http://192.0.2.20:9090/" in flags
    assert "0.0.0.0" not in flags


def test_prometheus_config_with_auth_and_tls_passes_promtool(rendered: dict[str, Path]) -> None:
    out = rendered["auth_tls"]
    web = yaml.safe_load((out / "web.yml").read_text())
    assert web["basic_auth_users"] == {"admin": TEST_PASSWORD_HASH}
    assert web["tls_server_config"]["cert_file"] == f"{out}/etc/tls/server.crt"
    _run([_tool("promtool"), "check", "web-config", str(out / "web.yml")])
    _run([_tool("promtool"), "check", "config", str(out / "prometheus.yml")])
    config = yaml.safe_load((out / "prometheus.yml").read_text())
    self_job = next(job for job in config["scrape_configs"] if job["job_name"] == "prometheus")
    assert self_job["scheme"] == "https"
    assert self_job["basic_auth"] == {"username": "admin", "password_file": f"{out}/etc/self-scrape.password"}
    assert "--web.external-url=https://192.0.2.20:9090/" in (out / "flags").read_text()


def test_basic_auth_without_self_password_drops_the_self_job(rendered: dict[str, Path]) -> None:
    out = rendered["auth_only"]
    config = yaml.safe_load((out / "prometheus.yml").read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} == {"node", "trainer"}
    _run([_tool("promtool"), "check", "config", str(out / "prometheus.yml")])
    _run([_tool("promtool"), "check", "web-config", str(out / "web.yml")])


def test_scrape_and_alerts_follow_tls_and_basic_auth_of_the_targets(rendered: dict[str, Path]) -> None:
    out = rendered["secure_targets"]
    config_file = out / "prometheus.yml"
    _run([_tool("promtool"), "check", "config", str(config_file)])
    config = yaml.safe_load(config_file.read_text())
    node = next(job for job in config["scrape_configs"] if job["job_name"] == "node")
    assert node["scheme"] == "https"
    assert node["tls_config"] == {"ca_file": f"{out}/etc/tls/node_exporter-ca.crt"}
    assert node["basic_auth"] == {
        "username": "prometheus",
        "password_file": f"{out}/etc/node_exporter.password",
    }
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    assert alertmanagers["scheme"] == "https"
    assert alertmanagers["tls_config"] == {"ca_file": f"{out}/etc/tls/alertmanager-ca.crt"}
    assert alertmanagers["basic_auth"] == {
        "username": "prometheus",
        "password_file": f"{out}/etc/alertmanager.password",
    }
    # The passwords are read from their files only.
    assert "test-only" not in config_file.read_text()
    # The trainer ranks are not behind node_exporter's web configuration.
    trainer = next(job for job in config["scrape_configs"] if job["job_name"] == "trainer")
    assert "scheme" not in trainer and "basic_auth" not in trainer


def test_default_alertmanager_config_passes_amtool(rendered: dict[str, Path]) -> None:
    config_file = rendered["default"] / "alertmanager.yml"
    _run([_tool("amtool"), "check-config", str(config_file)])
    config = yaml.safe_load(config_file.read_text())
    assert config["route"]["group_by"] == ["alertname", "node"]
    assert [r["matchers"] for r in config["route"]["routes"]] == [
        ['severity="critical"'],
        ['severity="warning"'],
    ]
    assert config["receivers"] == [{"name": "ui-only"}]
    assert config["inhibit_rules"][0]["equal"] == ["alertname", "node"]


def test_alertmanager_routes_with_webhook_and_email(rendered: dict[str, Path]) -> None:
    config_file = str(rendered["receivers"] / "alertmanager.yml")
    amtool = _tool("amtool")
    _run([amtool, "check-config", config_file])
    for severity in ("critical", "warning", "info"):
        routed = _run(
            [
                amtool,
                "config",
                "routes",
                "test",
                f"--config.file={config_file}",
                f"severity={severity}",
                "alertname=TrainerRankDown",
                "node=node1",
            ]
        )
        assert routed.stdout.strip() == "team", f"severity={severity} went to {routed.stdout.strip()!r}"
    config = yaml.safe_load(Path(config_file).read_text())
    team = config["receivers"][0]
    assert team["webhook_configs"][0]["url"] == "https://chat.example.org/hooks/T0KEN"
    assert team["email_configs"][0]["to"] == "ml-oncall@example.org"
    assert config["global"]["smtp_auth_password"] == "test-only"


# --- file_sd targets: exactly the phase's nodes and ranks --------------------------------------------


def _inventory(tmp_path: Path, node_vars: dict[str, dict[str, Any]] | None = None) -> Path:
    """node1..node4 (nested phase groups as in tooling/phases.yml) and a monitoring host, all local."""
    nodes = [f"node{i}" for i in range(1, 5)]
    hostvars = {
        n: {"ansible_host": f"10.0.0.{i + 1}", **(node_vars or {}).get(n, {})} for i, n in enumerate(nodes)
    }
    groups: dict[str, Any] = {
        "nodes": {"hosts": hostvars},
        "monitoring": {"hosts": {"monitor1": {"ansible_host": "10.0.0.100"}}},
    }
    for phase in PHASES["phases"].values():
        groups[phase["group"]] = {"hosts": {n: None for n in nodes[: phase["nodes"]]}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"vars": {"ansible_connection": "local"}, "children": groups}}))
    return path


def _write_targets(
    tmp_path: Path,
    limit: str,
    extra: dict[str, Any] | None = None,
    *args: str,
    node_vars: dict[str, dict[str, Any]] | None = None,
) -> tuple[list[Any], list[Any]]:
    file_sd = tmp_path / "file_sd"
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / "overrides.json").write_text(
        json.dumps(
            {
                "prometheus_file_sd_dir": str(file_sd),
                "_prometheus_file_sd_owner": user,
                **(extra or {}),
            }
        )
    )
    play = {
        "name": "Targets of the phase",
        "hosts": "nodes",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Write the targets",
                "ansible.builtin.include_role": {"name": "prometheus", "tasks_from": "targets"},
            }
        ],
    }
    _ansible_playbook(
        tmp_path,
        [play],
        "-i",
        str(_inventory(tmp_path, node_vars)),
        "-l",
        limit,
        "-e",
        "@overrides.json",
        *args,
    )
    node = yaml.safe_load((file_sd / "node.yml").read_text())
    trainer = yaml.safe_load((file_sd / "trainer.yml").read_text())
    return node, trainer


def test_targets_name_exactly_the_phase(tmp_path: Path) -> None:
    # -l phase2b leaves monitor1 out of the limit: the lists are still written there (delegate_to).
    phase_key = "2b"
    phase = PHASES["phases"][phase_key]
    base_port = PHASES["metrics"]["base_port"]
    node, trainer = _write_targets(tmp_path, phase["group"])
    hosts = [f"node{i}" for i in range(1, phase["nodes"] + 1)]
    assert [(t["targets"], t["labels"]["node"], t["labels"]["phase"]) for t in node] == [
        ([f"10.0.0.{i + 1}:9100"], h, phase_key) for i, h in enumerate(hosts)
    ]
    expected = [
        ([f"10.0.0.{i + 1}:{base_port + r}"], {"node": h, "phase": phase_key, "local_rank": str(r)})
        for i, h in enumerate(hosts)
        for r in range(phase["nproc_per_node"])
    ]
    assert [(t["targets"], t["labels"]) for t in trainer] == expected


def test_targets_follow_a_site_phases_file(tmp_path: Path) -> None:
    """`-e @site-phases.yml` (what `tooling --phases` passes) beats the project's file for the targets too."""
    plan = copy.deepcopy(PHASES)
    plan["phases"]["2a"]["nproc_per_node"] = 2
    plan["metrics"]["base_port"] = 9700
    site = tmp_path / "site-phases.yml"
    site.write_text(yaml.safe_dump(plan))
    _, trainer = _write_targets(tmp_path, "phase2a", None, "-e", f"@{site}")
    expected = [f"10.0.0.{node}:{port}" for node in (1, 2) for port in (9700, 9701)]
    assert [t["targets"][0] for t in trainer] == expected


def test_targets_are_the_node_addresses_the_launch_uses(tmp_path: Path) -> None:
    """A node's training address (ddp_trainer_node_address) is where its ranks listen and what `tooling
    deploy` records: the scrape targets, node_exporter's too, come from the same derivation
    (tooling/plan/launch.py)."""
    node_vars = {"node2": {"ddp_trainer_node_address": "172.16.0.2"}}
    node, trainer = _write_targets(tmp_path, "phase2a", node_vars=node_vars)
    groups = {"nodes": [f"node{i}" for i in range(1, 5)], "phase1": ["node1"], "phase2a": ["node1", "node2"]}
    hostvars = {
        "node1": {"ansible_host": "10.0.0.1"},
        "node2": {"ansible_host": "10.0.0.2", **node_vars["node2"]},
    }
    launch = derive_launch(load_phases(), groups, hostvars, phase="2a")
    assert [f"http://{t['targets'][0]}/metrics" for t in trainer] == launch.metrics_endpoints
    assert {t["targets"][0].rsplit(":", 1)[0] for t in trainer} == {"10.0.0.1", "172.16.0.2"}
    assert [t["targets"][0] for t in node] == [f"{launch.addresses[h]}:9100" for h in launch.hosts]
    assert [t["targets"][0] for t in node] == ["10.0.0.1:9100", "172.16.0.2:9100"]


def test_targets_refuse_a_limit_that_is_no_phase(tmp_path: Path) -> None:
    with pytest.raises(
        AssertionError, match="Cannot tell which phase to deploy: the play's hosts node1, node3 "
    ):
        _write_targets(tmp_path, "node1,node3")


def test_trainer_targets_can_be_switched_off(tmp_path: Path) -> None:
    node, trainer = _write_targets(tmp_path, "phase2a", {"prometheus_targets_trainer_enabled": False})
    assert len(node) == 2
    assert trainer == []
