"""The grafana role without Grafana: its templates rendered from the role's defaults, and its preflight.

The unit tests install no Grafana (its packages live only in Grafana's repositories), so the role is checked
where it can be: grafana.ini, the datasource and the dashboard provider render from the defaults and parse,
anonymous access is off and the address is bound; preflight refuses the admin/admin default, weak passwords,
0.0.0.0 and a Prometheus with basic auth but no credentials, and prints no password while doing so.
"""

from __future__ import annotations

import configparser
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.local_playbook import render_templates_task, run_local_playbook

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "grafana"
TEMPLATES = {
    "grafana.ini": ROLE / "templates" / "grafana.ini.j2",
    "datasource.yml": ROLE / "templates" / "datasource.yml.j2",
    "dashboards.yml": ROLE / "templates" / "dashboards.yml.j2",
}
TEST_HASH = "$2b$10$O.26R7CApDyeVTmvOk2x/uyqeRBBujEyxWzqc8zHuyDrQiN7N7Aim"
ADMIN_PASSWORD = "test-only-admin-password"
CA_PEM = "-----BEGIN CERTIFICATE-----\nTEST-ONLY\n-----END CERTIFICATE-----"


def _ansible_playbook(
    tmp_path: Path, playbook: list[dict[str, Any]], *args: str, callback: str | None = None
) -> subprocess.CompletedProcess[str]:
    return run_local_playbook(tmp_path, playbook, *args, callback=callback)


# --- templates -------------------------------------------------------------------------------------------


def _variants(tmp_path: Path) -> dict[str, dict[str, Any]]:
    ca = tmp_path / "prometheus-ca.pem"
    ca.write_text(CA_PEM + "\n")
    return {
        "default": {},
        "secured": {
            "prometheus_basic_auth_users": {"grafana": TEST_HASH},
            "prometheus_self_scrape_user": "grafana",
            "prometheus_self_scrape_password": "test-only",
            "prometheus_tls_cert_file": str(ca),
            "prometheus_port": 9091,
            "grafana_tls_cert_file": "/control/grafana.crt",
            "grafana_tls_key_file": "/control/grafana.key",
            # A vault password with characters grafana.ini would otherwise read as a comment.
            "_grafana_admin_password_value": "with#hash;and-semicolon",
        },
        "ipv6": {"ansible_host": "fd00::20"},
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every variant of the role's templates, rendered by Ansible from its defaults and vars in one run."""
    tmp_path = tmp_path_factory.mktemp("grafana-render")
    outputs: dict[str, Path] = {}
    tasks = []
    for name, overrides in _variants(tmp_path).items():
        out = tmp_path / name
        out.mkdir()
        outputs[name] = out
        task_vars = {
            "ansible_host": "192.0.2.20",
            "_grafana_admin_password_value": ADMIN_PASSWORD,
            "_grafana_secret_key_value": "test-only-secret-key",
            **overrides,
        }
        tasks.append(render_templates_task(name, out, task_vars))
    play = {
        "name": "Render the grafana templates",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
        "vars": {"templates": {k: str(v) for k, v in TEMPLATES.items()}},
        "tasks": tasks,
    }
    result = _ansible_playbook(tmp_path, [play], "-i", "localhost,")
    assert result.returncode == 0, f"rendering failed:\n{result.stdout}\n{result.stderr}"
    return outputs


def _ini(path: Path) -> configparser.ConfigParser:
    # Grafana's own %(name)s references and triple quotes are not configparser's business.
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.read_string(path.read_text())
    return parser


def _datasource(path: Path) -> dict[str, Any]:
    config = yaml.safe_load(path.read_text())
    assert config["apiVersion"] == 1
    (datasource,) = config["datasources"]
    return datasource


def test_grafana_ini_defaults_are_locked_down(rendered: dict[str, Path]) -> None:
    path = rendered["default"] / "grafana.ini"
    ini = _ini(path)
    assert ini.get("auth.anonymous", "enabled") == "false"
    assert ini.get("users", "allow_sign_up") == "false"
    assert ini.get("users", "allow_org_create") == "false"
    assert ini.get("server", "protocol") == "http"
    assert ini.get("server", "http_addr") == "192.0.2.20"
    assert ini.get("server", "http_port") == "3000"
    assert ini.get("server", "root_url") == "%(protocol)s://192.0.2.20:%(http_port)s/"
    assert ini.get("security", "admin_user") == "admin"
    assert ini.get("security", "admin_password") == f'"""{ADMIN_PASSWORD}"""'
    assert ini.get("security", "secret_key") == '"""test-only-secret-key"""'
    assert ini.get("security", "cookie_secure") == "false"
    assert ini.get("analytics", "reporting_enabled") == "false"
    assert ini.get("snapshots", "external_enabled") == "false"
    assert ini.get("paths", "provisioning") == "/etc/grafana/provisioning"
    home = Path(ini.get("dashboards", "default_home_dashboard_path"))
    assert home.parent == Path("/etc/grafana/dashboards/ddp")
    assert (ROLE / "files" / "dashboards" / home.name).is_file(), f"home dashboard {home.name} is not shipped"
    assert "0.0.0.0" not in path.read_text()


def test_grafana_ini_with_tls_and_a_password_with_comment_characters(rendered: dict[str, Path]) -> None:
    ini = _ini(rendered["secured"] / "grafana.ini")
    assert ini.get("server", "protocol") == "https"
    assert ini.get("server", "cert_file") == "/etc/grafana/tls/server.crt"
    assert ini.get("server", "cert_key") == "/etc/grafana/tls/server.key"
    assert ini.get("security", "cookie_secure") == "true"
    assert ini.get("security", "admin_password") == '"""with#hash;and-semicolon"""'


def test_datasource_points_at_the_prometheus_role(rendered: dict[str, Path]) -> None:
    datasource = _datasource(rendered["default"] / "datasource.yml")
    assert datasource["uid"] == "ddp-prometheus"
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://192.0.2.20:9090"
    assert datasource["isDefault"] is True
    assert datasource["editable"] is False
    assert datasource["basicAuth"] is False
    assert datasource["jsonData"]["timeInterval"] == "15s"
    assert "secureJsonData" not in datasource


def test_datasource_with_prometheus_basic_auth_and_tls(rendered: dict[str, Path]) -> None:
    datasource = _datasource(rendered["secured"] / "datasource.yml")
    assert datasource["url"] == "https://192.0.2.20:9091"
    assert datasource["basicAuth"] is True
    assert datasource["basicAuthUser"] == "grafana"
    assert datasource["secureJsonData"]["basicAuthPassword"] == "test-only"
    assert datasource["secureJsonData"]["tlsCACert"] == CA_PEM
    assert datasource["jsonData"]["tlsAuthWithCACert"] is True
    assert datasource["jsonData"]["tlsSkipVerify"] is False


def test_ipv6_addresses_are_bracketed_in_urls(rendered: dict[str, Path]) -> None:
    ini = _ini(rendered["ipv6"] / "grafana.ini")
    assert ini.get("server", "http_addr") == "fd00::20"
    assert ini.get("server", "root_url") == "%(protocol)s://[fd00::20]:%(http_port)s/"
    assert _datasource(rendered["ipv6"] / "datasource.yml")["url"] == "http://[fd00::20]:9090"


def test_dashboard_provider_reads_the_installed_files(rendered: dict[str, Path]) -> None:
    config = yaml.safe_load((rendered["default"] / "dashboards.yml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "DDP training"
    assert provider["options"]["path"] == "/etc/grafana/dashboards/ddp"
    assert provider["disableDeletion"] is True
    assert provider["allowUiUpdates"] is False
    assert provider["updateIntervalSeconds"] == 30


# --- preflight -------------------------------------------------------------------------------------------

FACTS = {"os_family": "Debian", "service_mgr": "systemd", "distribution": "Debian"}
SHORT_PASSWORD = "Sh0rt-pw-9"
CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    # host: (its variables, the task expected to fail or None)
    "generated": ({}, None),
    "vault": ({"grafana_admin_password": "correct-horse-battery-staple"}, None),
    "admin": ({"grafana_admin_password": "admin"}, "Check the admin password"),
    "admin_upper": ({"grafana_admin_password": "Admin"}, "Check the admin password"),
    "short": ({"grafana_admin_password": SHORT_PASSWORD}, "Check the admin password"),
    "default_key": ({"grafana_secret_key": "SW2YcwTIb9zpOOhoPsMm"}, "Check the secret key"),
    "any_address": ({"grafana_http_addr": "0.0.0.0"}, "Check the address and port"),
    "any_address_allowed": ({"grafana_http_addr": "0.0.0.0", "grafana_allow_any_address": True}, None),
    "prometheus_auth": (
        {"prometheus_basic_auth_users": {"grafana": TEST_HASH}},
        "Check the Prometheus datasource",
    ),
    "prometheus_auth_given": (
        {
            "prometheus_basic_auth_users": {"grafana": TEST_HASH},
            "prometheus_self_scrape_user": "grafana",
            "prometheus_self_scrape_password": "test-only",
        },
        None,
    ),
    "rpm_on_debian": ({"grafana_local_package": "@RPM@"}, "Check the local package"),
}


@pytest.fixture(scope="module")
def preflight(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict[str, Any]], str]:
    """Run the role's preflight once, one local host per case; per host, the failed task and its message."""
    tmp_path = tmp_path_factory.mktemp("grafana-preflight")
    rpm = tmp_path / "grafana-11.3.0-1.x86_64.rpm"
    rpm.write_text("not a package\n")
    hosts = {
        name: {
            key: (str(rpm) if value == "@RPM@" else value)
            for key, value in {
                "ansible_connection": "local",
                "ansible_host": "192.0.2.20",
                **variables,
            }.items()
        }
        for name, (variables, _) in CASES.items()
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    play = {
        "name": "Grafana preflight",
        "hosts": "all",
        "gather_facts": False,
        "tasks": [
            # The facts of a Debian host with systemd, whatever runs the test.
            {"name": "Pretend to be Debian", "ansible.builtin.set_fact": {**FACTS, "cacheable": True}},
            {
                "name": "Run the preflight",
                "ansible.builtin.include_role": {"name": "grafana", "tasks_from": "preflight"},
            },
        ],
    }
    result = _ansible_playbook(tmp_path, [play], "-i", "hosts.yml", callback="ansible.posix.json")
    report = json.loads(result.stdout[result.stdout.index("{") :])
    failures: dict[str, dict[str, Any]] = {}
    for play_report in report["plays"]:
        for task in play_report["tasks"]:
            for host, outcome in task["hosts"].items():
                if outcome.get("failed"):
                    failures[host] = {"task": task["task"]["name"], "msg": str(outcome.get("msg", ""))}
    return failures, result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_preflight(case: str, preflight: tuple[dict[str, dict[str, Any]], str]) -> None:
    failures, _ = preflight
    expected = CASES[case][1]
    if expected is None:
        assert case not in failures, f"{case}: preflight failed: {failures.get(case)}"
    else:
        assert case in failures, f"{case}: preflight passed, expected {expected!r} to fail"
        assert failures[case]["task"] == f"grafana : {expected}", failures[case]


def test_preflight_refuses_admin_with_a_clear_message(
    preflight: tuple[dict[str, dict[str, Any]], str],
) -> None:
    failures, _ = preflight
    assert "must not be 'admin'" in failures["admin"]["msg"]
    assert "ansible-vault" in failures["admin"]["msg"]
    assert "at least 12 characters" in failures["short"]["msg"]
    assert "grafana_allow_any_address" in failures["any_address"]["msg"]


def test_preflight_prints_no_password(preflight: tuple[dict[str, dict[str, Any]], str]) -> None:
    _, output = preflight
    assert SHORT_PASSWORD not in output
    assert "correct-horse-battery-staple" not in output
