"""Repository signing keys accepted only by pinned fingerprint (package_source signing_key), run locally with
throw-away keys made by gpg.

- the pinned key is installed (and the APT cache refresh requested), a second run changes nothing;
- another key, a file holding the pinned key plus another, or something that is not a key, is refused with a
  message naming what was found and what is pinned, and nothing is installed;
- no pinned fingerprint at all is refused;
- the grafana role's own include of the check (and the elasticsearch role's, through elastic_repo) pins the
  vendor's published fingerprint by default, so a different key fails there, naming it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.gpg_keys import ThrowawayKey, make_keys
from tests.unit.local_playbook import ROOT, role_include, run_local_playbook

PACKAGE_SOURCE = ROOT / "roles" / "package_source"
GRAFANA_FINGERPRINT = "B53AE77BADB630A683046005963FA27710458545"
ELASTIC_FINGERPRINT = "46095ACC8548582C1A2699A9D27D666CD88E42B4"
COMPARE_TASK = "Compare the key's fingerprints with the pinned ones"
# What the common role reads on a node; gpg is installed here (it made the keys).
GPG_INSTALLED: dict[str, Any] = {"common_installed_packages": {"gpg": []}}

pytestmark = pytest.mark.skipif(
    not Path("/etc/debian_version").exists(), reason="the key checks run on Debian-family hosts"
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ThrowawayKey]:
    directory = tmp_path_factory.mktemp("keys")
    made = make_keys(directory, "pinned", "other")
    both = directory / "both.asc"
    both.write_text(made["pinned"].path.read_text() + made["other"].path.read_text())
    garbage = directory / "garbage.asc"
    garbage.write_text("<html>a captive portal, not a key</html>\n")
    return {**made, "both": ThrowawayKey("", both), "garbage": ThrowawayKey("", garbage)}


def _record(result: Path, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`tasks`, then the failed task and message (none when they passed) written to `result`."""
    return [
        {
            "name": "Run the key check",
            "block": [
                *tasks,
                {
                    "name": "Record a pass",
                    "ansible.builtin.copy": {"content": "{}", "dest": str(result), "mode": "0644"},
                    "changed_when": False,
                    "check_mode": False,
                },
            ],
            "rescue": [
                {
                    "name": "Record the failure",
                    "ansible.builtin.copy": {
                        "content": "{{ {'task': ansible_failed_task.name,"
                        " 'msg': ansible_failed_result.msg} | to_json }}",
                        "dest": str(result),
                        "mode": "0644",
                    },
                    "changed_when": False,
                    "check_mode": False,
                }
            ],
        }
    ]


def _outcome(tmp_path: Path, plays: list[dict[str, Any]], *args: str) -> tuple[dict[str, Any], str]:
    result = tmp_path / "result.json"
    result.unlink(missing_ok=True)
    proc = run_local_playbook(tmp_path, plays, "-i", "localhost,", *args)
    assert result.exists(), f"the play did not finish:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    recorded: dict[str, Any] = json.loads(result.read_text())
    if "msg" in recorded:
        recorded["msg"] = " ".join(recorded["msg"].split())
    return recorded, proc.stdout


def _signing_key(tmp_path: Path, url: str, fingerprints: list[str]) -> tuple[dict[str, Any], str]:
    """package_source's signing_key.yml on its own, with a stand-in for the APT cache handler that records
    whether a refresh was requested."""
    refreshed = tmp_path / "refreshed"
    play = {
        "name": "Install a signing key",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": True,
        "gather_subset": ["!all", "!min", "distribution"],
        "vars_files": [
            str(PACKAGE_SOURCE / "defaults" / "main.yml"),
            str(PACKAGE_SOURCE / "vars" / "main.yml"),
        ],
        "vars": {**GPG_INSTALLED, "ansible_python_interpreter": sys.executable},
        "tasks": _record(
            tmp_path / "result.json",
            [
                {
                    "name": "Check and install the key",
                    "ansible.builtin.include_tasks": str(PACKAGE_SOURCE / "tasks" / "signing_key.yml"),
                    # Task vars: the play's vars_files (the role's defaults) would win over play vars,
                    # and staging in the default cache directory raced with another worker's test.
                    "vars": {
                        "package_source_cache_dir": str(tmp_path / "cache"),
                        "package_source_signing_key_url": url,
                        "package_source_signing_key_file": str(tmp_path / "keyrings" / "vendor.asc"),
                        "package_source_signing_key_fingerprints": fingerprints,
                    },
                }
            ],
        ),
        "handlers": [
            {
                "name": "Record the APT cache refresh",
                "ansible.builtin.copy": {"content": "", "dest": str(refreshed), "mode": "0644"},
                "listen": "package_source apt cache",
            }
        ],
    }
    return _outcome(tmp_path, [play])


# The key file is installed root-owned, as on a node.
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="installs a root-owned key file")


@needs_root
def test_the_pinned_key_is_installed_once(tmp_path: Path, keys: dict[str, ThrowawayKey]) -> None:
    installed = tmp_path / "keyrings" / "vendor.asc"
    refreshed = tmp_path / "refreshed"
    outcome, _ = _signing_key(tmp_path, keys["pinned"].url, [keys["pinned"].fingerprint])
    assert outcome == {}
    assert installed.read_text() == keys["pinned"].path.read_text()
    assert refreshed.exists(), "a new key did not ask for the APT cache to be refreshed"

    refreshed.unlink()
    outcome, stdout = _signing_key(tmp_path, keys["pinned"].url, [keys["pinned"].fingerprint])
    assert outcome == {} and not refreshed.exists()
    recap = next(line for line in stdout.splitlines() if line.startswith("localhost"))
    assert "changed=0" in recap, recap


@needs_root
def test_fingerprints_may_be_written_as_vendors_print_them(
    tmp_path: Path, keys: dict[str, ThrowawayKey]
) -> None:
    fingerprint = keys["pinned"].fingerprint
    spaced = " ".join(fingerprint[i : i + 4] for i in range(0, len(fingerprint), 4)).lower()
    outcome, _ = _signing_key(tmp_path, keys["pinned"].url, [spaced])
    assert outcome == {}


@pytest.mark.parametrize(
    ("served", "found"),
    [("other", ["other"]), ("both", ["pinned", "other"])],
    ids=["another-key", "an-extra-key"],
)
def test_a_key_that_is_not_pinned_is_refused(
    tmp_path: Path, keys: dict[str, ThrowawayKey], served: str, found: list[str]
) -> None:
    pinned = keys["pinned"].fingerprint
    outcome, _ = _signing_key(tmp_path, keys[served].url, [pinned])
    assert outcome["task"] == COMPARE_TASK, outcome
    assert (
        f"{keys[served].url} holds key(s) {', '.join(keys[name].fingerprint for name in found)};"
        in outcome["msg"]
    )
    assert f"expected only {pinned} (package_source_signing_key_fingerprints)" in outcome["msg"]
    assert not (tmp_path / "keyrings" / "vendor.asc").exists()


def test_something_that_is_not_a_key_is_refused(tmp_path: Path, keys: dict[str, ThrowawayKey]) -> None:
    outcome, _ = _signing_key(tmp_path, keys["garbage"].url, [keys["pinned"].fingerprint])
    assert outcome["task"] == COMPARE_TASK, outcome
    assert f"{keys['garbage'].url} is not an OpenPGP key (gpg:" in outcome["msg"]
    assert not (tmp_path / "keyrings" / "vendor.asc").exists()


def test_a_key_without_pinned_fingerprints_is_refused(tmp_path: Path, keys: dict[str, ThrowawayKey]) -> None:
    outcome, _ = _signing_key(tmp_path, keys["pinned"].url, [])
    assert outcome["task"] == "Check the signing key settings", outcome
    assert "package_source_signing_key_fingerprints at least one full key fingerprint" in outcome["msg"]


# --- the vendors' pins, through the roles' own includes (check mode: nothing is installed) -----------------


def _role_play(tmp_path: Path, role: str, include: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": f"The {role} role's signing key",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": True,
        "gather_subset": ["!all", "!min", "distribution"],
        "vars_files": [
            str(ROOT / "roles" / role / "defaults" / "main.yml"),
            str(ROOT / "roles" / role / "vars" / "main.yml"),
        ],
        "vars": {**GPG_INSTALLED, "ansible_python_interpreter": sys.executable},
        "tasks": _record(tmp_path / "result.json", [include]),
    }


def _check_mode(tmp_path: Path, play: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    # Extra vars: the key is staged under tmp_path, and nothing is meant for /etc/apt on this machine.
    extra = {"package_source_cache_dir": str(tmp_path / "cache"), **extra}
    outcome, _ = _outcome(tmp_path, [play], "--check", "-e", json.dumps(extra))
    return outcome


def test_grafana_pins_grafanas_key(tmp_path: Path, keys: dict[str, ThrowawayKey]) -> None:
    play = _role_play(tmp_path, "grafana", role_include("grafana", "package_source", "signing_key"))
    key_file = {"_grafana_apt_key_file": str(tmp_path / "keyrings" / "grafana.asc")}

    refused = _check_mode(tmp_path, play, {**key_file, "grafana_apt_key_url": keys["other"].url})
    assert refused["task"] == COMPARE_TASK, refused
    assert f"holds key(s) {keys['other'].fingerprint}; expected only {GRAFANA_FINGERPRINT}" in refused["msg"]

    # A site that checked a new Grafana key pins it in grafana_apt_key_fingerprints.
    accepted = _check_mode(
        tmp_path,
        play,
        {
            **key_file,
            "grafana_apt_key_url": keys["pinned"].url,
            "grafana_apt_key_fingerprints": [keys["pinned"].fingerprint],
        },
    )
    assert accepted == {}


def test_elastic_repo_pins_elastics_key(tmp_path: Path, keys: dict[str, ThrowawayKey]) -> None:
    play = _role_play(
        tmp_path, "elasticsearch", role_include("elasticsearch", "package_source", "elastic_repo")
    )
    refused = _check_mode(tmp_path, play, {"elasticsearch_repo_gpg_key_url": keys["other"].url})
    assert refused["task"] == COMPARE_TASK, refused
    assert f"holds key(s) {keys['other'].fingerprint}; expected only {ELASTIC_FINGERPRINT}" in refused["msg"]
