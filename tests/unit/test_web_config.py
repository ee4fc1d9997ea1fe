"""The web configuration (TLS, basic auth) Prometheus, Alertmanager and node_exporter share
(roles/web_config).

- each role's own preflight, run by Ansible: basic auth without TLS is refused unless
  `<role>_web_allow_plaintext_auth: true`, an entry that is no bcrypt hash is named by its user (the value
  never shows), a certificate without its key is refused; Prometheus refuses nodes or an Alertmanager
  serving TLS or basic auth it has no CA or credentials for, and nodes that disagree (one scrape job reads
  them all);
- the file each role writes, rendered from web_config's template with the variables the role's own import
  passes (read from its tasks/configure.yml), names the role's TLS directory and users and passes
  `promtool check web-config` with a real certificate, key and bcrypt hash;
- each role passes `--web.config.file` and its own URL turns https with TLS.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from tests.unit.local_playbook import preflight_case_task, role_import_vars, run_local_playbook
from tests.unit.tls_prometheus import Pki, make_pki

ROOT = Path(__file__).resolve().parents[2]
ROLES = ["prometheus", "alertmanager", "node_exporter"]
MONITOR = "192.0.2.20"
# A bcrypt hash made here (cost 4: quick) of a password no test ever shows.
HASH = bcrypt.hashpw(b"web-config-test-only", bcrypt.gensalt(rounds=4)).decode()
NOT_A_HASH = "plain-Secret-4711"
# With every variable check passed, the last is the distribution's: its message, or none on a systemd host.
DISTRIBUTION_CHECKS = {
    "prometheus": "The prometheus role installs the distribution package on Debian/Ubuntu with systemd",
    "alertmanager": "The alertmanager role installs the distribution package on Debian/Ubuntu with systemd",
    "node_exporter": "node_exporter is run as a systemd service",
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _inventory(tmp_path: Path, pki: Pki) -> Path:
    """monitor1 (run locally) and three groups of nodes Prometheus may be pointed at with
    prometheus_targets_nodes_group: plain ones, ones serving TLS and basic auth, and a mix of both."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    secure = {
        "node_exporter_tls_cert_file": str(pki.server_cert),
        "node_exporter_tls_key_file": str(pki.server_key),
        "node_exporter_basic_auth_users": {"prometheus": HASH},
    }
    hosts = {
        "node1": {"ansible_host": "192.0.2.11"},
        "node2": {"ansible_host": "192.0.2.12"},
        "node3": {"ansible_host": "192.0.2.13", **secure},
        "node4": {"ansible_host": "192.0.2.14", **secure},
    }
    path = tmp_path / "hosts.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "monitoring": {"hosts": {"monitor1": {"ansible_host": MONITOR, **local}}},
                        "nodes": {"hosts": {"node1": hosts["node1"], "node2": hosts["node2"]}},
                        "secure_nodes": {"hosts": {"node3": hosts["node3"], "node4": hosts["node4"]}},
                        "mixed_nodes": {"hosts": {"node1": None, "node3": None}},
                    }
                }
            }
        )
    )
    return path


def _run(tmp_path: Path, plays: list[dict[str, Any]], pki: Pki) -> None:
    proc = run_local_playbook(tmp_path, plays, "-i", str(_inventory(tmp_path, pki)))
    assert proc.returncode == 0, f"ansible-playbook failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"


# --- preflight ------------------------------------------------------------------------------------------


def _tls(role: str, pki: Pki) -> dict[str, str]:
    return {f"{role}_tls_cert_file": str(pki.server_cert), f"{role}_tls_key_file": str(pki.server_key)}


def _cases(pki: Pki) -> dict[str, tuple[str, dict[str, Any], str | None]]:
    """case -> (role, variables, expected part of the refusal or None when it must pass)."""
    cases: dict[str, tuple[str, dict[str, Any], str | None]] = {}
    for role in ROLES:
        users = {f"{role}_basic_auth_users": {"admin": HASH}}
        cases |= {
            f"{role}_defaults": (role, {}, None),
            f"{role}_auth_over_plain_http": (
                role,
                users,
                f"{role}_basic_auth_users is set without TLS: every request would carry its password in"
                f" clear. Set {role}_tls_cert_file and {role}_tls_key_file, or accept that with"
                f" {role}_web_allow_plaintext_auth: true.",
            ),
            f"{role}_auth_over_plain_http_allowed": (
                role,
                {**users, f"{role}_web_allow_plaintext_auth": True},
                None,
            ),
            f"{role}_auth_and_tls": (role, {**users, **_tls(role, pki)}, None),
            f"{role}_tls_only": (role, _tls(role, pki), None),
            f"{role}_not_bcrypt": (
                role,
                {f"{role}_basic_auth_users": {"admin": HASH, "ops": NOT_A_HASH}, **_tls(role, pki)},
                f"{role}_basic_auth_users: the entry of ops is not a bcrypt hash",
            ),
            f"{role}_cert_without_key": (
                role,
                {f"{role}_tls_cert_file": str(pki.server_cert)},
                f"{role}_tls_cert_file and {role}_tls_key_file are both set or both empty",
            ),
            f"{role}_missing_key_file": (
                role,
                {**_tls(role, pki), f"{role}_tls_key_file": "/nonexistent/server.key"},
                "name files on the control machine",
            ),
        }
    scrape = {
        "prometheus_node_exporter_ca_file": str(pki.ca),
        "prometheus_node_exporter_user": "prometheus",
        "prometheus_node_exporter_password": "scrape-Pw-4712",
    }
    alertmanager_side = {
        "alertmanager_basic_auth_users": {"prometheus": HASH},
        **_tls("alertmanager", pki),
    }
    sender = {
        "prometheus_alertmanager_ca_file": str(pki.ca),
        "prometheus_alertmanager_user": "prometheus",
        "prometheus_alertmanager_password": "alerts-Pw-4713",
    }
    cases |= {
        "prometheus_secure_nodes": (
            "prometheus",
            {"prometheus_targets_nodes_group": "secure_nodes", **scrape},
            None,
        ),
        "prometheus_secure_nodes_without_ca": (
            "prometheus",
            {
                "prometheus_targets_nodes_group": "secure_nodes",
                **scrape,
                "prometheus_node_exporter_ca_file": "",
            },
            "The nodes serve node_exporter over TLS (node_exporter_tls_cert_file):"
            " prometheus_node_exporter_ca_file must name the CA",
        ),
        "prometheus_secure_nodes_unknown_user": (
            "prometheus",
            {
                "prometheus_targets_nodes_group": "secure_nodes",
                **scrape,
                "prometheus_node_exporter_user": "grafana",
            },
            "prometheus_node_exporter_user ('grafana') must be one of those users on every node",
        ),
        "prometheus_secure_nodes_without_password": (
            "prometheus",
            {
                "prometheus_targets_nodes_group": "secure_nodes",
                **scrape,
                "prometheus_node_exporter_password": "",
            },
            "prometheus_node_exporter_password its password",
        ),
        "prometheus_mixed_nodes": (
            "prometheus",
            {"prometheus_targets_nodes_group": "mixed_nodes", **scrape},
            "must all set node_exporter_tls_cert_file, or none (node3 of node1, node3 do)",
        ),
        "prometheus_secure_alertmanager": ("prometheus", {**alertmanager_side, **sender}, None),
        "prometheus_secure_alertmanager_without_ca": (
            "prometheus",
            {**alertmanager_side, **sender, "prometheus_alertmanager_ca_file": ""},
            "prometheus_alertmanager_ca_file must name the CA of its certificate",
        ),
        "prometheus_secure_alertmanager_unknown_user": (
            "prometheus",
            {**alertmanager_side, **sender, "prometheus_alertmanager_user": "nobody"},
            "prometheus_alertmanager_user ('nobody') be one of alertmanager_basic_auth_users",
        ),
    }
    return cases


@pytest.fixture(scope="module")
def preflight(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> dict[str, tuple[str, str]]:
    """Every case's outcome: (expected, the failure message or "" when it passed)."""
    tmp_path = tmp_path_factory.mktemp("web-preflight")
    results = tmp_path / "results"
    results.mkdir()
    cases = _cases(pki)
    tasks = [
        preflight_case_task(case, role, overrides, results / case)
        for case, (role, overrides, _) in cases.items()
    ]
    play = {
        "name": "Preflight checks of the roles serving a web configuration",
        "hosts": "monitor1",
        "gather_facts": True,
        "gather_subset": ["!all", "!min", "distribution", "service_mgr"],
        "tasks": tasks,
    }
    _run(tmp_path, [play], pki)
    return {case: (role, (results / case).read_text()) for case, (role, _, _) in cases.items()}


# The case names do not depend on the files' paths.
CASE_NAMES = list(_cases(Pki(*(Path("/unused"),) * 5)))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_preflight(preflight: dict[str, tuple[str, str]], pki: Pki, case: str) -> None:
    role, _, expected = _cases(pki)[case]
    _, raw = preflight[case]
    message = " ".join(raw.split())
    if expected is None:
        assert message == "" or DISTRIBUTION_CHECKS[role] in message, f"{case}: refused: {message}"
    else:
        assert expected in message, f"{case}: expected {expected!r}, got {message!r}"
    # Messages name users and variables, never a hash or a password.
    for secret in (HASH, NOT_A_HASH, "scrape-Pw-4712", "alerts-Pw-4713"):
        assert secret not in message, f"{case}: the message shows a secret"


# --- the file each role writes, through its own import of web_config -----------------------------------


def _import_vars(role: str) -> dict[str, Any]:
    return role_import_vars(role, "configure.yml", "web_config", "configure")


# Where each role keeps its web configuration, and the restart handler it notifies.
EXPECTED_PLACES = {
    "prometheus": ("/etc/prometheus/web.yml", "/etc/prometheus/tls", "prometheus restart"),
    "alertmanager": (
        "/etc/prometheus/alertmanager-web.yml",
        "/etc/prometheus/alertmanager-tls",
        "alertmanager restart",
    ),
    "node_exporter": ("/etc/node_exporter/web.yml", "/etc/node_exporter/tls", "node_exporter restart"),
}
FLAGS_TEMPLATES = {
    "prometheus": "prometheus.default.j2",
    "alertmanager": "alertmanager.default.j2",
    "node_exporter": "node_exporter.default.j2",
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Path:
    """For each role and variant (off / TLS and basic auth): the web configuration and the flags, rendered
    from the role's defaults and vars plus web_config's, the task variables the role's import passes, and
    the variant's settings; plus what the import resolves to."""
    tmp_path = tmp_path_factory.mktemp("web-render")
    web_config = ROOT / "roles" / "web_config"
    plays = []
    for role in ROLES:
        role_dir = ROOT / "roles" / role
        variants = {"off": {}, "on": {**_tls(role, pki), f"{role}_basic_auth_users": {"admin": HASH}}}
        tasks: list[dict[str, Any]] = []
        for variant, settings in variants.items():
            out = tmp_path / role / variant
            out.mkdir(parents=True)
            task_vars = {**_import_vars(role), **settings, "node_exporter_install_method": "package"}
            tasks += [
                {
                    "name": f"Render {role} {variant}: web configuration",
                    "ansible.builtin.template": {
                        "src": str(web_config / "templates" / "web.yml.j2"),
                        "dest": str(out / "web.yml"),
                        "mode": "0600",
                    },
                    "vars": task_vars,
                },
                {
                    "name": f"Render {role} {variant}: flags",
                    "ansible.builtin.template": {
                        "src": str(role_dir / "templates" / FLAGS_TEMPLATES[role]),
                        "dest": str(out / "flags"),
                        "mode": "0600",
                    },
                    "vars": task_vars,
                },
                {
                    "name": f"Record what {role}'s import resolves to",
                    "ansible.builtin.copy": {
                        "content": "{{ {'file': web_config_file, 'tls_dir': web_config_tls_dir,"
                        " 'notify': web_config_notify, 'role': web_config_role} | to_json }}",
                        "dest": str(out / "import.json"),
                        "mode": "0600",
                    },
                    "vars": task_vars,
                },
            ]
        plays.append(
            {
                "name": f"Render {role}'s web configuration",
                "hosts": "monitor1",
                "gather_facts": False,
                "vars_files": [
                    str(role_dir / "defaults" / "main.yml"),
                    str(role_dir / "vars" / "main.yml"),
                    str(web_config / "defaults" / "main.yml"),
                    str(web_config / "vars" / "main.yml"),
                ],
                "tasks": tasks,
            }
        )
    _run(tmp_path, plays, pki)
    return tmp_path


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: install the Debian package prometheus (scripts/bootstrap.sh does)"
        )
    return path


def _check_web_config(path: Path) -> None:
    proc = subprocess.run(
        [_promtool(), "check", "web-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"promtool check web-config {path}:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.parametrize("role", ROLES)
def test_each_role_imports_web_config_with_its_own_variables(rendered: Path, role: str) -> None:
    resolved = yaml.safe_load((rendered / role / "off" / "import.json").read_text())
    assert (resolved["file"], resolved["tls_dir"], resolved["notify"]) == EXPECTED_PLACES[role]
    assert resolved["role"] == role
    # The preflight import passes the same settings as the configure import.
    check = role_import_vars(role, "preflight.yml", "web_config", "preflight")
    configure = _import_vars(role)
    shared = {k: v for k, v in check.items() if k != "web_config_allow_plaintext_auth"}
    assert shared == {k: configure[k] for k in shared}
    assert check["web_config_allow_plaintext_auth"] == f"{{{{ {role}_web_allow_plaintext_auth }}}}"


@pytest.mark.parametrize("role", ROLES)
def test_web_configuration_off_by_default(rendered: Path, role: str) -> None:
    path = rendered / role / "off" / "web.yml"
    assert yaml.safe_load(path.read_text()) == {}
    _check_web_config(path)
    flags = (rendered / role / "off" / "flags").read_text()
    assert f"--web.config.file={EXPECTED_PLACES[role][0]}" in flags
    if role != "node_exporter":
        assert "--web.external-url=http://" in flags


@pytest.mark.parametrize("role", ROLES)
def test_web_configuration_with_tls_and_basic_auth(rendered: Path, pki: Pki, role: str) -> None:
    path = rendered / role / "on" / "web.yml"
    web = yaml.safe_load(path.read_text())
    tls_dir = EXPECTED_PLACES[role][1]
    assert web["tls_server_config"] == {
        "cert_file": f"{tls_dir}/server.crt",
        "key_file": f"{tls_dir}/server.key",
        "min_version": "TLS12",
    }
    assert web["basic_auth_users"] == {"admin": HASH}
    # promtool loads the certificate and key: point a copy at the files the role would have installed there.
    installed = dict(web, tls_server_config={**web["tls_server_config"], "cert_file": str(pki.server_cert)})
    installed["tls_server_config"]["key_file"] = str(pki.server_key)
    check = path.with_name("web-installed.yml")
    check.write_text(yaml.safe_dump(installed))
    _check_web_config(check)
    flags = (rendered / role / "on" / "flags").read_text()
    assert f"--web.config.file={EXPECTED_PLACES[role][0]}" in flags
    if role != "node_exporter":
        assert "--web.external-url=https://" in flags
